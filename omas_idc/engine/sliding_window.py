"""nnU-Net's sliding window: tile positions, Gaussian importance, padding, accumulation.

The arithmetic follows ``nnunetv2.inference.sliding_window_prediction`` exactly (same steps,
same Gaussian rounded to float16, same zero padding of small images, split as ``pad_nd_image``
splits it). The Gaussian-weighted logits and the weights are summed (and divided) in the dtype
the card or the run asks for (``logit_sums``). nnU-Net's predictor sums them in float16: the
reference cards (CADS, TotalSegmentator) do the same, so that their labels are the tools'
voxel for voxel. Float16 sums have a price: towards a tile's faces the Gaussian's float16
weights are subnormal (6e-8 in the corners), so the sums there keep only a few significant
bits and the logits can be off by as much as 0.5 where a single tile covers the image's faces
(the low-index faces most, as the Gaussian peaks at ``size // 2``), and a network with many
classes whose logits grow with the class index loses close decisions to rounding. Summed in
float32 (the default of other cards, ``logit_sums="float32"``), nnU-Net's predictor patched to
float32 gives the same label maps voxel for voxel (tests/engine/test_engine_parity.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

__all__ = ["WindowGrid", "compute_steps", "gaussian_importance", "pad_to_patch", "patch_padding"]


def compute_steps(
    image_size: Sequence[int], tile_size: Sequence[int], tile_step_size: float
) -> list[list[int]]:
    """Tile start positions per axis (nnU-Net's ``compute_steps_for_sliding_window``)."""
    if not 0 < tile_step_size <= 1:
        raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    steps = []
    for size, tile in zip(image_size, tile_size, strict=True):
        target = tile * tile_step_size
        n = int(np.ceil((size - tile) / target)) + 1
        max_step = size - tile
        actual = max_step / (n - 1) if n > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(n)])
    return steps


@lru_cache(maxsize=8)
def _gaussian_numpy(tile_size: tuple[int, ...], sigma_scale: float, scale: float) -> np.ndarray:
    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= np.max(g) / scale
    g16 = g.astype(np.float16)
    g16[g16 == 0] = np.min(g16[g16 != 0])
    return g16.astype(np.float32)


def gaussian_importance(
    tile_size: Sequence[int],
    device: torch.device,
    sigma_scale: float = 1.0 / 8,
    value_scaling_factor: float = 10.0,
) -> torch.Tensor:
    """nnU-Net's Gaussian importance map (float16 values, never zero), as float32."""
    g = _gaussian_numpy(tuple(int(t) for t in tile_size), sigma_scale, value_scaling_factor)
    return torch.from_numpy(g).to(device)


def patch_padding(
    shape: Sequence[int], patch_size: Sequence[int]
) -> tuple[tuple[int, int, int], tuple[slice, slice, slice]]:
    """The padded shape ``pad_nd_image`` gives a spatial shape, and the slices that undo it."""
    padded: list[int] = []
    undo: list[slice] = []
    for size, patch in zip(shape, patch_size, strict=True):
        diff = max(0, int(patch) - int(size))
        below = diff // 2
        padded.append(int(size) + diff)
        undo.append(slice(below, below + int(size)))
    return (padded[0], padded[1], padded[2]), (undo[0], undo[1], undo[2])


def pad_to_patch(
    data: torch.Tensor, patch_size: Sequence[int]
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad (c, z, y, x) up to the patch size where smaller (``pad_nd_image``).

    Returns the padded tensor and the spatial slices that undo the padding.
    """
    padded, undo = patch_padding(data.shape[1:], patch_size)
    if tuple(padded) == tuple(data.shape[1:]):
        return data, undo
    out = data.new_zeros((data.shape[0], *padded))
    out[(slice(None), *undo)] = data
    return out, undo


@dataclass(frozen=True)
class WindowGrid:
    """The tiles covering a (padded) image, in nnU-Net's order (x outermost, as it names it)."""

    image_size: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    tile_step_size: float

    def starts(self) -> list[tuple[int, int, int]]:
        """Tile start corners, in nnU-Net's iteration order."""
        steps = compute_steps(self.image_size, self.patch_size, self.tile_step_size)
        return [(a, b, c) for a in steps[0] for b in steps[1] for c in steps[2]]

    def slices(self, start: tuple[int, int, int]) -> tuple[slice, slice, slice]:
        """The spatial slices of the tile starting at ``start``."""
        return tuple(  # type: ignore[return-value]
            slice(s, s + p) for s, p in zip(start, self.patch_size, strict=True)
        )
