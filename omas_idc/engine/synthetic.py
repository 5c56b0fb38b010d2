"""nnU-Net v2 model folders with made-up weights, in nnU-Net's exact file format.

For tests and benchmarks: no trained weights can be downloaded in CI, but the engine's window
logic, resampling and orientation chain can be compared with nnU-Net's predictor on any
weights. :func:`make_model_folder` writes ``dataset.json``, ``plans.json`` and
``fold_X/checkpoint_final.pth`` the way ``nnUNetTrainer.save_checkpoint`` does (optimizer
state, logging with numpy scalars, ``_best_ema``, ``init_args``...).

Two kinds of weights:

- ``"random"``: He-initialised like nnU-Net's trainer; InstanceNorm U-Nets whose outputs are
  rough and amplify small numeric differences (isolates the window logic);
- ``"threshold"``: a linear U-Net (no normalisation, identity activations) whose logits are
  ``k * x - sum(thresholds[:k])`` for class ``k`` of the normalised intensity ``x``: class ``k``
  wins where the HU lies between threshold ``k`` and ``k + 1``. Smooth outputs, for comparing
  resampling.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omas_idc.engine.modelfolder import ModelConfiguration, ResamplingSpec
from omas_idc.engine.network import build_network
from omas_idc.errors import ConfigurationError

__all__ = ["SyntheticModel", "make_model_folder"]

logger = logging.getLogger(__name__)

_ARCHITECTURES = {
    "plain": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "resenc": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
}


@dataclass(frozen=True)
class SyntheticModel:
    """What :func:`make_model_folder` should write.

    Attributes
    ----------
    dataset_id, dataset_name
        For the folder name ``Dataset{id:03d}_{name}``.
    labels
        Foreground label names, valued 1..n in order.
    architecture
        ``"plain"`` (PlainConvUNet) or ``"resenc"`` (ResidualEncoderUNet).
    weights
        ``"random"`` or ``"threshold"`` (see the module docstring).
    thresholds_hu
        For ``"threshold"`` weights: one HU threshold per label, ascending.
    patch_size, spacing
        Of the ``3d_fullres`` configuration, in the (transposed) array order.
    transpose_forward
        nnU-Net's axis permutation applied before prediction.
    features
        Features of the first stage (doubled per stage, capped at 4x).
    n_stages
        Encoder stages (the first without downsampling).
    folds
        Folds to write (``("all",)``, ``("0", "1")``).
    mirror_axes
        ``inference_allowed_mirroring_axes`` stored in the checkpoint.
    trainer_name, plans_name
        Recorded in the folder name and the checkpoint.
    checkpoint_trainer_name
        The trainer class the checkpoint names, where it differs from the folder's (``None``:
        ``trainer_name``). nnU-Net's predictor looks this class up by name; ``"nnUNetTrainer"``
        lets a folder named for ``nnUNetTrainerNoMirroring`` load where that class's module
        cannot be imported.
    intensity
        (mean, std, percentile_00_5, percentile_99_5) of the CT normalisation.
    seed
        Random seed of the weights.
    """

    dataset_id: int = 901
    dataset_name: str = "Synthetic"
    labels: tuple[str, ...] = ("soft_tissue", "bone")
    architecture: str = "plain"
    weights: str = "random"
    thresholds_hu: tuple[float, ...] = (-200.0, 250.0)
    patch_size: tuple[int, int, int] = (16, 32, 32)
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0)
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    features: int = 4
    n_stages: int = 3
    folds: tuple[str, ...] = ("all",)
    mirror_axes: tuple[int, ...] | None = (0, 1, 2)
    trainer_name: str = "nnUNetTrainer"
    plans_name: str = "nnUNetPlans"
    checkpoint_trainer_name: str | None = None
    intensity: tuple[float, float, float, float] = (40.0, 250.0, -1000.0, 1500.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ConfigurationError(
                f"architecture must be one of {sorted(_ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.weights not in ("random", "threshold"):
            raise ConfigurationError(
                f"weights must be 'random' or 'threshold', not {self.weights!r}"
            )
        if self.weights == "threshold" and len(self.thresholds_hu) != len(self.labels):
            raise ConfigurationError("threshold weights need one threshold per label")
        if sorted(self.transpose_forward) != [0, 1, 2]:
            raise ConfigurationError(
                f"transpose_forward {self.transpose_forward} is no permutation"
            )

    @property
    def folder_name(self) -> str:
        """``{trainer}__{plans}__3d_fullres``."""
        return f"{self.trainer_name}__{self.plans_name}__3d_fullres"


def _strides(spec: SyntheticModel) -> list[list[int]]:
    strides = [[1, 1, 1]]
    size = list(spec.patch_size)
    for _ in range(spec.n_stages - 1):
        step = [2 if s % 2 == 0 and s >= 8 else 1 for s in size]
        size = [s // t for s, t in zip(size, step, strict=True)]
        strides.append(step)
    return strides


def _plans(spec: SyntheticModel) -> dict[str, Any]:
    n = spec.n_stages
    features = [min(spec.features * 2**i, spec.features * 4) for i in range(n)]
    threshold = spec.weights == "threshold"
    kwargs: dict[str, Any] = {
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n,
        "strides": _strides(spec),
        "n_conv_per_stage_decoder": [1] * (n - 1),
        "conv_bias": True,
        "norm_op": None if threshold else "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True, "negative_slope": 1.0 if threshold else 0.01},
    }
    if spec.architecture == "plain":
        kwargs["n_conv_per_stage"] = [2] * n
    else:
        kwargs["n_blocks_per_stage"] = [1] + [2] * (n - 1)
    tf = list(spec.transpose_forward)
    tb = [tf.index(i) for i in range(3)]
    mean, std, p005, p995 = spec.intensity
    resampling = {
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {
            "is_seg": False,
            "order": 3,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_seg_kwargs": {
            "is_seg": True,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {
            "is_seg": False,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
    }
    return {
        "dataset_name": f"Dataset{spec.dataset_id:03d}_{spec.dataset_name}",
        "plans_name": spec.plans_name,
        "original_median_spacing_after_transp": list(spec.spacing),
        "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": tf,
        "transpose_backward": tb,
        "configurations": {
            "3d_fullres": {
                "data_identifier": f"{spec.plans_name}_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(spec.patch_size),
                "median_image_size_in_voxels": [64, 64, 64],
                "spacing": list(spec.spacing),
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                **resampling,
                "architecture": {
                    "network_class_name": _ARCHITECTURES[spec.architecture],
                    "arch_kwargs": kwargs,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 3000.0,
                "mean": mean,
                "median": mean,
                "min": -1024.0,
                "percentile_00_5": p005,
                "percentile_99_5": p995,
                "std": std,
            }
        },
    }


def _threshold_weights(network: nn.Module, spec: SyntheticModel) -> None:
    """Make the linear U-Net compute ``k * x - c_k`` on channel 0 of the normalised input."""
    mean, std = spec.intensity[0], spec.intensity[1]
    thresholds = [(t - mean) / std for t in spec.thresholds_hu]
    with torch.no_grad():
        for param in network.parameters():
            param.zero_()
        # channel 0 carries x from the input to the last decoder stage: through the first
        # encoder stage (PlainConvUNet) or the stem (ResidualEncoderUNet, whose residual blocks
        # then pass it on through their identity skips), and in the last decoder stage from
        # the skip connection, which follows the upsampled features in the concatenation.
        encoder: Any = network.encoder
        decoder: Any = network.decoder
        first = (
            encoder.stem.convs
            if getattr(encoder, "stem", None) is not None
            else (encoder.stages[0][0].convs)
        )
        for conv_block in first:
            conv_block.conv.weight[0, 0, 1, 1, 1] = 1.0
        last = decoder.stages[-1].convs[0].conv
        last.weight[0, last.in_channels // 2, 1, 1, 1] = 1.0
        for conv_block in list(decoder.stages[-1].convs)[1:]:
            conv_block.conv.weight[0, 0, 1, 1, 1] = 1.0
        seg = decoder.seg_layers[-1]
        for k in range(len(thresholds) + 1):
            seg.weight[k, 0, 0, 0, 0] = float(k)
            seg.bias[k] = -float(sum(thresholds[:k]))


def _checkpoint(
    network: nn.Module,
    spec: SyntheticModel,
    plans: dict[str, Any],
    dataset: dict[str, Any],
    fold: str,
) -> dict[str, Any]:
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    rng = np.random.default_rng(spec.seed)
    dice = [np.float64(v) for v in rng.uniform(0.5, 0.9, 3)]
    return {
        "network_weights": network.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": dice,
            "ema_fg_dice": [np.float64(0.7)] * 3,
            "dice_per_class_or_region": [[np.float64(0.6)] * len(spec.labels)] * 3,
            "train_losses": [float(v) for v in rng.uniform(-1, 0, 3)],
            "val_losses": [np.float32(-0.5)] * 3,
            "lrs": [0.01, 0.0099, 0.0098],
            "epoch_start_timestamps": [1.7e9, 1.7e9 + 60, 1.7e9 + 120],
            "epoch_end_timestamps": [1.7e9 + 59, 1.7e9 + 119, 1.7e9 + 179],
        },
        "_best_ema": np.float64(0.71),
        "current_epoch": 3,
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": "all" if fold == "all" else int(fold),
            "dataset_json": dataset,
            "device": torch.device("cpu"),
        },
        "trainer_name": spec.checkpoint_trainer_name or spec.trainer_name,
        "inference_allowed_mirroring_axes": spec.mirror_axes,
    }


def make_model_folder(root: str | Path, spec: SyntheticModel | None = None) -> Path:
    """Write an nnU-Net v2 result folder with made-up weights.

    Parameters
    ----------
    root
        Where to create ``Dataset{id}_{name}/{trainer}__{plans}__3d_fullres``.
    spec
        What to write; defaults to a tiny random PlainConvUNet with two labels.

    Returns
    -------
    pathlib.Path
        The result folder (the one holding ``plans.json``).
    """
    spec = spec or SyntheticModel()
    folder = Path(root) / f"Dataset{spec.dataset_id:03d}_{spec.dataset_name}" / spec.folder_name
    folder.mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, **{name: i + 1 for i, name in enumerate(spec.labels)}}
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": 10,
        "file_ending": ".nii.gz",
    }
    plans = _plans(spec)
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    generator = torch.Generator().manual_seed(spec.seed)
    for fold in spec.folds:
        network = _network(folder, spec, generator)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(
            _checkpoint(network, spec, plans, dataset, fold),
            folder / f"fold_{fold}" / "checkpoint_final.pth",
        )
    return folder


def _network(folder: Path, spec: SyntheticModel, generator: torch.Generator) -> nn.Module:
    plans = json.loads((folder / "plans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    config = _config_for_build(plans, arch)
    network = build_network(config, len(spec.labels) + 1)
    if spec.weights == "threshold":
        _threshold_weights(network, spec)
        return network
    with torch.no_grad():
        for name, param in network.named_parameters():
            if param.ndim > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return network


def _config_for_build(plans: dict[str, Any], arch: dict[str, Any]) -> ModelConfiguration:
    config = plans["configurations"]["3d_fullres"]
    return ModelConfiguration(
        name="3d_fullres",
        patch_size=tuple(config["patch_size"]),
        spacing=tuple(config["spacing"]),
        normalization="CTNormalization",
        use_mask_for_norm=False,
        data_resampling=ResamplingSpec(),
        probability_resampling=ResamplingSpec(order=1),
        network_class=arch["network_class_name"],
        network_kwargs=arch["arch_kwargs"],
        network_kwargs_import=tuple(arch["_kw_requires_import"]),
    )
