"""nnU-Net's resampling, in torch: separable B-splines of order 0, 1 and 3, separate z.

nnU-Net resamples with ``skimage.transform.resize`` (``scipy.ndimage.zoom`` with
``grid_mode=True``, edge extension, the output clipped to the input's range) and, for
anisotropic spacing (ratio > 3), in-plane with ``order`` and along the low-resolution axis with
``order_z`` (``map_coordinates``). A tensor-product spline is separable, so we resample one axis
at a time: the cubic B-spline prefilter is its exact IIR filter truncated at 12 taps each side
(pole ``sqrt(3) - 2``: ``0.27**12 < 2e-7``), then four taps per output sample, composed in
float64 into one matrix per axis and applied as a matrix product; linear resampling of two axes
at once uses torch's bilinear kernel (the same sample positions and weights). Differences to
scipy remain at the edges (scipy pads 12 samples and mirrors beyond; we extend the edge) and in
float32 rounding; both stay far below the effect of nnU-Net's float16 logit accumulator.

Memory: :func:`resample_slabs` computes the output slab by slab along one axis, each slab from
the few input rows it depends on (plus the prefilter's halo for cubic splines), so that neither
the full-resolution input in float32 nor whole-volume temporaries need to exist. Each output
sample gets the same weights as in one whole-volume pass; put together, the slabs equal
:func:`resample` up to the order of float32 sums (order 0 exactly).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from omas_idc.engine.modelfolder import ANISO_THRESHOLD, ResamplingSpec

__all__ = [
    "axis_support",
    "compute_new_shape",
    "resample",
    "resample_axis",
    "resample_slabs",
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


def _prefilter_kernel() -> torch.Tensor:
    """The 25 taps of the cubic B-spline prefilter (float64)."""
    k = torch.arange(-_TAPS, _TAPS + 1, dtype=torch.float64)
    h = math.sqrt(3.0) * (_POLE ** k.abs()) * (1 - _POLE) / (1 + _POLE)
    return h / h.sum()


def _coordinates(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    scale = n_in / n_out
    out = torch.arange(n_out, device=device, dtype=torch.float64)
    return (out + 0.5) * scale - 0.5


def axis_support(n_in: int, n_out: int, order: int, start: int, stop: int) -> tuple[int, int]:
    """The input samples ``[lo, hi)`` that output samples ``[start, stop)`` of an axis read.

    Parameters
    ----------
    n_in, n_out
        Input and output length of the axis.
    order
        Spline order (0, 1 or 3); order 3 includes the prefilter's halo.
    start, stop
        Output sample range.
    """
    if n_in == n_out:
        return start, stop
    _check_order(order)
    coords = _coordinates(n_in, n_out, torch.device("cpu"))[[start, stop - 1]]
    if order == 0:
        idx = torch.floor(coords + 0.5).clamp(0, n_in - 1).long()
        return int(idx[0]), int(idx[1]) + 1
    if order == 1:
        i0 = torch.floor(coords.clamp(0, n_in - 1)).long()
        return int(i0[0]), min(int(i0[1]) + 2, n_in)
    q0, q1 = _coefficient_range(coords, n_in)
    pad = _TAPS + 2
    return max(0, min(q0 - pad, n_in - 1)), max(0, min(q1 + 2 * _TAPS - pad, n_in - 1)) + 1


def _check_order(order: int) -> None:
    if order not in (0, 1, 3):
        raise ValueError(f"spline order must be 0, 1 or 3, got {order}")


def _coefficient_range(coords: torch.Tensor, n: int) -> tuple[int, int]:
    # output sample at coordinate c reads coefficients floor(c) + 1 .. floor(c) + 4, of the
    # n + 4 coefficients (samples -2 .. n + 1)
    first = int(torch.floor(coords[0])) + 1
    last = int(torch.floor(coords[-1])) + 4
    return max(0, min(first, n + 3)), max(0, min(last, n + 3))


def resample_axis(
    x: torch.Tensor,
    axis: int,
    size: int,
    order: int,
    *,
    rows: tuple[int, int] | None = None,
    full_size: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Resample one axis of a tensor to ``size`` samples (grid mode, edge extension).

    Parameters
    ----------
    x
        Tensor of any shape; floating point for orders 1 and 3, any dtype for order 0.
    axis
        The axis to resample.
    size
        New number of samples.
    order
        0 (nearest), 1 (linear) or 3 (cubic B-spline).
    rows
        Only compute output samples ``[start, stop)`` along ``axis`` (default: all).
    full_size, offset
        ``x`` holds input samples ``[offset, offset + x.shape[axis])`` of an axis of
        ``full_size`` samples (default: the whole axis); it must cover
        :func:`axis_support` of ``rows``.
    """
    axis = axis % x.dim()
    n = x.shape[axis] if full_size is None else full_size
    start, stop = (0, size) if rows is None else rows
    if n == size:
        return x.narrow(axis, start - offset, stop - start)
    _check_order(order)
    coords = _coordinates(n, size, x.device)[start:stop]
    if order == 0:
        idx = torch.floor(coords + 0.5).clamp(0, n - 1).long()
        return _take(x, axis, idx - offset)
    if not x.is_floating_point():
        raise TypeError(f"order {order} resampling needs a floating point tensor, got {x.dtype}")
    if order == 1:
        c = coords.clamp(0, n - 1)
        i0 = torch.floor(c).long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        view = [1] * x.dim()
        view[axis] = -1
        t = (c - i0).to(x.dtype).view(view)
        # the same products and sum as a * (1 - t) + b * t, without whole-tensor temporaries
        out = _take(x, axis, i0 - offset).mul_(1 - t)
        return out.add_(_take(x, axis, i1 - offset).mul_(t))
    matrix = _cubic_matrix(n, size, start, stop, offset, x.shape[axis]).to(x.device, x.dtype)
    shape = x.shape
    before, after = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    x = x.contiguous()
    if after == 1:
        out = x.reshape(before, shape[axis]) @ matrix
    else:  # a batched product along an inner axis: no transposed copy of the volume
        out = torch.matmul(matrix.T, x.reshape(before, shape[axis], after))
    return out.reshape(*shape[:axis], stop - start, *shape[axis + 1 :])


