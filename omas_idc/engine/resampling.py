"""nnU-Net's resampling, in torch: separable B-splines of order 0, 1 and 3, separate z.

nnU-Net resamples with ``skimage.transform.resize`` (``scipy.ndimage.zoom`` with
``grid_mode=True``, edge extension, the output clipped to the input's range) and, for
anisotropic spacing (ratio > 3), in-plane with ``order`` and along the low-resolution axis with
``order_z`` (``map_coordinates``). A tensor-product spline is separable, so we resample one axis
at a time: the cubic B-spline prefilter is its exact IIR filter truncated at 12 taps each side
(pole ``sqrt(3) - 2``: ``0.27**12 < 2e-7``), then four taps per output sample. Differences to
scipy remain at the edges (scipy pads 12 samples and mirrors beyond; we extend the edge) and in
float32 rounding; both stay far below the effect of nnU-Net's float16 logit accumulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from omas_idc.engine.modelfolder import ANISO_THRESHOLD, ResamplingSpec

__all__ = [
    "compute_new_shape",
    "resample",
    "resample_axis",
    "separate_z_axis",
]

_POLE = math.sqrt(3.0) - 2.0
_TAPS = 12


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * shape)``."""
    return tuple(round(s / n * k) for s, n, k in zip(spacing, new_spacing, shape, strict=True))


def _lowres_axis(spacing: Sequence[float]) -> list[int]:
    arr = np.asarray(spacing, dtype=np.float64)
    return [int(a) for a in np.where(max(spacing) / arr == 1)[0]]


def separate_z_axis(
    spacing: Sequence[float], new_spacing: Sequence[float], spec: ResamplingSpec
) -> int | None:
    """The axis nnU-Net resamples separately (``determine_do_sep_z_and_axis``), or ``None``."""

    def aniso(s: Sequence[float]) -> bool:
        return bool(max(s) / min(s) > ANISO_THRESHOLD)

    if spec.force_separate_z is not None:
        axes = _lowres_axis(spacing) if spec.force_separate_z else None
    elif aniso(spacing):
        axes = _lowres_axis(spacing)
    elif aniso(new_spacing):
        axes = _lowres_axis(new_spacing)
    else:
        axes = None
    if axes is None or len(axes) != 1:
        return None
    return axes[0]


def _prefilter_kernel(device: torch.device) -> torch.Tensor:
    k = torch.arange(-_TAPS, _TAPS + 1, dtype=torch.float64)
    h = math.sqrt(3.0) * (_POLE ** k.abs()) * (1 - _POLE) / (1 + _POLE)
    h = h / h.sum()
    return h.to(device=device, dtype=torch.float32).view(1, 1, -1)


def _coordinates(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    scale = n_in / n_out
    out = torch.arange(n_out, device=device, dtype=torch.float64)
    return (out + 0.5) * scale - 0.5


def resample_axis(x: torch.Tensor, axis: int, size: int, order: int) -> torch.Tensor:
    """Resample one axis of a float tensor to ``size`` samples (grid mode, edge extension).

    Parameters
    ----------
    x
        Float tensor of any shape.
    axis
        The axis to resample.
    size
        New number of samples.
    order
        0 (nearest), 1 (linear) or 3 (cubic B-spline).
    """
    n = x.shape[axis]
    if n == size:
        return x
    if order not in (0, 1, 3):
        raise ValueError(f"spline order must be 0, 1 or 3, got {order}")
    moved = x.movedim(axis, -1)
    lead = moved.shape[:-1]
    flat = moved.reshape(-1, n)
    coords = _coordinates(n, size, x.device)
    if order == 0:
        idx = torch.floor(coords + 0.5).clamp(0, n - 1).long()
        out = flat.index_select(1, idx)
    elif order == 1:
        c = coords.clamp(0, n - 1)
        i0 = torch.floor(c).long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        t = (c - i0).to(flat.dtype)
        out = flat.index_select(1, i0) * (1 - t) + flat.index_select(1, i1) * t
    else:
        pad = _TAPS + 2
        padded = F.pad(flat.unsqueeze(1), (pad, pad), mode="replicate")
        coeff = F.conv1d(padded, _prefilter_kernel(x.device)).squeeze(1)  # length n + 4
        i = torch.floor(coords)
        t = (coords - i).to(flat.dtype)
        base = i.long() + 1  # coefficient index of sample i-1 (coefficients start at -2)
        t2, t3 = t * t, t * t * t
        weights = (
            (1 - t) ** 3 / 6,
            (3 * t3 - 6 * t2 + 4) / 6,
            (-3 * t3 + 3 * t2 + 3 * t + 1) / 6,
            t3 / 6,
        )
        out = torch.zeros(flat.shape[0], size, dtype=flat.dtype, device=flat.device)
        for k, w in enumerate(weights):
            out += coeff.index_select(1, (base + k).clamp(0, n + 3)) * w
    return out.reshape(*lead, size).movedim(-1, axis)


def resample(
    data: torch.Tensor,
    new_shape: Sequence[int],
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    spec: ResamplingSpec,
    clip: bool = True,
) -> torch.Tensor:
    """Resample ``data`` (c, z, y, x) to ``new_shape`` as nnU-Net's resampling functions do.

    Parameters
    ----------
    data
        Float tensor (channels, three spatial axes).
    new_shape
        Target spatial shape.
    spacing, new_spacing
        Current and target spacing (decide whether an axis is treated separately).
    spec
        Orders and the separate-z rule.
    clip
        Clip each resize call's output to its input range, as skimage does (order 3 only
        can overshoot).
    """
    shape = tuple(int(s) for s in data.shape[1:])
    new = tuple(int(s) for s in new_shape)
    if shape == new:
        return data
    axis = separate_z_axis(spacing, new_spacing, spec)
    out = data
    if axis is None:
        for a in range(3):
            out = resample_axis(out, a + 1, new[a], spec.order)
        if clip and spec.order > 1:
            lo = data.amin(dim=(1, 2, 3), keepdim=True)
            hi = data.amax(dim=(1, 2, 3), keepdim=True)
            out = torch.maximum(torch.minimum(out, hi), lo)
        return out
    in_plane = [a for a in range(3) if a != axis]
    for a in in_plane:
        out = resample_axis(out, a + 1, new[a], spec.order)
    if clip and spec.order > 1:
        dims = tuple(a + 1 for a in in_plane)
        lo = data.amin(dim=dims, keepdim=True)
        hi = data.amax(dim=dims, keepdim=True)
        out = torch.maximum(torch.minimum(out, hi), lo)
    return resample_axis(out, axis + 1, new[axis], spec.order_z)
