"""A minimal nnU-Net planner: target spacing, patch size and U-Net topology -> ``plans.json``.

The plans are written in nnU-Net v2's format (``configurations.3d_fullres.architecture`` with
``network_class_name``, ``arch_kwargs`` and ``_kw_requires_import``), so that the engine and
nnU-Net's own predictor build the same network. The topology follows nnU-Net's rules in a
simplified form: an axis is downsampled (stride 2) while its feature map stays at least 4
voxels wide (8 before the stride) and its spacing is at most twice the finest spacing; a
kernel is 1 along an axis whose spacing is more than twice the finest (anisotropic data) and
3 elsewhere; features double per stage up to a cap. A user's ``plans.json`` is taken as is.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np

from omas_idc.engine.modelfolder import ModelConfiguration, ResamplingSpec
from omas_idc.errors import ConfigurationError
from omas_idc.train.config import PlansConfig

__all__ = ["configuration_from_plans", "load_plans", "make_plans", "network_topology"]

logger = logging.getLogger(__name__)

_CLASSES = {
    "plain": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "resenc": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
}
_MIN_FEATURE_MAP = 4


def network_topology(
    patch_size: Sequence[int], spacing: Sequence[float], max_stages: int
) -> tuple[list[list[int]], list[list[int]], tuple[int, int, int]]:
    """Strides and kernel sizes per stage, and the patch size made divisible by the strides.

    Returns
    -------
    strides, kernel_sizes, patch_size
    """
    size = [float(s) for s in patch_size]
    current = [float(s) for s in spacing]
    strides: list[list[int]] = [[1, 1, 1]]
    kernels: list[list[int]] = []
    while len(strides) < max_stages:
        finest = min(current)
        step = [
            2 if size[a] >= 2 * _MIN_FEATURE_MAP and current[a] <= 2 * finest else 1
            for a in range(3)
        ]
        if step == [1, 1, 1]:
            break
        strides.append(step)
        size = [s / t for s, t in zip(size, step, strict=True)]
        current = [c * t for c, t in zip(current, step, strict=True)]
    current = [float(s) for s in spacing]
    for stride in strides:
        current = [c * t for c, t in zip(current, stride, strict=True)]
        finest = min(current)
        kernels.append([3 if c <= 2 * finest else 1 for c in current])
    factor = [math.prod(s[a] for s in strides) for a in range(3)]
    fitted = tuple(max(f, round(p / f) * f) for p, f in zip(patch_size, factor, strict=True))
    return strides, kernels, (fitted[0], fitted[1], fitted[2])


def _auto_patch(median_shape: Sequence[float], budget: int) -> tuple[int, int, int]:
    shape = np.asarray(median_shape, dtype=np.float64)
    while np.prod(shape) > budget:
        shape[int(np.argmax(shape))] *= 0.9
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def make_plans(
    config: PlansConfig,
    *,
    dataset_name: str,
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    intensity: Mapping[str, float],
    plans_name: str = "nnUNetPlans",
) -> dict[str, Any]:
    """Plans for the canonical (S, A, R) training arrays.

    Parameters
    ----------
    config
        The ``[plans]`` section.
    dataset_name
        ``Dataset{id:03d}_{name}``.
    spacings, shapes
        Spacing and shape of each training case (canonical order, cropped, before resampling).
    intensity
        Foreground intensity properties (:mod:`omas_idc.train.intensity`).
    """
    median_spacing = np.median(np.asarray(spacings, dtype=np.float64), axis=0)
    median_shape = np.median(np.asarray(shapes, dtype=np.float64), axis=0)
    spacing = tuple(config.spacing) if config.spacing else tuple(float(v) for v in median_spacing)
    shape_at_target = median_shape * median_spacing / np.asarray(spacing)
    patch = config.patch_size or _auto_patch(shape_at_target, config.max_patch_voxels)
    strides, kernels, patch = network_topology(patch, spacing, config.max_stages)
    n = len(strides)
    features = [min(config.features * 2**i, config.max_features) for i in range(n)]
    kwargs: dict[str, Any] = {
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": kernels,
        "strides": strides,
        "n_conv_per_stage_decoder": [1] * (n - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if config.architecture == "plain":
        kwargs["n_conv_per_stage"] = [2] * n
    else:
        kwargs["n_blocks_per_stage"] = [1, *[2] * (n - 1)]
    resampling: dict[str, Any] = {}
    for key, order, is_seg in (("data", 3, False), ("seg", 1, True), ("probabilities", 1, False)):
        resampling[f"resampling_fn_{key}"] = "resample_data_or_seg_to_shape"
        resampling[f"resampling_fn_{key}_kwargs"] = {
            "is_seg": is_seg,
            "order": order,
            "order_z": 0,
            "force_separate_z": None,
        }
    median_voxels = [round(float(v)) for v in shape_at_target]
    plans = {
        "dataset_name": dataset_name,
        "plans_name": plans_name,
        "original_median_spacing_after_transp": [float(v) for v in median_spacing],
        "original_median_shape_after_transp": [round(float(v)) for v in median_shape],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": f"{plans_name}_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": config.batch_size,
                "patch_size": list(patch),
                "median_image_size_in_voxels": median_voxels,
                "spacing": [float(v) for v in spacing],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                **resampling,
                "architecture": {
                    "network_class_name": _CLASSES[config.architecture],
                    "arch_kwargs": kwargs,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "omas_idc.train.planner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(intensity)},
    }
    logger.info("plans: spacing %s, patch %s, %d stages, features %s", spacing, patch, n, features)
    return plans


def load_plans(
    path: str | Path, intensity: Mapping[str, float], dataset_name: str
) -> dict[str, Any]:
    """A user's ``plans.json`` with our foreground intensity properties and dataset name."""
    try:
        plans = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigurationError(f"cannot read plans file {path}: {err}") from err
    if not isinstance(plans, dict) or "configurations" not in plans:
        raise ConfigurationError(f"{path} is not an nnU-Net v2 plans.json (no 'configurations')")
    plans = deepcopy(plans)
    plans["dataset_name"] = dataset_name
    plans["foreground_intensity_properties_per_channel"] = {"0": dict(intensity)}
    return plans