@lru_cache(maxsize=64)
def _cubic_matrix(n: int, size: int, start: int, stop: int, offset: int, rows: int) -> torch.Tensor:
    """Cubic B-spline resampling of one axis as a (rows, stop - start) matrix (float64).

    Output samples ``[start, stop)`` of an ``n`` -> ``size`` resampling, from input samples
    ``[offset, offset + rows)``: the truncated prefilter (25 taps on the edge-extended input)
    followed by the four B-spline weights, composed exactly in float64 and applied as one
    matrix product (a few GEMMs instead of a per-line convolution).
    """
    coords = _coordinates(n, size, torch.device("cpu"))[start:stop]
    i = torch.floor(coords)
    t = coords - i
    t2, t3 = t * t, t * t * t
    spline = torch.stack(
        (
            (1 - t) ** 3 / 6,
            (3 * t3 - 6 * t2 + 4) / 6,
            (-3 * t3 + 3 * t2 + 3 * t + 1) / 6,
            t3 / 6,
        )
    )  # (4, outputs)
    # coefficient q (0 .. n + 3, sample q - 2) = sum_j h[j] x[clamp(q + j - 14, 0, n - 1)]
    q = (i.long() + 1)[None, :] + torch.arange(4)[:, None]  # (4, outputs)
    q = q.clamp(0, n + 3)
    taps = torch.arange(2 * _TAPS + 1)
    source = (q[:, :, None] + taps[None, None, :] - (_TAPS + 2)).clamp(0, n - 1) - offset
    kernel = _prefilter_kernel()
    weight = spline[:, :, None] * kernel[None, None, :]  # (4, outputs, 25)
    if int(source.min()) < 0 or int(source.max()) >= rows:
        raise ValueError("the input rows do not cover the support of the output rows")
    columns = torch.arange(stop - start)[None, :, None].expand_as(source)
    matrix = torch.zeros(rows, stop - start, dtype=torch.float64)
    matrix.index_put_((source.flatten(), columns.flatten()), weight.flatten(), accumulate=True)
    return matrix


