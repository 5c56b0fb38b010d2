"""NIfTI export: RAS affine, no reorientation, sheared grids in the sform."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omas_idc.geometry import lps_to_ras
from omas_idc.nifti import read_nifti, read_nifti_on_grid, volume_to_nifti, write_nifti
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series

SMALL = {"shape": (20, 40, 48), "pixel_spacing": (7.5, 8.0), "slice_spacing": 20.0, "noise": 0.0}


@pytest.mark.parametrize(
    "option",
    [{}, {"orientation": "sagittal", "patient_position": "FFP"}, {"gantry_tilt_degrees": 15.0}],
)
def test_nifti_round_trip_keeps_voxels_and_world_positions(
    tmp_path: Path, option: dict[str, object]
) -> None:
    phantom = make_phantom(tmp_path / "dcm", PhantomOptions(seed=0, **SMALL, **option))  # type: ignore[arg-type]
    volume = read_series(tmp_path / "dcm")
    path = tmp_path / "ct.nii.gz"
    write_nifti(path, volume.hu, volume.geometry)
    image = nib.load(path)
    # nibabel (an independent reader) puts voxel (i, j, k) at the RAS point of our [k, j, i].
    np.testing.assert_allclose(image.affine, lps_to_ras(volume.geometry.affine), atol=1e-4)
    data = np.asarray(image.dataobj)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data.transpose(2, 1, 0), volume.hu)
    liver = phantom.structure("liver")
    ijk = np.argwhere(phantom.labels.transpose(2, 1, 0) == liver.label).mean(axis=0)
    ras = nib.affines.apply_affine(image.affine, ijk)
    assert np.linalg.norm(lps_to_ras(np.append(liver.centroid_lps, 1))[:3] - ras) < 5.0
    array, affine = read_nifti(path)
    np.testing.assert_array_equal(array, volume.hu)
    np.testing.assert_allclose(affine, volume.geometry.affine, atol=1e-4)
    # Labels must come back on exactly the source grid.
    labels = tmp_path / "labels.nii.gz"
    write_nifti(labels, phantom.labels, volume.geometry)
    np.testing.assert_array_equal(read_nifti_on_grid(labels, volume.geometry), phantom.labels)
    sheared = volume.geometry.is_sheared
    assert int(image.header["qform_code"]) == (0 if sheared else 1)
    assert int(image.header["sform_code"]) == 1


def test_sheared_grid_can_be_refused_and_misplaced_labels_are(tmp_path: Path) -> None:
    make_phantom(tmp_path / "dcm", PhantomOptions(seed=0, gantry_tilt_degrees=10.0, **SMALL))  # type: ignore[arg-type]
    volume = read_series(tmp_path / "dcm")
    with pytest.raises(ValueError, match="sheared"):
        volume_to_nifti(volume, allow_sheared=False)
    other = tmp_path / "other.nii.gz"
    shifted = volume.geometry.affine.copy()
    shifted[:3, 3] += 2.0
    nib.save(nib.Nifti1Image(volume.hu.transpose(2, 1, 0), lps_to_ras(shifted)), other)
    with pytest.raises(ValueError, match="resample"):
        read_nifti_on_grid(other, volume.geometry)
