"""From a CTVolume to nnU-Net's input and back: reorientation, crop, normalisation.

The reorientation is nibabel's ``as_closest_canonical``: the array is permuted and flipped so
that its axes point as close as possible to R, A and S (NIfTI RAS), which is how a NIfTI written
from the series and read with SimpleITK reaches nnU-Net (array order (S, A, R)). The inverse
maps label maps back onto the source grid exactly (permutations and flips only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from nibabel.orientations import io_orientation

from omas_idc.engine.modelfolder import IntensityProperties
from omas_idc.geometry import VolumeGeometry

__all__ = [
    "CanonicalOrientation",
    "body_bbox",
    "ct_normalize",
    "nonzero_bbox",
]


@dataclass(frozen=True)
class CanonicalOrientation:
    """The permutation and flips from a source ``[z, y, x]`` array to the RAS-canonical one.

    Attributes
    ----------
    permutation
        ``canonical = source.permute(permutation)`` after flipping ``flips`` (source axes).
    flips
        Source array axes to reverse before permuting.
    spacing
        Voxel spacing of the canonical array, in its axis order (mm): the distance between
        slice planes along the slice axis.
    step_lengths
        The length of one index step along each canonical axis (mm): the affine's column norms,
        which NIfTI readers (CADS, TotalSegmentator) take as the voxel size. It differs from
        ``spacing`` only on a sheared (gantry-tilted) grid, where a step between slices is
        longer than the distance between their planes.
    """

    permutation: tuple[int, int, int]
    flips: tuple[int, ...]
    spacing: tuple[float, float, float]
    step_lengths: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, geometry: VolumeGeometry) -> CanonicalOrientation:
        """The canonical orientation of a volume's grid."""
        ornt = io_orientation(geometry.ras_affine)  # rows: voxel axis (x, y, z) -> (out axis, flip)
        # voxel axis v (x=0, y=1, z=2) is array axis 2 - v; output RAS axis r becomes array
        # axis 2 - r of the canonical [S, A, R] array.
        perm = [0, 0, 0]
        flips = []
        column_mm = np.linalg.norm(geometry.affine[:3, :3], axis=0)
        sizes = [float(column_mm[0]), float(column_mm[1]), geometry.slice_spacing]
        spacing = [0.0, 0.0, 0.0]
        steps = [0.0, 0.0, 0.0]
        for v in range(3):
            out_axis, direction = int(ornt[v, 0]), float(ornt[v, 1])
            perm[2 - out_axis] = 2 - v
            spacing[2 - out_axis] = sizes[v]
            steps[2 - out_axis] = float(column_mm[v])
            if direction < 0:
                flips.append(2 - v)
        return cls(
            permutation=(perm[0], perm[1], perm[2]),
            flips=tuple(sorted(flips)),
            spacing=(spacing[0], spacing[1], spacing[2]),
            step_lengths=(steps[0], steps[1], steps[2]),
        )

    def to_canonical(self, array: torch.Tensor) -> torch.Tensor:
        """Source ``[z, y, x]`` -> canonical ``[S, A, R]``."""
        if self.flips:
            array = torch.flip(array, self.flips)
        return array.permute(self.permutation)

    def to_source(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Canonical ``[S, A, R]`` -> source ``[z, y, x]`` (numpy, for label maps)."""
        inverse = np.argsort(self.permutation)
        out = np.transpose(array, inverse)
        if self.flips:
            out = np.flip(out, self.flips)
        return np.ascontiguousarray(out)


def nonzero_bbox(data: torch.Tensor) -> tuple[slice, slice, slice]:
    """nnU-Net's ``crop_to_nonzero`` box: the bounding box of ``data != 0`` (z, y, x)."""
    mask = data != 0
    slices = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = torch.nonzero(mask.any(dim=other)).flatten()
        if hit.numel() == 0:
            return (slice(0, 0), slice(0, 0), slice(0, 0))
        slices.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return (slices[0], slices[1], slices[2])


def body_bbox(
    hu: torch.Tensor,
    spacing: tuple[float, float, float],
    margin_mm: float = 10.0,
    threshold_hu: float = -500.0,
) -> tuple[slice, slice, slice]:
    """Bounding box of everything denser than ``threshold_hu`` plus a margin (body crop).

    Voxels outside the box are labelled background: air around the patient and the table's
    far side carry no anatomy. The whole grid where nothing passes the threshold.
    """
    mask = hu > threshold_hu
    slices = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = torch.nonzero(mask.any(dim=other)).flatten()
        n = hu.shape[axis]
        if hit.numel() == 0:
            return (slice(0, hu.shape[0]), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
        m = int(np.ceil(margin_mm / spacing[axis]))
        slices.append(slice(max(0, int(hit[0]) - m), min(n, int(hit[-1]) + 1 + m)))
    return (slices[0], slices[1], slices[2])


def ct_normalize(data: torch.Tensor, intensity: IntensityProperties | None) -> torch.Tensor:
    """nnU-Net's CTNormalization: clip to the 0.5/99.5 percentiles, subtract mean, divide std.

    Returns a new float32 tensor (HU may come as int16); one copy, the steps run in place.
    """
    out = data.to(torch.float32, copy=True)
    if intensity is None:
        return out
    out.clamp_(intensity.percentile_00_5, intensity.percentile_99_5)
    out.sub_(intensity.mean)
    return out.div_(max(intensity.std, 1e-8))
