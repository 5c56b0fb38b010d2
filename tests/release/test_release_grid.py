"""Label maps stored in other conventions land on the DICOM grid voxel for voxel, or are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_helpers import ABDOMEN, Convention, relabel, save_in_convention, write_tables

from omas_idc.catalog.model import Catalog
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.release import (
    DatasetRegistry,
    ManifestCase,
    ReleaseError,
    SeriesIndex,
    load_label_tables,
    prepare_case,
)

CONVENTIONS = [
    Convention("dicom-order"),
    Convention("ras-canonical", canonical=True),
    Convention("dcm2niix-rows-bottom-up", flips=(False, True, False)),
    Convention("slices-reversed", flips=(False, False, True)),
    Convention("axes-permuted-and-flipped", axes=(2, 0, 1), flips=(True, False, True)),
    Convention("cropped", crop=(slice(2, 10), slice(5, 36), slice(4, 44))),
    Convention(
        "cropped-canonical",
        crop=(slice(1, 12), slice(3, 40), slice(0, 40)),
        flips=(True, True, False),
        canonical=True,
    ),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> DatasetRegistry:
    folder = tmp_path_factory.mktemp("tables")
    return load_label_tables(write_tables(folder, {"abdomen": ("MANUAL", ABDOMEN)}), catalog)


def _case(path: Path, phantom: Phantom) -> ManifestCase:
    return ManifestCase(
        case_id=path.stem.split(".")[0],
        dataset="abdomen",
        labels=path,
        series_dir=phantom.files[0].parent,
    )


@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.name)
def test_labels_in_every_convention_equal_the_truth_on_the_dicom_grid(
    tmp_path: Path, phantom: Phantom, registry: DatasetRegistry, convention: Convention
) -> None:
    truth = relabel(phantom, ABDOMEN)
    path = save_in_convention(
        tmp_path / f"{convention.name}.nii.gz", truth, phantom.geometry.affine, convention
    )
    prepared = prepare_case(_case(path, phantom), registry, SeriesIndex(None))
    assert prepared.volume.series_instance_uid == phantom.series_instance_uid
    expected = truth
    if convention.crop is not None:  # voxels outside the crop were never labelled
        expected = np.zeros_like(truth)
        expected[convention.crop] = truth[convention.crop]
    np.testing.assert_array_equal(prepared.labelmap.array, expected)
    assert prepared.labelmap.array.shape == prepared.volume.shape
    # The covered box is known, so that statuses never claim absence outside a crop.
    assert prepared.annotated_region == convention.crop
    assert prepared.covers_series == (convention.crop is None)


def test_a_coronal_feet_first_series_with_flipped_rows_maps_from_ras(
    tmp_path: Path, registry: DatasetRegistry
) -> None:
    phantom = make_phantom(
        tmp_path / "coronal",
        PhantomOptions(
            seed=1,
            shape=(40, 12, 48),
            pixel_spacing=(35.0, 10.0),
            slice_spacing=10.0,
            orientation="coronal",
            patient_position="FFS",
            flip_rows=True,
        ),
    )
    truth = relabel(phantom, ABDOMEN)
    path = save_in_convention(
        tmp_path / "coronal.nii.gz",
        truth,
        phantom.geometry.affine,
        Convention("canonical", canonical=True),
    )
    prepared = prepare_case(_case(path, phantom), registry, SeriesIndex(None))
    np.testing.assert_array_equal(prepared.labelmap.array, truth)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("half-voxel", "grid-offset"),
        ("spacing", "grid-spacing"),
        ("rotation", "grid-rotation"),
        ("three-slices-below", "grid-outside"),
    ],
)
def test_grids_that_would_need_resampling_are_refused_with_a_named_reason(
    tmp_path: Path, phantom: Phantom, registry: DatasetRegistry, change: str, reason: str
) -> None:
    affine = phantom.geometry.affine.copy()
    if change == "half-voxel":
        affine[:3, 3] += 0.5 * affine[:3, 0]
    elif change == "spacing":
        affine[:3, 2] *= 1.02
    elif change == "rotation":
        t = np.radians(3.0)
        rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        affine[:3, :3] = rotation @ affine[:3, :3]
    else:
        affine[:3, 3] -= 3 * affine[:3, 2]
    path = save_in_convention(
        tmp_path / f"{change}.nii.gz",
        relabel(phantom, ABDOMEN),
        affine,
        Convention("canonical", canonical=True),
    )
    with pytest.raises(ReleaseError) as info:
        prepare_case(_case(path, phantom), registry, SeriesIndex(None))
    assert info.value.reason == reason
    assert info.value.case_id == change
    assert "resampl" in str(info.value)


def test_a_thousandth_of_a_millimetre_is_not_a_mismatch(
    tmp_path: Path, phantom: Phantom, registry: DatasetRegistry
) -> None:
    affine = phantom.geometry.affine.copy()
    affine[:3, 3] += 3e-4
    truth = relabel(phantom, ABDOMEN)
    path = save_in_convention(tmp_path / "nudged.nii.gz", truth, affine, Convention("plain"))
    prepared = prepare_case(_case(path, phantom), registry, SeriesIndex(None))
    np.testing.assert_array_equal(prepared.labelmap.array, truth)
