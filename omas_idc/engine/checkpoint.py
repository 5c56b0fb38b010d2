"""Safe loading of nnU-Net v2 checkpoints: a checkpoint is data, never code.

nnU-Net saves ``fold_X/checkpoint_final.pth`` with ``torch.save`` of a dict holding the network
weights, optimizer state, logging lists (numpy scalars among them), ``_best_ema``,
``init_args``, ``trainer_name`` and ``inference_allowed_mirroring_axes``. We load it with
``torch.load(weights_only=True)`` and allow exactly the numpy types those dicts pickle; any other
global (a class, a function: code) makes loading fail with :class:`~omas_idc.errors.ModelError`.
The tests train nnU-Net's own ``nnUNetTrainer`` for an epoch and load its checkpoint this way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omas_idc.errors import ModelError

__all__ = ["NNUNET_CHECKPOINT_GLOBALS", "Checkpoint", "load_checkpoint"]

logger = logging.getLogger(__name__)


def _numpy_globals() -> list[Any]:
    # numpy 2 moved numpy.core to numpy._core; checkpoints written under numpy 1 name the old
    # path, which numpy 2 still resolves to the same objects.
    core = getattr(np, "_core", None) or np.core
    allowed: list[Any] = [
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in (
            "Float64DType",
            "Float32DType",
            "Float16DType",
            "Int64DType",
            "Int32DType",
            "UInt8DType",
            "BoolDType",
        ):
            allowed.append(getattr(dtypes, name))
    return allowed


#: The globals (numpy scalar and array reconstruction, dtypes) an nnU-Net checkpoint pickles,
#: besides what ``weights_only`` allows by default (tensors, containers, ``torch.device``).
NNUNET_CHECKPOINT_GLOBALS: tuple[Any, ...] = tuple(_numpy_globals())


@dataclass(frozen=True)
class Checkpoint:
    """The parts of an nnU-Net checkpoint inference needs.

    Attributes
    ----------
    path
        The file it was read from.
    network_weights
        The network's state dict.
    trainer_name
        The nnU-Net trainer class that wrote it (``"nnUNetTrainerNoMirroring"``, ...).
    configuration
        The plans configuration it was trained with (``"3d_fullres"``), if recorded.
    inference_allowed_mirroring_axes
        Spatial axes (of the transposed array) test-time mirroring may flip, or ``None``.
    """

    path: Path
    network_weights: Mapping[str, torch.Tensor]
    trainer_name: str
    configuration: str | None
    inference_allowed_mirroring_axes: tuple[int, ...] | None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read an nnU-Net v2 checkpoint without executing any code it may contain.

    Parameters
    ----------
    path
        A ``checkpoint_final.pth`` (or ``checkpoint_best.pth``) file.

    Returns
    -------
    Checkpoint

    Raises
    ------
    ModelError
        If the file is missing, is not a torch checkpoint, pickles anything other than tensors,
        containers and the numpy types of :data:`NNUNET_CHECKPOINT_GLOBALS`, or lacks
        ``network_weights``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; download the model weights first")
    try:
        with torch.serialization.safe_globals(list(NNUNET_CHECKPOINT_GLOBALS)):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(
            f"refusing to load checkpoint {path}: it is not a plain nnU-Net checkpoint "
            f"(tensors, containers and numpy scalars only). torch said: {err}. "
            "A checkpoint is data; re-save it from a trusted source with only the weights."
        ) from err
    if not isinstance(raw, dict) or "network_weights" not in raw:
        raise ModelError(
            f"checkpoint {path} has no 'network_weights': not an nnU-Net v2 checkpoint"
        )
    weights = raw["network_weights"]
    if not isinstance(weights, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ModelError(f"checkpoint {path}: 'network_weights' is not a state dict of tensors")
    init_args = raw.get("init_args") or {}
    configuration = init_args.get("configuration") if isinstance(init_args, dict) else None
    axes = raw.get("inference_allowed_mirroring_axes")
    mirror = tuple(int(a) for a in axes) if axes is not None else None
    return Checkpoint(
        path=path,
        network_weights=weights,
        trainer_name=str(raw.get("trainer_name", "")),
        configuration=str(configuration) if configuration is not None else None,
        inference_allowed_mirroring_axes=mirror,
    )
