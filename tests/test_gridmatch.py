"""Label maps from other conventions land on the DICOM grid voxel for voxel, or are refused."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omas_idc.geometry import lps_to_ras
from omas_idc.gridmatch import GridMismatch, find_grid_mapping, map_onto_grid
from omas_idc.phantom import PhantomOptions, render_phantom
from omas_idc.read import read_series

OPTIONS = PhantomOptions(seed=4, shape=(12, 30, 36), pixel_spacing=(9.0, 10.0), slice_spacing=25.0)


@pytest.fixture(scope="module")
def truth():  # type: ignore[no-untyped-def]
    geometry, _, labels, _ = render_phantom(OPTIONS)
    return geometry, labels


def _index_affine(
    affine: np.ndarray,
    axis_order: tuple[int, int, int],
    flips: tuple[bool, ...],
    shape_xyz: tuple[int, ...],
) -> np.ndarray:
    """The affine of an array whose (x, y, z) axes were permuted and flipped."""
    permuted = affine.copy()
    permuted[:3, :3] = affine[:3, list(axis_order)]
    for axis, flip in enumerate(flips):
        if flip:
            n = shape_xyz[axis]
            permuted[:3, 3] += permuted[:3, axis] * (n - 1)
            permuted[:3, axis] = -permuted[:3, axis]
    return permuted


@pytest.mark.parametrize("axis_order", [(0, 1, 2), (1, 0, 2), (2, 0, 1)])
@pytest.mark.parametrize("flips", [(False, False, False), (False, True, False), (True, True, True)])
def test_permuted_and_flipped_arrays_map_back_exactly(truth, axis_order, flips) -> None:  # type: ignore[no-untyped-def]
    geometry, labels = truth
    xyz = labels.transpose(2, 1, 0).transpose(axis_order)
    affine = _index_affine(geometry.affine, axis_order, flips, xyz.shape)
    for axis, flip in enumerate(flips):
        if flip:
            xyz = np.flip(xyz, axis=axis)
    mapped = map_onto_grid(np.ascontiguousarray(xyz.transpose(2, 1, 0)), affine, geometry)
    np.testing.assert_array_equal(mapped, labels)


def test_nifti_in_ras_with_flipped_rows_round_trips(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    """A dcm2niix-style file: RAS affine, rows stored bottom-up."""
    geometry, labels = truth
    xyz = np.flip(labels.transpose(2, 1, 0), axis=1)
    lps = _index_affine(geometry.affine, (0, 1, 2), (False, True, False), xyz.shape)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(xyz), lps_to_ras(lps)), tmp_path / "l.nii.gz")
    image = nib.load(tmp_path / "l.nii.gz")
    array = np.asarray(image.dataobj).transpose(2, 1, 0)
    mapped = map_onto_grid(array, lps_to_ras(image.affine), geometry)
    np.testing.assert_array_equal(mapped, labels)


def test_cropped_arrays_are_placed_and_the_rest_is_background(truth) -> None:  # type: ignore[no-untyped-def]
    geometry, labels = truth
    crop = labels[2:9, 5:25, 4:30]
    affine = geometry.affine.copy()
    affine[:3, 3] = geometry.voxel_to_lps([2, 5, 4])
    mapped = map_onto_grid(crop, affine, geometry)
    np.testing.assert_array_equal(mapped[2:9, 5:25, 4:30], crop)
    assert mapped.sum() == crop.sum()


def test_labels_outside_the_grid_are_refused(truth) -> None:  # type: ignore[no-untyped-def]
    geometry, labels = truth
    affine = geometry.affine.copy()
    affine[:3, 3] = geometry.voxel_to_lps([-3, 0, 0])  # three slices below the series
    with pytest.raises(GridMismatch) as info:
        map_onto_grid(labels, affine, geometry)
    assert info.value.reason == "outside"


@pytest.mark.parametrize(
    ("change", "reason"),
    [("half-voxel", "offset"), ("spacing", "spacing"), ("rotation", "rotation")],
)
def test_grids_that_need_resampling_are_refused_with_a_reason(truth, change, reason) -> None:  # type: ignore[no-untyped-def]
    geometry, labels = truth
    affine = geometry.affine.copy()
    if change == "half-voxel":
        affine[:3, 3] += 0.5 * affine[:3, 0]
    elif change == "spacing":
        affine[:3, 0] *= 1.01
    else:
        t = np.radians(2.0)
        rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        affine[:3, :3] = rotation @ affine[:3, :3]
    with pytest.raises(GridMismatch) as info:
        find_grid_mapping(affine, labels.shape, geometry)
    assert info.value.reason == reason


def test_a_thousandth_of_a_millimetre_is_tolerated(truth) -> None:  # type: ignore[no-untyped-def]
    geometry, labels = truth
    affine = geometry.affine.copy()
    affine[:3, 3] += 4e-4
    assert find_grid_mapping(affine, labels.shape, geometry).is_identity


def test_totalsegmentator_reference_maps_onto_its_dicom_series(shared_data: Path) -> None:
    """PROVENANCE: NIfTI i = DICOM column, j = 511 - DICOM row, k = 0 the most inferior slice."""
    folder = next(shared_data.glob("totalsegmentator/**/example_ct_dicom"))
    volume = read_series(folder)
    image = nib.load(folder.parent / "example_seg_dicom.nii.gz")
    data = np.asarray(image.dataobj)
    mapping = find_grid_mapping(lps_to_ras(image.affine), data.shape[::-1], volume.geometry)
    assert mapping.max_error_mm < 1e-3
    mapped = map_onto_grid(data.transpose(2, 1, 0), lps_to_ras(image.affine), volume.geometry)
    assert volume.geometry.slice_positions[0][2] < volume.geometry.slice_positions[-1][2]
    for k in (0, 7, 19):
        np.testing.assert_array_equal(mapped[k], data[:, ::-1, k].T)
    assert len(np.unique(mapped)) == 32  # background + 31 labels
