"""Finding a case's DICOM series: by UID, by its folder, or by the image's grid and HU."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from release_helpers import GRID, Convention, save_in_convention

from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.release import ManifestCase, ReleaseError, SeriesIndex, find_case_series
from omas_idc.release.matching import read_label_nifti


def _copy_with_new_uids(source: Path, target: Path) -> str:
    """A copy of a series with new Series and SOP Instance UIDs (same pixels, same grid)."""
    target.mkdir(parents=True)
    series_uid = generate_uid()
    for path in sorted(source.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / path.name)
    return series_uid


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, phantom: Phantom) -> dict[str, Path | str]:
    """A --dicom folder in the fetch layout with the phantom, another series on the same grid,
    and a series on another grid; a folder with two identical-content series; image NIfTIs."""
    root = tmp_path_factory.mktemp("matching")
    dicom = root / "dicom" / "collection" / "patient" / "study"
    target = dicom / f"CT_{phantom.series_instance_uid}"
    shutil.copytree(phantom.files[0].parent, target)
    other = make_phantom(dicom / "other", PhantomOptions(seed=2, **GRID))  # type: ignore[arg-type]
    coarse = {**GRID, "pixel_spacing": (11.0, 11.0)}
    make_phantom(dicom / "coarse", PhantomOptions(seed=1, **coarse))  # type: ignore[arg-type]
    twins = root / "twins"
    shutil.copytree(phantom.files[0].parent, twins / "a")
    _copy_with_new_uids(phantom.files[0].parent, twins / "b")
    hu = read_series(phantom.files[0].parent).hu
    image = save_in_convention(
        root / "image.nii.gz",
        hu,
        phantom.geometry.affine,
        Convention(
            "cropped-canonical", crop=(slice(2, 11), slice(0, 40), slice(3, 45)), canonical=True
        ),
    )
    other_image = save_in_convention(
        root / "other.nii.gz",
        read_series(other.files[0].parent).hu,
        other.geometry.affine,
        Convention("x"),
    )
    stranger = make_phantom(root / "stranger", PhantomOptions(seed=3, **GRID))  # type: ignore[arg-type]
    stranger_image = save_in_convention(
        root / "stranger.nii.gz",
        stranger.hu.astype(np.int16),
        stranger.geometry.affine,
        Convention("x"),
    )
    return {
        "dicom": root / "dicom",
        "twins": twins,
        "image": image,
        "other_image": other_image,
        "stranger_image": stranger_image,
        "other_uid": other.series_instance_uid,
    }


def _case(**fields: object) -> ManifestCase:
    return ManifestCase(case_id="c", dataset="d", labels=Path("unused"), **fields)  # type: ignore[arg-type]


def _image(path: object) -> tuple:
    return read_label_nifti(Path(str(path)), "c", what="image")


def test_the_image_content_picks_the_series_among_series_on_the_same_grid(
    layout: dict, phantom: Phantom
) -> None:
    match = find_case_series(_case(), SeriesIndex(layout["dicom"]), _image(layout["image"]))
    assert match.method == "content"
    assert match.volume.series_instance_uid == phantom.series_instance_uid
    other = find_case_series(_case(), SeriesIndex(layout["dicom"]), _image(layout["other_image"]))
    assert other.volume.series_instance_uid == layout["other_uid"]


def test_a_uid_is_found_in_the_fetch_layout(layout: dict, phantom: Phantom) -> None:
    index = SeriesIndex(layout["dicom"])
    match = find_case_series(_case(series_instance_uid=phantom.series_instance_uid), index)
    assert match.method == "uid"
    assert match.volume.series_instance_uid == phantom.series_instance_uid
    assert index._series is None  # found by its folder name, without listing every series


def test_two_series_with_the_same_grid_and_content_are_ambiguous(layout: dict) -> None:
    with pytest.raises(ReleaseError) as info:
        find_case_series(
            _case(series_dir=layout["twins"]), SeriesIndex(None), _image(layout["image"])
        )
    assert info.value.reason == "ambiguous-series"


@pytest.mark.parametrize(
    ("fields", "image", "reason"),
    [
        ({}, None, "no-image"),
        ({}, "stranger_image", "no-series"),
        ({"series_instance_uid": "1.2.3.4"}, None, "no-series"),
        ({"series_instance_uid": "other_uid"}, "image", "content-mismatch"),
    ],
)
def test_cases_without_a_unique_series_are_refused_with_a_reason(
    layout: dict, fields: dict, image: str | None, reason: str
) -> None:
    fields = {k: layout.get(v, v) for k, v in fields.items()}
    with pytest.raises(ReleaseError) as info:
        find_case_series(
            _case(**fields),
            SeriesIndex(layout["dicom"]),
            _image(layout[image]) if image else None,
        )
    assert info.value.reason == reason
    assert info.value.case_id == "c"
