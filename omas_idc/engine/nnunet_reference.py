"""nnU-Net's own predictor as the engine's reference, without its float16 sums (test-only).

nnunetv2 is a test-only dependency of omas-idc: this module imports it on use.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["float32_accumulators"]


class _TorchWithFloat32Accumulators:
    """``torch`` as nnU-Net's predictor module sees it, with float32 instead of float16 zeros.

    The module allocates exactly two float16 tensors, with ``torch.zeros``: the Gaussian-weighted
    logit sums and the weight sums of the sliding window.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def zeros(*size: Any, dtype: Any = None, **kwargs: Any) -> Any:
        if dtype == torch.float16:
            dtype = torch.float32
        return torch.zeros(*size, dtype=dtype, **kwargs)


@contextlib.contextmanager
def float32_accumulators() -> Iterator[None]:
    """nnU-Net's predictor, unchanged except that it sums tile logits in float32 (as we do).

    nnU-Net accumulates ``logits * gaussian`` and ``gaussian`` in float16. Towards a tile's
    faces the Gaussian's weights fall to float16 subnormals (its corners to 6e-8, the smallest),
    so where a single tile covers a voxel, at the image's faces and corners, the weighted logits
    are rounded to a few steps of 6e-8 and the quotient can be off by 0.5; the low-index faces
    most, since the Gaussian peaks at ``size // 2`` (one voxel nearer the high face). Voxels
    with close logits there, like air under a barely trained network, flip. Our engine sums in
    float32; against this reference the window logic (padding, tile positions, Gaussian, crop)
    is compared without that rounding, and the label maps agree voxel for voxel.
    """
    module = importlib.import_module("nnunetv2.inference.predict_from_raw_data")
    # setattr: the untyped module does not declare its globals to mypy
    setattr(module, "torch", _TorchWithFloat32Accumulators())  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "torch", torch)  # noqa: B010
