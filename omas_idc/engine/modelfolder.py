"""An nnU-Net v2 result folder: dataset.json, plans.json and fold_X/checkpoint_final.pth.

Only what inference needs is read, into frozen dataclasses; nothing is imported by name from the
plans except the two U-Net classes of :mod:`omas_idc.engine.network`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omas_idc.errors import ModelError

__all__ = [
    "IntensityProperties",
    "ModelConfiguration",
    "ModelFolder",
    "ResamplingSpec",
    "load_model_folder",
]

logger = logging.getLogger(__name__)

#: nnU-Net's ANISO_THRESHOLD: spacing ratio above which resampling treats z separately.
ANISO_THRESHOLD = 3.0


@dataclass(frozen=True)
class IntensityProperties:
    """Foreground intensity statistics of the training set (CT normalisation)."""

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class ResamplingSpec:
    """How nnU-Net resamples data or probabilities (``resample_data_or_seg_to_shape`` kwargs).

    Attributes
    ----------
    order
        Spline order in-plane (or everywhere when z is not treated separately): 0, 1 or 3.
    order_z
        Spline order along the anisotropic axis when it is treated separately.
    force_separate_z
        ``None``: decide from the spacings (ratio > 3); ``True``/``False``: forced.
    """

    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None


@dataclass(frozen=True)
class ModelConfiguration:
    """One plans configuration (``3d_fullres``) as inference uses it."""

    name: str
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    normalization: str
    use_mask_for_norm: bool
    data_resampling: ResamplingSpec
    probability_resampling: ResamplingSpec
    network_class: str
    network_kwargs: Mapping[str, Any]
    network_kwargs_import: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ModelFolder:
    """An nnU-Net v2 trained model folder, parsed.

    Attributes
    ----------
    path
        The folder (``.../Dataset551_.../nnUNetTrainer__nnUNetPlans__3d_fullres``).
    dataset_name
        ``plans["dataset_name"]``.
    labels
        Label value -> name, without background.
    transpose_forward, transpose_backward
        nnU-Net's axis permutation of the (z, y, x) array before and after prediction.
    configuration
        The chosen configuration.
    intensity
        CT normalisation statistics of channel 0, or ``None`` for other schemes.
    folds
        The folds whose checkpoints exist (``"all"``, ``"0"``, ...).
    """

    path: Path
    dataset_name: str
    labels: Mapping[int, str]
    transpose_forward: tuple[int, int, int]
    transpose_backward: tuple[int, int, int]
    configuration: ModelConfiguration
    intensity: IntensityProperties | None
    folds: tuple[str, ...]
    plans: Mapping[str, Any] = field(repr=False, default_factory=dict)
    dataset_json: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of network outputs (labels plus background)."""
        return max(self.labels, default=0) + 1

    def checkpoint_path(self, fold: str, name: str = "checkpoint_final.pth") -> Path:
        """Path of one fold's checkpoint."""
        return self.path / f"fold_{fold}" / name


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"{path.name} not found in {path.parent}: not an nnU-Net v2 result folder "
            "(expected dataset.json, plans.json and fold_*/checkpoint_final.pth)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return data


