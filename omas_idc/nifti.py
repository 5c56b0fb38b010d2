"""NIfTI export and import of volumes and label maps on a DICOM grid (our own writer, nibabel).

Conventions: the NIfTI data array is the omas-idc array ``[z, y, x]`` transposed to
``(x, y, z)`` (i = column, j = row, k = slice), and its affine is the RAS version of the LPS
affine, :func:`omas_idc.geometry.lps_to_ras`. No reorientation or flipping takes place, so
voxel ``(i, j, k)`` of the file is voxel ``[k, j, i]`` of the array: what a SEG frame refers to
stays where it was.

Sheared (gantry-tilted) grids: the ``sform`` holds the exact sheared affine (code 1, scanner
anatomical); the ``qform`` is set only for unsheared grids, since a quaternion cannot express
a shear, and is left at code 0 otherwise. Readers that honour the sform (nibabel, FSL, 3D
Slicer) place such a file correctly; ITK and SimpleITK refuse or orthogonalise non-orthonormal
directions, so for them resample first or pass ``allow_sheared=False`` to be told.
"""

from __future__ import annotations

import logging
import os
import zlib

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError

from omas_idc.atomic import atomic_write_with
from omas_idc.geometry import VolumeGeometry, lps_to_ras
from omas_idc.volume import CTVolume

__all__ = [
    "AFFINE_TOLERANCE_MM",
    "array_to_nifti",
    "read_nifti",
    "read_nifti_on_grid",
    "volume_to_nifti",
    "write_nifti",
]

logger = logging.getLogger(__name__)

#: A NIfTI affine matches a grid when no entry differs by more than this (mm): NIfTI stores
#: the sform in float32, about 1e-4 mm at 1000 mm from the origin.
AFFINE_TOLERANCE_MM = 1e-3


def array_to_nifti(
    array: npt.NDArray[np.generic],
    geometry: VolumeGeometry,
    *,
    allow_sheared: bool = True,
) -> nib.Nifti1Image:
    """A NIfTI-1 image of a ``[z, y, x]`` array on ``geometry``.

    Parameters
    ----------
    array
        Volume or label map with ``array.shape == geometry.shape``.
    geometry
        Its grid.
    allow_sheared
        Write sheared (tilted) grids into the sform (default); ``False`` raises instead.

    Raises
    ------
    ValueError
        Where the shapes differ, or the grid is sheared and ``allow_sheared`` is False.
    """
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} differs from the grid's {geometry.shape}")
    if geometry.is_sheared and not allow_sheared:
        raise ValueError(
            f"the grid is sheared by a gantry tilt of {geometry.tilt_degrees:.2f} degrees; "
            "NIfTI qform cannot hold it. Resample to an orthogonal grid, or allow_sheared=True "
            "to write the exact affine into the sform."
        )
    affine = lps_to_ras(geometry.affine)
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
    image.set_sform(affine, code=1)
    if geometry.is_sheared:
        image.set_qform(None, code=0)
    else:
        image.set_qform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    return image


def volume_to_nifti(volume: CTVolume, *, allow_sheared: bool = True) -> nib.Nifti1Image:
    """The HU volume of a :class:`~omas_idc.volume.CTVolume` as an int16 NIfTI image."""
    image = array_to_nifti(volume.hu, volume.geometry, allow_sheared=allow_sheared)
    image.header["descrip"] = b"omas-idc CT (HU)"
    return image


def write_nifti(
    path: str | os.PathLike[str],
    array: npt.NDArray[np.generic],
    geometry: VolumeGeometry,
    *,
    allow_sheared: bool = True,
) -> None:
    """Write a ``[z, y, x]`` array on ``geometry`` to ``path`` (``.nii`` or ``.nii.gz``).

    The file is written to a temporary name and renamed into place, so a killed run never
    leaves a truncated file behind.
    """
    image = array_to_nifti(array, geometry, allow_sheared=allow_sheared)
    target = os.fspath(path)
    suffix = ".nii.gz" if target.endswith(".nii.gz") else ".nii"
    atomic_write_with(target, lambda temporary: nib.save(image, temporary), suffix=suffix)
    logger.debug("wrote %s (%s, %s)", target, array.dtype, array.shape)


def read_nifti(
    path: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """A NIfTI file as a ``[z, y, x]`` array and its LPS affine (sform, else qform).

    No reorientation: the array is the file's (i, j, k) data transposed.

    Raises
    ------
    ValueError
        Naming the file, where it cannot be read as a 3-D NIfTI volume: missing, empty, not
        NIfTI, a ``.nii.gz`` that is not gzip, truncated, or not 3-D (a 4-D series).
    """
    try:
        image = nib.load(os.fspath(path))
    except FileNotFoundError as err:
        raise ValueError(f"{path} does not exist: check the path") from err
    except (OSError, EOFError, ValueError, ImageFileError) as err:
        raise ValueError(
            f"{path} is not a readable NIfTI file ({err}): give a .nii or .nii.gz file "
            "(an empty file, another format, or a .nii.gz that is not gzip-compressed is not one)"
        ) from err
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(
            f"{path} is a {type(image).__name__}, not a NIfTI file: convert it to .nii.gz"
        )
    if len(image.shape) != 3:
        raise ValueError(
            f"{path} holds a {len(image.shape)}-D image of shape {image.shape}; a 3-D volume is "
            "expected: give one volume (split a 4-D series into 3-D files first)"
        )
    sform, sform_code = image.get_sform(coded=True)
    affine = sform if sform is not None and int(sform_code) > 0 else image.get_qform()
    try:
        data = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise ValueError(
            f"{path} is truncated or damaged: its header announces shape {image.shape} but the "
            f"data cannot be read ({err}); copy or write the file again"
        ) from err
    return np.ascontiguousarray(data.transpose(2, 1, 0)), lps_to_ras(affine)


def read_nifti_on_grid(
    path: str | os.PathLike[str], geometry: VolumeGeometry
) -> npt.NDArray[np.generic]:
    """Read a NIfTI file that must lie on ``geometry`` exactly (e.g. a label map).

    Raises
    ------
    ValueError
        Where its shape or affine differs from the grid (beyond :data:`AFFINE_TOLERANCE_MM`):
        a label map on another grid would be misplaced, so it is never silently accepted.
    """
    array, affine = read_nifti(path)
    if array.shape != tuple(geometry.shape):
        raise ValueError(f"{path}: shape {array.shape[::-1]} (x,y,z) differs from the grid's")
    difference = float(np.max(np.abs(affine - geometry.affine)))
    if difference > AFFINE_TOLERANCE_MM:
        raise ValueError(
            f"{path}: its affine differs from the grid's by {difference:.4f} mm; resample it "
            "onto the source grid first"
        )
    return array
