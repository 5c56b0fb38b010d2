"""SEG files are written whole and exactly as pydicom writes them, and templates are shared
by the SEGs of every model of a series without carrying one model's header into another's."""

from __future__ import annotations

import gc
from datetime import datetime
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Catalog
from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset
from omas_idc.encode import template as template_module
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series_headers
from omas_idc.testing.tasks import truth_task_labelmaps

FIRST = Provenance(model="cads", model_version="1.0", timestamp=datetime(2026, 3, 4, 5, 6, 7))
SECOND = Provenance(
    model="totalseg",
    model_version="2.0.1",
    weights_variant="open",
    weights_licence="Apache-2.0",
    timestamp=datetime(2025, 1, 2, 3, 4, 5),
    content_creator_name="Doe^Jane",
    manufacturer="Example Lab",
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("write")
    options = PhantomOptions(
        seed=5, shape=(20, 40, 48), pixel_spacing=(8.0, 8.0), slice_spacing=14.0
    )
    phantom = make_phantom(folder / "ct", options)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    return folder / "ct", maps


def _pydicom_bytes(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _dataset(pixel_data: bytes, transfer_syntax: UID = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Patient"
    ds.add_new(0x7FE00010, "OB", pixel_data)
    return ds


def test_binary_seg_file_is_what_pydicom_writes(
    tmp_path: Path, series: tuple[Path, list], catalog: Catalog
) -> None:
    folder, maps = series
    encoded = encode_binary(read_series_headers(folder), maps, catalog, FIRST)
    assert encoded is not None
    path = write_dataset(encoded.dataset, tmp_path / "seg.dcm")
    assert path.read_bytes() == _pydicom_bytes(encoded.dataset)
    # The in-memory object is left as it was: its pixels still decode after writing.
    read = pydicom.dcmread(path)
    np.testing.assert_array_equal(read.pixel_array, encoded.dataset.pixel_array)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]  # no temporary left behind


@pytest.mark.parametrize(
    ("pixel_data", "transfer_syntax", "trailing"),
    [
        (b"\x01\x02\x03", ExplicitVRLittleEndian, False),  # odd length: padded as pydicom pads
        (b"\x01\x02\x03\x04", ExplicitVRLittleEndian, True),  # an element after Pixel Data
        (b"\x01\x02\x03\x04", ImplicitVRLittleEndian, False),  # written by pydicom
    ],
)
def test_other_pixel_data_is_written_as_pydicom_writes_it(
    tmp_path: Path, pixel_data: bytes, transfer_syntax: UID, trailing: bool
) -> None:
    ds = _dataset(pixel_data, transfer_syntax)
    if trailing:
        ds.add_new(0xFFFCFFFC, "OB", b"\x00\x00")  # Data Set Trailing Padding
    path = write_dataset(ds, tmp_path / "x.dcm")
    assert path.read_bytes() == _pydicom_bytes(ds)
    assert pydicom.dcmread(path).PixelData[: len(pixel_data)] == pixel_data


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "x.dcm"
    write_dataset(_dataset(b"\x01\x02"), target)
    before = target.read_bytes()
    broken = _dataset(b"\x01\x02")
    broken.add_new(0x00100020, "XX", "unknown VR")  # pydicom cannot write it
    with pytest.raises(NotImplementedError, match="unknown Value Representation"):
        write_dataset(broken, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"]


@pytest.mark.parametrize("layout", ["labelmap", "binary"])
def test_second_models_segs_through_the_shared_template_equal_fresh_ones(
    tmp_path: Path, series: tuple[Path, list], catalog: Catalog, layout: str
) -> None:
    """The template a series keeps for its next SEGs names no model, creator or version."""
    folder, maps = series

    def encode(volume, provenance):  # type: ignore[no-untyped-def]
        if layout == "binary":
            return [encode_binary(volume, maps, catalog, provenance)]
        return encode_labelmaps(volume, maps, catalog, provenance)

    shared = read_series_headers(folder)
    encode(shared, FIRST)  # builds and keeps the series' template
    assert layout.upper() in template_module._TEMPLATES[shared]
    through_shared = encode(shared, SECOND)
    fresh = encode(read_series_headers(folder), SECOND)
    assert len(through_shared) == len(fresh) >= 1
    for index, (ours, theirs) in enumerate(zip(through_shared, fresh, strict=True)):
        a = write_dataset(ours.dataset, tmp_path / f"shared_{index}.dcm").read_bytes()
        b = write_dataset(theirs.dataset, tmp_path / f"fresh_{index}.dcm").read_bytes()
        assert a == b
        written = pydicom.dcmread(tmp_path / f"shared_{index}.dcm")
        assert written.ManufacturerModelName == "omas-idc totalseg"
        assert written.Manufacturer == "Example Lab"
        assert written.ContentCreatorName == "Doe^Jane"
        assert written.ContentDescription == "totalseg 2.0.1"


def test_a_series_template_goes_with_its_series(
    series: tuple[Path, list], catalog: Catalog
) -> None:
    folder, maps = series
    volume = read_series_headers(folder)
    encode_binary(volume, maps, catalog, FIRST)
    count = len(template_module._TEMPLATES)
    del volume
    gc.collect()
    assert len(template_module._TEMPLATES) == count - 1
