"""Put an array from another grid onto a DICOM grid voxel for voxel, or refuse: never resample.

Label maps made outside omas-idc (NIfTI files of training annotations, TotalSegmentator
outputs) lie on the source DICOM grid up to conventions: RAS vs LPS, axes flipped or permuted
(dcm2niix stores rows bottom-up), or cropped. Such a map is moved onto the grid exactly when the
voxel-to-voxel mapping ``inv(target affine) @ source affine`` is a signed permutation with an
integer offset, within :data:`GRID_TOLERANCE_MM` in patient space; anything else would need
resampling, which changes labels, so it is refused with a named reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from omas_idc.geometry import VolumeGeometry

__all__ = ["GRID_TOLERANCE_MM", "GridMapping", "GridMismatch", "find_grid_mapping", "map_onto_grid"]

#: The largest distance (mm) between a source voxel centre and the target voxel centre it is
#: assigned to. NIfTI stores affines in float32: about 1e-4 mm at 1000 mm from the origin.
GRID_TOLERANCE_MM = 1e-3


class GridMismatch(ValueError):
    """The array cannot be put on the grid without resampling.

    ``reason`` is one of ``"rotation"`` (axes not parallel), ``"spacing"`` (voxel sizes
    differ), ``"offset"`` (shifted by a fraction of a voxel), ``"outside"`` (labelled voxels
    fall outside the grid), ``"dimensions"`` (not a 3-D array).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GridMapping:
    """Source voxel ``(x, y, z)`` -> target voxel ``permutation``-ed, ``flips``, ``offset``.

    Target index along target axis ``t`` is ``sign[t] * source index along axis
    permutation[t] + offset[t]``.
    """

    permutation: tuple[int, int, int]
    signs: tuple[int, int, int]
    offset: tuple[int, int, int]
    max_error_mm: float

    @property
    def is_identity(self) -> bool:
        """True where the arrays are already in the same index order."""
        return (
            self.permutation == (0, 1, 2)
            and self.signs == (1, 1, 1)
            and self.offset
            == (
                0,
                0,
                0,
            )
        )


def find_grid_mapping(
    source_affine: npt.ArrayLike,
    source_shape_zyx: tuple[int, ...],
    target: VolumeGeometry,
    tolerance_mm: float = GRID_TOLERANCE_MM,
) -> GridMapping:
    """The exact voxel correspondence from a source grid (LPS affine) to ``target``.

    Raises
    ------
    GridMismatch
        Where no signed permutation with integer offset maps the grids within tolerance.
    """
    if len(source_shape_zyx) != 3:
        raise GridMismatch(f"a 3-D array is expected, got shape {source_shape_zyx}", "dimensions")
    source = np.asarray(source_affine, dtype=np.float64)
    mapping = np.linalg.inv(target.affine) @ source
    linear = mapping[:3, :3]
    permutation = np.argmax(np.abs(linear), axis=1)
    if sorted(permutation.tolist()) != [0, 1, 2]:
        raise GridMismatch("the grids' axes are not parallel", "rotation")
    signed = np.zeros((3, 3))
    signs = np.sign(linear[np.arange(3), permutation])
    signed[np.arange(3), permutation] = signs
    offset = np.rint(mapping[:3, 3])
    # Compare in patient space: where does each source corner land, and where should it?
    nx, ny, nz = source_shape_zyx[2], source_shape_zyx[1], source_shape_zyx[0]
    corners = np.array(
        [[x, y, z] for x in (0, nx - 1) for y in (0, ny - 1) for z in (0, nz - 1)], dtype=np.float64
    )
    actual = corners @ source[:3, :3].T + source[:3, 3]
    assigned = (corners @ signed.T + offset) @ target.affine[:3, :3].T + target.affine[:3, 3]
    error = float(np.max(np.linalg.norm(actual - assigned, axis=1)))
    if error > tolerance_mm:
        spacing_source = np.linalg.norm(source[:3, :3], axis=0)
        spacing_target = np.linalg.norm(target.affine[:3, :3], axis=0)[permutation]
        if not np.allclose(linear, signed, atol=1e-6):
            if np.allclose(spacing_source, spacing_target, rtol=1e-4):
                raise GridMismatch(
                    f"the grids' axes are not parallel (voxels land up to {error:.4f} mm away)",
                    "rotation",
                )
            raise GridMismatch(
                f"voxel sizes differ: {np.round(spacing_source, 4).tolist()} mm vs "
                f"{np.round(spacing_target, 4).tolist()} mm",
                "spacing",
            )
        raise GridMismatch(
            f"the grids are shifted by a fraction of a voxel (voxels land up to {error:.4f} mm "
            f"from the nearest target voxel centre; tolerance {tolerance_mm} mm)",
            "offset",
        )
    return GridMapping(
        permutation=(int(permutation[0]), int(permutation[1]), int(permutation[2])),
        signs=(int(signs[0]), int(signs[1]), int(signs[2])),
        offset=(int(offset[0]), int(offset[1]), int(offset[2])),
        max_error_mm=error,
    )


def map_onto_grid(
    array_zyx: npt.NDArray[np.generic],
    source_affine: npt.ArrayLike,
    target: VolumeGeometry,
    tolerance_mm: float = GRID_TOLERANCE_MM,
) -> npt.NDArray[np.generic]:
    """``array_zyx`` (on the grid of ``source_affine``) as an array on ``target``'s grid.

    Voxels of the target not covered by the source are 0; non-zero source voxels outside
    the target are refused (``GridMismatch(reason="outside")``).
    """
    mapping = find_grid_mapping(source_affine, array_zyx.shape, target, tolerance_mm)
    xyz = np.asarray(array_zyx).transpose(2, 1, 0)
    # Reorder source axes into target axis order, then flip where signs are negative.
    moved = xyz.transpose(mapping.permutation)
    for axis, sign in enumerate(mapping.signs):
        if sign < 0:
            moved = np.flip(moved, axis=axis)
    # After flipping, index 0 along a negative axis corresponds to target index offset - (n-1).
    start = [
        offset - (moved.shape[axis] - 1) if sign < 0 else offset
        for axis, (sign, offset) in enumerate(zip(mapping.signs, mapping.offset, strict=True))
    ]
    target_xyz = (target.shape[2], target.shape[1], target.shape[0])
    result = np.zeros(target_xyz, dtype=moved.dtype)
    src_slices, dst_slices = [], []
    for axis in range(3):
        lo, hi = start[axis], start[axis] + moved.shape[axis]
        dst_lo, dst_hi = max(lo, 0), min(hi, target_xyz[axis])
        if dst_hi <= dst_lo:
            dst_lo = dst_hi = 0
        src_slices.append(slice(dst_lo - lo, dst_lo - lo + (dst_hi - dst_lo)))
        dst_slices.append(slice(dst_lo, dst_hi))
    inside = moved[tuple(src_slices)]
    if np.count_nonzero(moved) != np.count_nonzero(inside):
        raise GridMismatch(
            f"{np.count_nonzero(moved) - np.count_nonzero(inside)} labelled voxels fall outside "
            "the DICOM grid",
            "outside",
        )
    result[tuple(dst_slices)] = inside
    return np.ascontiguousarray(result.transpose(2, 1, 0))
