"""Geometry shared by every stage: DICOM patient coordinates (LPS), affines, plane positions.

Conventions (used throughout omas-idc):

- Volumes are numpy arrays indexed ``[z, y, x]`` = ``[slice, row, column]``; slice 0 is the
  slice with the smallest position along the slice normal.
- An *affine* is a 4x4 matrix mapping a voxel index written ``(x, y, z, 1)`` = ``(column, row,
  slice, 1)`` to a point in DICOM patient coordinates (LPS, millimetres). Note the reversed
  order with respect to the array axes, as in NIfTI/ITK.
- Column 0 of the affine is the row direction cosine (ImageOrientationPatient[0:3], the
  direction of increasing column index) times the column spacing (PixelSpacing[1]); column 1 is
  the column direction cosine (ImageOrientationPatient[3:6]) times the row spacing
  (PixelSpacing[0]); column 2 is the step from one slice's ImagePositionPatient to the next.
  With gantry tilt this step is not parallel to the slice normal and the affine is sheared
  (PS3.3 C.7.6.2.1.1 defines positions; the shear is how the tilt is carried exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LPS_TO_RAS",
    "VolumeGeometry",
    "affine_from_slices",
    "lps_to_ras",
    "lps_to_voxel",
    "slice_normal",
    "voxel_to_lps",
    "voxel_volume_mm3",
]

#: Flips the first two axes: DICOM LPS <-> NIfTI RAS (an involution).
LPS_TO_RAS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])

FloatArray = npt.NDArray[np.float64]


def slice_normal(orientation: Sequence[float]) -> FloatArray:
    """The unit slice normal (row cosine x column cosine) of an ImageOrientationPatient."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} has parallel cosines")
    return normal / norm


def affine_from_slices(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    positions: npt.ArrayLike,
) -> FloatArray:
    """Voxel ``(x, y, z)`` -> LPS affine of a stack of parallel slices.

    Parameters
    ----------
    orientation
        ImageOrientationPatient (6 values: row cosine, column cosine).
    pixel_spacing
        PixelSpacing: (spacing between rows, spacing between columns) in mm.
    positions
        ImagePositionPatient of each slice, shape (n, 3), in slice order. The slice step is
        the mean step between consecutive positions (the first-to-last vector divided by n-1);
        for a single slice the step is the slice normal times 1 mm.

    Returns
    -------
    numpy.ndarray
        4x4 affine; sheared when the slice step is not parallel to the normal (gantry tilt).
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, 0] = row * float(pixel_spacing[1])
    affine[:3, 1] = col * float(pixel_spacing[0])
    if len(pos) > 1:
        affine[:3, 2] = (pos[-1] - pos[0]) / (len(pos) - 1)
    else:
        affine[:3, 2] = slice_normal(orientation)
    affine[:3, 3] = pos[0]
    return affine


def lps_to_ras(affine: npt.ArrayLike) -> FloatArray:
    """The RAS (NIfTI) affine of an LPS affine, or the reverse."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def voxel_to_lps(affine: npt.ArrayLike, zyx: npt.ArrayLike) -> FloatArray:
    """LPS points of voxel indices given in array order ``(z, y, x)``; shape (..., 3)."""
    idx = np.asarray(zyx, dtype=np.float64)[..., ::-1]
    a = np.asarray(affine, dtype=np.float64)
    return idx @ a[:3, :3].T + a[:3, 3]


def lps_to_voxel(affine: npt.ArrayLike, points: npt.ArrayLike) -> FloatArray:
    """Continuous voxel indices in array order ``(z, y, x)`` of LPS points; shape (..., 3)."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64) - a[:3, 3]
    xyz = p @ np.linalg.inv(a[:3, :3]).T
    return xyz[..., ::-1]


def voxel_volume_mm3(affine: npt.ArrayLike) -> float:
    """Volume of one voxel, ``|det(affine[:3, :3])|`` (correct for sheared, tilted grids)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


@dataclass(frozen=True)
class VolumeGeometry:
    """Where a volume's voxels lie in patient space.

    Attributes
    ----------
    affine
        4x4 voxel ``(x, y, z)`` -> LPS affine (see the module docstring).
    shape
        Array shape ``(slices, rows, columns)``.
    slice_positions
        ImagePositionPatient of each slice, shape (slices, 3), in array order.
    orientation
        ImageOrientationPatient shared by all slices.
    pixel_spacing
        PixelSpacing (row spacing, column spacing) in mm.
    """

    affine: FloatArray
    shape: tuple[int, int, int]
    slice_positions: FloatArray
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]

    @classmethod
    def from_slices(
        cls,
        orientation: Sequence[float],
        pixel_spacing: Sequence[float],
        positions: npt.ArrayLike,
        rows: int,
        columns: int,
    ) -> VolumeGeometry:
        """Geometry of a stack of slices with the given positions (in slice order)."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        return cls(
            affine=affine_from_slices(orientation, pixel_spacing, pos),
            shape=(len(pos), int(rows), int(columns)),
            slice_positions=pos.copy(),
            orientation=tuple(float(v) for v in orientation[:6]),  # type: ignore[arg-type]
            pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        )

    @property
    def normal(self) -> FloatArray:
        """Unit slice normal (row cosine x column cosine)."""
        return slice_normal(self.orientation)

    @property
    def slice_step(self) -> FloatArray:
        """Vector from one slice position to the next (mm)."""
        return np.asarray(self.affine[:3, 2], dtype=np.float64)

    @property
    def slice_spacing(self) -> float:
        """Distance between slice planes, measured along the normal (mm)."""
        return float(abs(self.slice_step @ self.normal))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in array order: (slice spacing along the normal, row, column)."""
        return (self.slice_spacing, self.pixel_spacing[0], self.pixel_spacing[1])

    @property
    def tilt_degrees(self) -> float:
        """Angle between the slice step and the slice normal: the gantry tilt (0 if none)."""
        step = self.slice_step
        norm = float(np.linalg.norm(step))
        if self.shape[0] < 2 or norm == 0.0:
            return 0.0
        cos = abs(float(step @ self.normal)) / norm
        return float(np.degrees(np.arccos(min(1.0, cos))))

    @property
    def is_sheared(self) -> bool:
        """True where the slice step departs from the normal by more than 0.01 degrees."""
        return self.tilt_degrees > 0.01

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3 (``|det|``, right for sheared grids)."""
        return voxel_volume_mm3(self.affine)

    @property
    def ras_affine(self) -> FloatArray:
        """The NIfTI (RAS) affine of this volume, for an array transposed to (x, y, z)."""
        return lps_to_ras(self.affine)

    def voxel_to_lps(self, zyx: npt.ArrayLike) -> FloatArray:
        """LPS points of voxel indices in array order (z, y, x)."""
        return voxel_to_lps(self.affine, zyx)

    def lps_to_voxel(self, points: npt.ArrayLike) -> FloatArray:
        """Continuous voxel indices (z, y, x) of LPS points."""
        return lps_to_voxel(self.affine, points)

    def orientation_code(self) -> str:
        """Three letters naming the patient direction of increasing x, y and z indices.

        For example ``"LPS"`` for a head-first-supine axial series stored feet to head.
        """
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for axis in range(3):
            vec = self.affine[:3, axis]
            dominant = int(np.argmax(np.abs(vec)))
            code += letters[dominant][0 if vec[dominant] > 0 else 1]
        return code
