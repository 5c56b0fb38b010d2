"""The read stage on synthetic phantoms: every orientation, flip, patient position, encoding.

The phantom knows the exact HU of every voxel and where each organ's centroid lies in LPS, so
these tests prove that the reader puts every voxel at the right patient position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.errors import SeriesGeometryError, UnsupportedSeriesError
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import list_series, read_series, read_series_headers
from omas_idc.volume import CTVolume

#: Small grid covering the phantom's whole body: 20 slices x 40 rows x 48 columns.
SMALL = {"shape": (20, 40, 48), "pixel_spacing": (7.5, 8.0), "slice_spacing": 20.0, "noise": 0.0}
#: Compact organs whose voxel centroid is close to the analytic one at this coarse grid.
COMPACT = ("liver", "spleen", "kidney_left", "kidney_right", "heart", "urinary_bladder")

GEOMETRY_OPTIONS: list[dict[str, object]] = [
    {"orientation": o, "patient_position": p}
    for o in ("axial", "coronal", "sagittal")
    for p in ("HFS", "FFS", "HFP", "FFP")
] + [
    {"flip_rows": True},
    {"flip_columns": True},
    {"flip_rows": True, "flip_columns": True, "patient_position": "FFP"},
    {"orientation": "coronal", "flip_columns": True},
    {"orientation": "sagittal", "flip_rows": True},
    {"oblique_degrees": 20.0},
    {"orientation": "coronal", "oblique_degrees": -15.0, "patient_position": "HFP"},
    {"shuffle_names": True, "instance_order": "ascending"},
]


def _id(option: dict[str, object]) -> str:
    return "-".join(f"{k}={v}" for k, v in option.items())


def _phantom(tmp_path: Path, **options: object) -> Phantom:
    merged = {"seed": 0, **SMALL, **options}
    return make_phantom(tmp_path / "series", PhantomOptions(**merged))  # type: ignore[arg-type]


def _assert_on_truth(volume: CTVolume, phantom: Phantom) -> None:
    """Same voxels, same grid, and organ centroids at their analytic LPS points."""
    np.testing.assert_array_equal(volume.hu, np.rint(phantom.hu).astype(np.int16))
    np.testing.assert_allclose(volume.geometry.affine, phantom.geometry.affine, atol=1e-4)
    np.testing.assert_allclose(
        volume.geometry.slice_positions, phantom.geometry.slice_positions, atol=1e-4
    )
    # Smaller than one voxel step: a grid off by one voxel (or mirrored) fails.
    tolerance = 0.6 * min(volume.geometry.spacing)
    checked = 0
    for name in COMPACT:
        truth = phantom.structure(name)
        voxels = np.argwhere(phantom.labels == truth.label)
        if (
            len(voxels) == 0
            or voxels.min() == 0
            or np.any(voxels.max(axis=0) == np.subtract(volume.shape, 1))
        ):
            continue  # cut by the field of view: its voxel centroid is not the organ's
        checked += 1
        centroid = volume.geometry.voxel_to_lps(voxels.mean(axis=0))
        distance = float(np.linalg.norm(centroid - truth.centroid_lps))
        assert distance < tolerance, f"{name} is {distance:.1f} mm from its true centroid"
    assert checked >= 3, "too few organs inside the field of view to check"


@pytest.mark.parametrize("option", GEOMETRY_OPTIONS, ids=_id)
def test_every_voxel_lies_at_its_true_lps_position(
    tmp_path: Path, option: dict[str, object]
) -> None:
    phantom = _phantom(tmp_path, **option)
    volume = read_series(tmp_path / "series")
    _assert_on_truth(volume, phantom)
    # No mirrored volumes: the patient's left kidney is at larger LPS x than the right one.
    left = volume.geometry.voxel_to_lps(
        np.argwhere(phantom.labels == phantom.structure("kidney_left").label).mean(axis=0)
    )
    right = volume.geometry.voxel_to_lps(
        np.argwhere(phantom.labels == phantom.structure("kidney_right").label).mean(axis=0)
    )
    assert left[0] > right[0] + 50
    # Slice 0 is the lowest along the normal, and the references follow the array order.
    along = volume.geometry.slice_positions @ volume.geometry.normal
    assert np.all(np.diff(along) > 0)
    assert len({r.sop_instance_uid for r in volume.source_refs}) == volume.shape[0]
    assert volume.warnings == ()


@pytest.mark.parametrize("transfer_syntax", ["explicit", "implicit", "jpeg2000", "rle", "jpegls"])
@pytest.mark.parametrize("pixel_representation", [0, 1])
def test_every_phantom_encoding_decodes_to_the_same_hu(
    tmp_path: Path, transfer_syntax: str, pixel_representation: int
) -> None:
    phantom = _phantom(
        tmp_path, transfer_syntax=transfer_syntax, pixel_representation=pixel_representation
    )
    _assert_on_truth(read_series(tmp_path / "series", workers=3), phantom)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, 0.0), (2.0, -1024.0), (0.5, -1000.0)])
def test_rescale_slope_and_intercept_are_applied(
    tmp_path: Path, slope: float, intercept: float
) -> None:
    phantom = _phantom(
        tmp_path, rescale_slope=slope, rescale_intercept=intercept, pixel_representation=1
    )
    volume = read_series(tmp_path / "series")
    np.testing.assert_array_equal(volume.hu, np.rint(phantom.hu).astype(np.int16))


@pytest.mark.parametrize("tilt", [-20.0, 12.5])
def test_gantry_tilt_is_carried_in_a_sheared_affine(tmp_path: Path, tilt: float) -> None:
    phantom = _phantom(tmp_path, gantry_tilt_degrees=tilt)
    volume = read_series(tmp_path / "series")
    _assert_on_truth(volume, phantom)
    assert volume.geometry.is_sheared
    assert volume.geometry.tilt_degrees == pytest.approx(abs(tilt), abs=0.01)
    # Voxel centres of each slice's first pixel are the DICOM ImagePositionPatient values.
    first_pixels = volume.geometry.voxel_to_lps(
        np.stack(
            [np.arange(volume.shape[0]), np.zeros(volume.shape[0]), np.zeros(volume.shape[0])], -1
        )
    )
    np.testing.assert_allclose(first_pixels, volume.geometry.slice_positions, atol=1e-3)
    assert any("gantry tilt" in w for w in volume.warnings)

    with pytest.raises(SeriesGeometryError, match="tilted") as err:
        read_series(tmp_path / "series", allow_tilt=False)
    assert err.value.reason == "tilt"
    assert err.value.series_instance_uid == phantom.series_instance_uid


def test_a_missing_slice_is_refused_as_a_gap(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path, missing_slice=7)
    with pytest.raises(SeriesGeometryError, match="missing") as err:
        read_series(tmp_path / "series")
    assert err.value.reason == "gap"
    assert err.value.series_instance_uid == phantom.series_instance_uid


def test_a_second_slice_at_the_same_position_is_refused(tmp_path: Path) -> None:
    _phantom(tmp_path, duplicate_slice=5)
    with pytest.raises(SeriesGeometryError, match="same position") as err:
        read_series(tmp_path / "series")
    assert err.value.reason == "duplicate-position"


def test_the_same_file_given_twice_is_read_once(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path)
    volume = read_series([*phantom.files, phantom.files[3]])
    _assert_on_truth(volume, phantom)
    assert any("present twice" in w for w in volume.warnings)


def test_a_localizer_in_the_series_is_dropped_with_a_warning(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path, localizer=True)
    volume = read_series(tmp_path / "series")
    _assert_on_truth(volume, phantom)
    assert any("localizer" in w for w in volume.warnings)
    assert str(phantom.localizer_file) not in volume.files


def test_non_dicom_files_are_ignored(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path)
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    (tmp_path / "series" / "DICOMDIR.bak").write_bytes(b"\x00" * 300)
    _assert_on_truth(read_series(tmp_path / "series"), phantom)


def test_several_series_are_listed_and_one_is_chosen_by_uid(tmp_path: Path) -> None:
    first = make_phantom(tmp_path, PhantomOptions(seed=1, **SMALL))  # type: ignore[arg-type]
    second = make_phantom(
        tmp_path / "b",
        PhantomOptions(seed=2, **SMALL),  # type: ignore[arg-type]
    )
    found = list_series(tmp_path)
    assert {s.series_instance_uid for s in found} == {
        first.series_instance_uid,
        second.series_instance_uid,
    }
    with pytest.raises(UnsupportedSeriesError, match="--series-uid") as err:
        read_series(tmp_path)
    assert err.value.reason == "several-series"
    assert first.series_instance_uid in str(err.value)
    assert second.series_instance_uid in str(err.value)
    volume = read_series(tmp_path, series_instance_uid=second.series_instance_uid)
    _assert_on_truth(volume, second)
    with pytest.raises(UnsupportedSeriesError) as err:
        read_series(tmp_path, series_instance_uid="1.2.3.4")
    assert err.value.reason == "series-not-found"


def test_a_single_slice_reads_with_its_thickness_as_slice_step(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path, shape=(1, 40, 48), slice_thickness=2.5)
    volume = read_series(tmp_path / "series")
    assert volume.shape == (1, 40, 48)
    np.testing.assert_array_equal(volume.hu, np.rint(phantom.hu).astype(np.int16))
    assert volume.geometry.slice_spacing == pytest.approx(2.5)
    assert volume.geometry.voxel_volume_mm3 == pytest.approx(7.5 * 8.0 * 2.5)
    np.testing.assert_allclose(volume.geometry.affine[:3, 3], phantom.geometry.slice_positions[0])


def test_header_fields_are_copied_from_the_files(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path)
    volume = read_series(tmp_path / "series")
    assert volume.header.series_instance_uid == phantom.series_instance_uid
    assert volume.header.study_instance_uid == phantom.study_instance_uid
    assert volume.header.frame_of_reference_uid == phantom.frame_of_reference_uid
    assert volume.header.patient_id == "PHANTOM-0"
    assert {r.sop_class_uid for r in volume.source_refs} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert all(r.frame_number is None for r in volume.source_refs)


@pytest.mark.parametrize(
    "option",
    [{}, {"gantry_tilt_degrees": 12.5}, {"patient_position": "FFS", "orientation": "coronal"}],
    ids=_id,
)
def test_a_header_read_places_the_series_like_the_full_read(
    tmp_path: Path, option: dict[str, object]
) -> None:
    """The encoder's read: the same grid, references and header, and no pixels at all."""
    _phantom(tmp_path, **option)
    volume = read_series(tmp_path / "series")
    headers = read_series_headers(tmp_path / "series")
    assert headers.shape == volume.shape
    np.testing.assert_array_equal(headers.geometry.affine, volume.geometry.affine)
    np.testing.assert_array_equal(headers.geometry.slice_positions, volume.geometry.slice_positions)
    assert headers.source_refs == volume.source_refs
    assert headers.header == volume.header
    assert headers.files == volume.files
    assert headers.warnings == volume.warnings
    assert not hasattr(headers, "hu")
    assert [str(ds.SOPInstanceUID) for ds in headers.datasets] == [
        r.sop_instance_uid for r in volume.source_refs
    ]
    assert all("PixelData" not in ds for ds in headers.datasets)


def test_a_header_read_refuses_what_the_full_read_refuses(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path, missing_slice=7)
    with pytest.raises(SeriesGeometryError, match="missing") as err:
        read_series_headers(tmp_path / "series")
    assert err.value.reason == "gap"
    assert err.value.series_instance_uid == phantom.series_instance_uid
