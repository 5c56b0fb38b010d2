"""The wrappers' own resampling: ``scipy.ndimage.zoom`` on the RAS array, as CADS and
TotalSegmentator do it.

Both tools reorient the CT to the closest canonical (RAS) orientation, read the voxel spacing
from the NIfTI header (float32), and call ``scipy.ndimage.zoom`` on the float64 RAS array with
factors ``spacing / 1.5``: scipy's own grid (the corner voxels of input and output coincide:
output ``i`` samples input ``i * (n_in - 1) / (n_out - 1)``), output shape
``round(n * factor)``. CADS interpolates with cubic splines (order 3, mode ``constant``),
TotalSegmentator linearly (order 1, mode ``nearest``, its default since 2.16); both cast the
result to int32 (truncation towards zero). Their labels go back with ``zoom(order=0)`` to the
original shape, on the same corner-aligned grid.

omas-idc calls the same function on the same array in the same axis order (the canonical
``(S, A, R)`` tensor transposed to ``(R, A, S)``, a view), so that every sample, every float
rounding and every truncation is the reference's. The label map goes back by a gather with
the per-axis indices that ``zoom(order=0)`` takes (it is separable: scipy computes one index
table per axis), so labels need no float copy.

Cost: float64 copies of the volume (the input and, for order 3, the spline coefficients) on
the CPU; the engine's own resampling (``--wrapper-grid centred``) runs slab by slab on the
compute device instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from omas_idc.engine.card import WrapperZoom
from omas_idc.errors import ConfigurationError

__all__ = ["zoom_input", "zoom_labels", "zoom_shape"]


def _header_spacing(spacing_ras: Sequence[float]) -> np.ndarray:
    # the NIfTI header keeps the voxel size as float32; both tools divide that by the target
    return np.asarray(spacing_ras, dtype=np.float32).astype(np.float64)


def zoom_shape(shape: Sequence[int], spacing: Sequence[float], target: float) -> tuple[int, ...]:
    """The output shape of the wrapper's zoom for a canonical ``(S, A, R)`` shape."""
    factors = _header_spacing(spacing) / float(target)
    return tuple(round(float(n * f)) for n, f in zip(shape, factors, strict=True))


def zoom_input(
    canonical: torch.Tensor, spacing: Sequence[float], target: float, spec: WrapperZoom
) -> torch.Tensor:
    """The tool's resampling of a canonical ``(S, A, R)`` HU tensor to ``target`` mm.

    Parameters
    ----------
    canonical
        The HU volume on the canonical grid (any dtype, any device).
    spacing
        Its spacing along ``(S, A, R)`` in mm.
    target
        The wrapper's spacing (1.5 mm).
    spec
        Order, mode, cast and identity rule of the tool.

    Returns
    -------
    torch.Tensor
        float32 ``(S', A', R')`` on ``canonical``'s device, holding the cast values.
    """
    from scipy import ndimage

    header = _header_spacing(spacing)
    if spec.identity_when_equal and np.array_equal(header, np.full(3, float(target))):
        return canonical.float()
    ras = canonical.cpu().numpy().astype(np.float64).transpose(2, 1, 0)
    factors = (header / float(target))[::-1]
    out = ndimage.zoom(ras, factors, order=spec.order, mode=spec.mode)
    del ras
    if spec.cast:
        out = out.astype(spec.cast)
    result = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 1, 0), dtype=np.float32))
    return result.to(canonical.device)


def _order0_indices(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """The input index ``zoom(order=0, mode=mode)`` takes for each output sample of one axis;
    ``n_in`` where it takes the constant 0 (mode ``constant``: the last sample's coordinate can
    round to just outside the input, where scipy writes 0)."""
    from scipy import ndimage

    if n_in == n_out:
        return np.arange(n_in)
    factor = n_out / n_in  # change_spacing's target_shape / old_shape
    values = ndimage.zoom(np.arange(1, n_in + 1, dtype=np.float64), factor, order=0, mode=mode)
    if values.shape[0] != n_out:
        raise ConfigurationError(
            f"zoom of {n_in} samples by {factor} gives {values.shape[0]}, not {n_out}"
        )
    index = np.rint(values).astype(np.int64) - 1
    index[index < 0] = n_in
    return index


def zoom_labels(labels: torch.Tensor, shape: Sequence[int], mode: str = "nearest") -> torch.Tensor:
    """Labels on the wrapper's grid back to the canonical ``shape``, as ``zoom(order=0)``.

    Parameters
    ----------
    labels
        ``(S', A', R')`` label map on the 1.5 mm grid (any integer dtype, any device).
    shape
        The canonical ``(S, A, R)`` shape to return to.
    mode
        The tool's zoom mode (``"constant"``: CADS, ``"nearest"``: TotalSegmentator): with
        ``constant``, an output sample whose coordinate rounds to outside the input is 0.
    """
    out = labels
    for axis in range(3):
        n_in = int(out.shape[axis])
        index = _order0_indices(n_in, int(shape[axis]), mode)
        if (index == n_in).any():
            pad = [0, 0] * 3
            pad[2 * (2 - axis) + 1] = 1  # one zero sample after the last along ``axis``
            out = torch.nn.functional.pad(out, pad)
        out = out.index_select(axis, torch.from_numpy(index).to(out.device))
    return out.contiguous()
