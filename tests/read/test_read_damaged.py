"""Damaged headers and files: each a named error (class, reason, file), never a wrong volume.

Each test is a mistake that an exporter, an anonymiser or an interrupted download makes, on a
small phantom series; the CLI tests check what a user sees: exit 2, the file named, no
traceback.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.errors import OmasIdcError, SeriesGeometryError, UnsupportedSeriesError
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.volume import CTVolume

SMALL = {"shape": (6, 16, 20), "pixel_spacing": (7.5, 8.0), "slice_spacing": 20.0, "noise": 0.0}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CTVolume]:
    """A 6-slice phantom series and its volume as read undamaged."""
    folder = tmp_path_factory.mktemp("pristine") / "series"
    make_phantom(folder, PhantomOptions(seed=3, **SMALL))  # type: ignore[arg-type]
    return folder, read_series(folder)


@pytest.fixture
def series(tmp_path: Path, pristine: tuple[Path, CTVolume]) -> tuple[Path, CTVolume]:
    """A copy of the pristine series to damage, and the pristine volume."""
    folder = tmp_path / "series"
    shutil.copytree(pristine[0], folder)
    return folder, pristine[1]


def _slice_file(folder: Path, volume: CTVolume, index: int) -> Path:
    """The copy in ``folder`` of the file of slice ``index`` (0 lowest, -1 highest)."""
    return folder / Path(volume.files[index]).name


def _edit(path: Path, change: Callable[[Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _assert_named(err: OmasIdcError, path: Path, reason: str) -> None:
    assert err.reason == reason, str(err)
    assert str(path) in str(err), f"the damaged file is not named: {err}"


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        ({"BitsAllocated": 32}, "pixel data holds"),  # the data is 16-bit
        ({"BitsAllocated": 8}, "BitsStored"),  # 8 bits cannot hold the 16 stored ones
        ({"BitsStored": 12}, "HighBit"),  # HighBit still says 15
        ({"PixelRepresentation": 2}, "PixelRepresentation"),
        ({"Rows": 15}, "pixel data holds"),
    ],
)
def test_a_slice_whose_bits_disagree_with_its_pixel_data_is_named(
    series: tuple[Path, CTVolume], attributes: dict[str, int], why: str
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 2)
    _edit(damaged, lambda ds: [setattr(ds, k, v) for k, v in attributes.items()])
    with pytest.raises(UnsupportedSeriesError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "inconsistent-bits")
    assert why in str(caught.value)
    assert volume.series_instance_uid in str(caught.value)


def test_one_file_with_another_pixel_representation_is_named(
    series: tuple[Path, CTVolume],
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 4)
    # Consistent in itself (signed -> unsigned changes no length), but not with the others.
    _edit(damaged, lambda ds: setattr(ds, "PixelRepresentation", 0))
    with pytest.raises(UnsupportedSeriesError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "inconsistent-bits")


@pytest.mark.parametrize("spacing", [[0, 0], [0.5, 0], [-1, 1], ["nan", 1]])
def test_pixel_spacing_that_is_not_a_positive_distance_is_refused(
    series: tuple[Path, CTVolume], spacing: list[object]
) -> None:
    folder, _ = series
    for path in folder.iterdir():  # the exporter wrote it into every file
        _edit(path, lambda ds: setattr(ds, "PixelSpacing", spacing))
    with pytest.raises(SeriesGeometryError) as caught:
        read_series(folder)
    assert caught.value.reason == "invalid-spacing"
    assert str(folder) in str(caught.value)


@pytest.mark.parametrize("slope", [0, "nan", "inf"])
def test_a_zero_or_non_finite_rescale_slope_is_refused(
    series: tuple[Path, CTVolume], slope: object
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, -1)
    _edit(damaged, lambda ds: setattr(ds, "RescaleSlope", slope))
    with pytest.raises(UnsupportedSeriesError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "zero-slope")


def test_a_nan_image_position_is_named_not_called_a_duplicate(
    series: tuple[Path, CTVolume],
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 3)
    _edit(damaged, lambda ds: setattr(ds, "ImagePositionPatient", [math.nan, 0.0, 0.0]))
    with pytest.raises(SeriesGeometryError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "non-finite-position")


@pytest.mark.parametrize(
    "orientation",
    [
        [1, 0, 0, 0, 1, "nan"],
        [2, 0, 0, 0, 1, 0],  # not a unit vector
        [1, 0, 0, 0.5, 1, 0],  # not at right angles
    ],
)
def test_an_image_orientation_that_is_no_pair_of_cosines_is_named(
    series: tuple[Path, CTVolume], orientation: list[object]
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 1)
    _edit(damaged, lambda ds: setattr(ds, "ImageOrientationPatient", orientation))
    with pytest.raises(SeriesGeometryError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "invalid-orientation")


def test_a_slice_slightly_rotated_by_a_damaged_digit_is_not_dropped_as_a_localizer(
    series: tuple[Path, CTVolume],
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, -1)  # dropping it would shorten the volume
    angle = math.radians(2.0)
    _edit(
        damaged,
        lambda ds: setattr(
            ds, "ImageOrientationPatient", [1, 0, 0, 0, math.cos(angle), math.sin(angle)]
        ),
    )
    with pytest.raises(SeriesGeometryError) as caught:
        read_series(folder)
    _assert_named(caught.value, damaged, "mixed-orientation")


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _header_end(path: Path) -> int:
    return int(pydicom.dcmread(path, defer_size=0)["PixelData"].file_tell)


@pytest.mark.parametrize("index", [0, 2, -1])
@pytest.mark.parametrize("where", ["empty", "preamble", "header", "pixel data"])
def test_a_truncated_file_is_named_at_either_end_and_in_the_middle(
    series: tuple[Path, CTVolume], index: int, where: str
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, index)
    size = damaged.stat().st_size
    keep = {
        "empty": 0,
        "preamble": 100,
        "header": _header_end(damaged) // 2,
        "pixel data": size - 7,
    }[where]
    _cut(damaged, keep)
    with pytest.raises(UnsupportedSeriesError) as caught:
        read_series(folder)
    assert caught.value.reason in ("truncated-file", "unreadable-file")
    assert str(damaged) in str(caught.value)
    assert "gap" not in caught.value.reason


def test_a_file_that_starts_as_dicom_but_cannot_be_parsed_is_named(
    series: tuple[Path, CTVolume],
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 0)
    data = bytearray(damaged.read_bytes())
    data[140:200] = b"\xff" * 60  # garbage over the File Meta Information
    damaged.write_bytes(bytes(data))
    with pytest.raises(UnsupportedSeriesError) as caught:
        read_series(folder)
    assert caught.value.reason in ("unreadable-file", "damaged-header")
    assert str(damaged) in str(caught.value)


def test_non_dicom_files_and_non_image_objects_beside_the_series_are_skipped(
    series: tuple[Path, CTVolume], shared_data: Path
) -> None:
    folder, volume = series
    (folder / "README.txt").write_text("exported by a workstation\n")
    (folder / "notes.json").write_text('{"a": 1}')
    # A DICOMDIR: a Part 10 file, but a directory, not an image.
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicomdir = Dataset()
    dicomdir.file_meta = meta
    dicomdir.FileSetID = "EXPORT"
    dicomdir.save_as(folder / "DICOMDIR", enforce_file_format=True)
    shutil.copy(shared_data / "highdicom/data/test_files/sr_document.dcm", folder / "sr.dcm")
    again = read_series(folder)
    np.testing.assert_array_equal(again.hu, volume.hu)
    np.testing.assert_array_equal(again.geometry.affine, volume.geometry.affine)


def test_cli_read_names_a_truncated_last_file_and_exits_2_without_a_traceback(
    series: tuple[Path, CTVolume],
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, -1)
    _cut(damaged, _header_end(damaged) // 2)
    result = CliRunner().invoke(app, ["read", str(folder)])
    assert result.exit_code == 2, result.output
    assert "UnsupportedSeriesError (truncated-file)" in result.output
    assert damaged.name in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, (AssertionError, TypeError, KeyError))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ds: setattr(ds, "PixelSpacing", [0, 0]), "SeriesGeometryError (invalid-spacing)"),
        (lambda ds: setattr(ds, "RescaleSlope", 0), "UnsupportedSeriesError (zero-slope)"),
        (lambda ds: setattr(ds, "BitsAllocated", 32), "UnsupportedSeriesError (inconsistent-bits)"),
    ],
)
def test_cli_read_reports_a_damaged_header_with_its_reason(
    series: tuple[Path, CTVolume], change: Callable[[Dataset], None], reason: str
) -> None:
    folder, volume = series
    damaged = _slice_file(folder, volume, 0)
    _edit(damaged, change)
    result = CliRunner().invoke(app, ["read", str(folder)])
    assert result.exit_code == 2, result.output
    assert reason in result.output
    assert damaged.name in result.output.replace("\n", "")
    assert "Traceback" not in result.output