def _old_format_architecture(config: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net's own conversion of pre-2.2 plans (``UNet_class_name``) to ``architecture``."""
    unet = config["UNet_class_name"]
    if unet not in ("PlainConvUNet", "ResidualEncoderUNet"):
        raise ModelError(f"unsupported architecture {unet!r} in old-format plans")
    n_stages = len(config["n_conv_per_stage_encoder"])
    dim = len(config["patch_size"])
    blocks = "n_conv_per_stage" if unet == "PlainConvUNet" else "n_blocks_per_stage"
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{unet}",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [
                min(config["UNet_base_num_features"] * 2**i, config["unet_max_num_features"])
                for i in range(n_stages)
            ],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": deepcopy(config["conv_kernel_sizes"]),
            "strides": deepcopy(config["pool_op_kernel_sizes"]),
            blocks: deepcopy(config["n_conv_per_stage_encoder"]),
            "n_conv_per_stage_decoder": deepcopy(config["n_conv_per_stage_decoder"]),
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _resolve_configuration(plans: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A configuration with ``inherits_from`` resolved, as nnU-Net's PlansManager does."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise ModelError(f"configuration {name!r} not in plans.json (available: {sorted(configs)})")
    config = deepcopy(configs[name])
    if "inherits_from" in config:
        parent = _resolve_configuration(plans, config.pop("inherits_from"))
        parent.update(config)
        config = parent
    return dict(config)


def _resampling(config: Mapping[str, Any], key: str) -> ResamplingSpec:
    fn = str(config.get(f"resampling_fn_{key}", "resample_data_or_seg_to_shape"))
    if fn != "resample_data_or_seg_to_shape":
        raise ModelError(f"unsupported resampling function {fn!r} for {key}")
    kwargs = config.get(f"resampling_fn_{key}_kwargs", {})
    return ResamplingSpec(
        order=int(kwargs.get("order", 3 if key == "data" else 1)),
        order_z=int(kwargs.get("order_z", 0)),
        force_separate_z=kwargs.get("force_separate_z"),
    )


def _labels(dataset_json: Mapping[str, Any], path: Path) -> dict[int, str]:
    raw = dataset_json.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise ModelError(f"{path}/dataset.json has no 'labels'")
    labels: dict[int, str] = {}
    for name, value in raw.items():
        if isinstance(value, list | tuple):
            raise ModelError(
                f"{path}/dataset.json uses region-based labels ({name}: {value}); "
                "only plain label maps are supported"
            )
        if name == "ignore":
            continue
        if int(value) != 0:
            labels[int(value)] = str(name)
    return dict(sorted(labels.items()))


def load_model_folder(
    path: str | Path,
    configuration: str = "3d_fullres",
    folds: Sequence[str] | None = None,
    checkpoint_name: str = "checkpoint_final.pth",
) -> ModelFolder:
    """Parse an nnU-Net v2 result folder.

    Parameters
    ----------
    path
        The folder holding ``dataset.json``, ``plans.json`` and ``fold_*``.
    configuration
        The plans configuration to use.
    folds
        Folds to use (``["all"]``, ``["0", "1"]``); ``None`` uses every fold with a checkpoint.
    checkpoint_name
        The checkpoint file name inside each fold folder.

    Raises
    ------
    ModelError
        If a file is missing or describes something inference cannot run (2-D or cascade
        configurations, several input channels, regions, unknown normalisation).
    """
    path = Path(path)
    dataset_json = _read_json(path / "dataset.json")
    plans = _read_json(path / "plans.json")
    config = _resolve_configuration(plans, configuration)
    if "architecture" not in config:
        config["architecture"] = _old_format_architecture(config)
    if config.get("previous_stage"):
        raise ModelError(f"{path}: cascade configurations ({configuration}) are not supported")
    patch = tuple(int(v) for v in config["patch_size"])
    if len(patch) != 3:
        raise ModelError(f"{path}: only 3-D configurations are supported, got {configuration}")
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    if len(channels) != 1:
        raise ModelError(f"{path}: models with {len(channels)} input channels are not supported")
    norm = next(iter(config.get("normalization_schemes", ["CTNormalization"])))
    if norm not in ("CTNormalization", "NoNormalization"):
        raise ModelError(
            f"{path}: normalisation {norm!r} is not supported (CTNormalization, NoNormalization)"
        )
    intensity = None
    if norm == "CTNormalization":
        props = plans.get("foreground_intensity_properties_per_channel", {}).get("0")
        if props is None:
            raise ModelError(f"{path}: CTNormalization needs foreground intensity properties")
        intensity = IntensityProperties(
            mean=float(props["mean"]),
            std=float(props["std"]),
            percentile_00_5=float(props["percentile_00_5"]),
            percentile_99_5=float(props["percentile_99_5"]),
        )
    arch = config["architecture"]
    model_config = ModelConfiguration(
        name=configuration,
        patch_size=(patch[0], patch[1], patch[2]),
        spacing=tuple(float(v) for v in config["spacing"]),  # type: ignore[arg-type]
        normalization=norm,
        use_mask_for_norm=bool(next(iter(config.get("use_mask_for_norm", [False])))),
        data_resampling=_resampling(config, "data"),
        probability_resampling=_resampling(config, "probabilities"),
        network_class=str(arch["network_class_name"]),
        network_kwargs=dict(arch["arch_kwargs"]),
        network_kwargs_import=tuple(arch.get("_kw_requires_import", ())),
    )
    if model_config.use_mask_for_norm:
        raise ModelError(f"{path}: use_mask_for_norm=True is not supported")
    available = sorted(
        p.name[len("fold_") :] for p in path.glob("fold_*") if (p / checkpoint_name).is_file()
    )
    if folds is None:
        chosen = tuple(available)
    else:
        chosen = tuple(str(f) for f in folds)
        missing = [f for f in chosen if f not in available]
        if missing:
            raise ModelError(
                f"{path}: no {checkpoint_name} for fold(s) {missing} (found: {available}); "
                "download the weights or choose other folds"
            )
    if not chosen:
        raise ModelError(f"{path}: no fold_*/{checkpoint_name} found")
    tf = tuple(int(v) for v in plans.get("transpose_forward", (0, 1, 2)))
    tb = tuple(int(v) for v in plans.get("transpose_backward", (0, 1, 2)))
    return ModelFolder(
        path=path,
        dataset_name=str(plans.get("dataset_name", path.name)),
        labels=_labels(dataset_json, path),
        transpose_forward=(tf[0], tf[1], tf[2]),
        transpose_backward=(tb[0], tb[1], tb[2]),
        configuration=model_config,
        intensity=intensity,
        folds=chosen,
        plans=plans,
        dataset_json=dataset_json,
    )