def _take(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    # advanced indexing: index_select along an inner axis is many times slower on CPU
    return x[(slice(None),) * axis + (index,)]


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
        Float tensor (channels, three spatial axes); any dtype for order 0.
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
    if shape == tuple(int(s) for s in new_shape):
        return data
    slabs = resample_slabs(
        lambda region: data[(slice(None), *region)],
        shape,
        new_shape,
        spacing,
        new_spacing,
        spec,
        clip=clip,
    )
    return next(slab for _, slab in slabs)


Region = tuple[slice, slice, slice]


def resample_slabs(
    source: Callable[[Region], torch.Tensor],
    shape: Sequence[int],
    new_shape: Sequence[int],
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    spec: ResamplingSpec,
    clip: bool = True,
    max_elements: int | None = None,
    channels: int = 1,
) -> Iterator[tuple[Region, torch.Tensor]]:
    """Resample a volume slab by slab; yields ``(output region, resampled slab)``.

    The slabs lie along the axis nnU-Net resamples separately, else along the first axis;
    put together they equal :func:`resample` of the whole volume exactly.

    Parameters
    ----------
    source
        Returns the input (channels, *region's shape) for a spatial region of the input; it is
        called once per slab (and, for clipped cubic resampling without a separate axis, once
        more per slab for the input range), so it may convert or normalise on the fly.
    shape, new_shape
        Spatial shape of the input and of the output.
    spacing, new_spacing
        Current and target spacing (decide whether an axis is treated separately).
    spec
        Orders and the separate-z rule.
    clip
        Clip to the input range as :func:`resample` does.
    max_elements
        Bound on the elements of the largest intermediate of one slab (all channels);
        ``None``: one slab, the whole volume.
    channels
        Channels ``source`` returns (sizes the slabs).
    """
    shape = tuple(int(s) for s in shape)
    new = tuple(int(s) for s in new_shape)
    separate = separate_z_axis(spacing, new_spacing, spec) if shape != new else None
    axis = 0 if separate is None else separate
    others = [a for a in range(3) if a != axis]
    axis_order = spec.order_z if separate is not None else spec.order
    # the largest intermediate per output row along the slab axis: the input rows it reads,
    # or a row after the first or second axis
    per_row = max(
        math.prod(shape[a] for a in others) * max(1.0, shape[axis] / new[axis]),
        math.prod(new[a] for a in others),
        new[others[0]] * shape[others[1]],
        shape[others[0]] * new[others[1]],
    )
    rows = new[axis]
    if max_elements is not None:
        rows = max(1, min(rows, int(max_elements // max(1.0, channels * per_row))))
    bounds = None
    if clip and spec.order > 1 and separate is None and shape != new:
        bounds = _value_range(source, shape, rows if max_elements is not None else shape[0])

    def region(lo: int, hi: int) -> Region:
        parts = [slice(None), slice(None), slice(None)]
        parts[axis] = slice(lo, hi)
        return (parts[0], parts[1], parts[2])

    for start in range(0, new[axis], rows):
        stop = min(start + rows, new[axis])
        lo, hi = axis_support(shape[axis], new[axis], axis_order, start, stop)
        x = source(region(lo, hi))
        if separate is None:
            x = resample_axis(
                x,
                axis + 1,
                new[axis],
                spec.order,
                rows=(start, stop),
                full_size=shape[axis],
                offset=lo,
            )
            x = _resample_plane(x, others, new, spec.order)
            if bounds is not None:
                x = torch.maximum(torch.minimum(x, bounds[1]), bounds[0])
        else:
            low = x
            x = _resample_plane(x, others, new, spec.order)
            if clip and spec.order > 1:
                dims = tuple(a + 1 for a in others)
                lo_v, hi_v = low.amin(dim=dims, keepdim=True), low.amax(dim=dims, keepdim=True)
                x = torch.maximum(torch.minimum(x, hi_v), lo_v)
            del low
            x = resample_axis(
                x,
                axis + 1,
                new[axis],
                spec.order_z,
                rows=(start, stop),
                full_size=shape[axis],
                offset=lo,
            )
        yield region(start, stop), x


def _resample_plane(
    x: torch.Tensor, axes: list[int], new: tuple[int, ...], order: int
) -> torch.Tensor:
    """Resample the two spatial ``axes`` of (c, z, y, x); linear in one bilinear pass."""
    if order != 1 or not x.is_floating_point():
        for a in axes:
            x = resample_axis(x, a + 1, new[a], order)
        return x
    if all(x.shape[a + 1] == new[a] for a in axes):
        return x
    # torch's bilinear kernel samples at (i + 0.5) * n_in / n_out - 0.5 with edge clamping,
    # skimage's order 1 in grid mode; several times faster than two separable passes
    rest = next(a for a in range(3) if a not in axes)
    order_in = [0, rest + 1, axes[0] + 1, axes[1] + 1]
    y = F.interpolate(
        x.permute(order_in), size=(new[axes[0]], new[axes[1]]), mode="bilinear", align_corners=False
    )
    return y.permute([order_in.index(i) for i in range(4)])


def _value_range(
    source: Callable[[Region], torch.Tensor], shape: tuple[int, ...], rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel minimum and maximum of the whole input, read slab by slab."""
    lows, highs = [], []
    for lo in range(0, shape[0], max(1, rows)):
        x = source((slice(lo, min(lo + rows, shape[0])), slice(None), slice(None)))
        lows.append(x.amin(dim=(1, 2, 3), keepdim=True))
        highs.append(x.amax(dim=(1, 2, 3), keepdim=True))
    return torch.stack(lows).amin(dim=0), torch.stack(highs).amax(dim=0)