def _resolve(plans: Mapping[str, Any], name: str) -> dict[str, Any]:
    configs = plans.get("configurations", {})
    if name not in configs:
        raise ConfigurationError(f"plans have no configuration {name!r} (have {sorted(configs)})")
    config = deepcopy(dict(configs[name]))
    if "inherits_from" in config:
        parent = _resolve(plans, config.pop("inherits_from"))
        parent.update(config)
        config = parent
    return config


def configuration_from_plans(
    plans: Mapping[str, Any], name: str = "3d_fullres"
) -> ModelConfiguration:
    """The configuration the network is built from (as the engine parses it).

    Raises
    ------
    ConfigurationError
        For 2-D configurations, cascades, or plans without an ``architecture``.
    """
    config = _resolve(plans, name)
    if "architecture" not in config:
        raise ConfigurationError(
            f"configuration {name!r} has no 'architecture' (plans from nnU-Net < 2.4); "
            "re-plan with a current nnU-Net or let omas-idc plan"
        )
    if config.get("previous_stage"):
        raise ConfigurationError(f"configuration {name!r} is a cascade stage; train a full-res one")
    patch = tuple(int(v) for v in config["patch_size"])
    spacing = tuple(float(v) for v in config["spacing"])
    if len(patch) != 3 or len(spacing) != 3:
        raise ConfigurationError(f"configuration {name!r} is not 3-D")
    norm = next(iter(config.get("normalization_schemes", ["CTNormalization"])))
    if norm != "CTNormalization":
        raise ConfigurationError(f"only CTNormalization is trained, plans ask for {norm!r}")
    arch = config["architecture"]
    return ModelConfiguration(
        name=name,
        patch_size=(patch[0], patch[1], patch[2]),
        spacing=(spacing[0], spacing[1], spacing[2]),
        normalization=norm,
        use_mask_for_norm=False,
        data_resampling=ResamplingSpec(order=3),
        probability_resampling=ResamplingSpec(order=1),
        network_class=str(arch["network_class_name"]),
        network_kwargs=dict(arch["arch_kwargs"]),
        network_kwargs_import=tuple(arch.get("_kw_requires_import", ())),
    )
