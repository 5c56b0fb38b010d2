"""One parse per series: the reader's headers feed the encoder; the run's fetch does not parse.

The run reads every file of a series once: the fetch checks counts and sizes against the bucket
and the index, the reader parses and decodes every file (naming any it cannot decode), and the
encoder copies the source headers the reader parsed instead of reading the files again.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from omas_idc.catalog import load_catalog
from omas_idc.encode import Provenance, encode_labelmaps
from omas_idc.encode import sources as encode_sources
from omas_idc.errors import UnsupportedSeriesError
from omas_idc.fetch.verify import verify_series
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.series_ref import SeriesRef
from omas_idc.testing.tasks import truth_task_labelmaps

PROVENANCE = Provenance(model="cads", model_version="1.0", timestamp=datetime(2026, 1, 2, 3, 4))


def test_the_encoder_copies_the_readers_headers_without_parsing_files_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phantom = make_phantom(tmp_path / "ct", PhantomOptions(seed=3))
    volume = read_series(tmp_path / "ct")
    assert len(volume.datasets) == len(volume.files)
    assert all("PixelData" not in ds for ds in volume.datasets)
    catalog = load_catalog()
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    # The same SEGs from a volume that carries no headers (the encoder then reads the files).
    reread = encode_labelmaps(dataclasses.replace(volume, datasets=()), maps, catalog, PROVENANCE)

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the encoder parsed a source file again: {args}")

    monkeypatch.setattr(encode_sources.pydicom, "dcmread", no_parse)
    shared = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    monkeypatch.undo()
    assert [s.dataset.SOPInstanceUID for s in shared] == [s.dataset.SOPInstanceUID for s in reread]
    assert [bytes(s.dataset.PixelData) for s in shared] == [
        bytes(s.dataset.PixelData) for s in reread
    ]
    assert [s.dataset.PatientID for s in shared] == [s.dataset.PatientID for s in reread]


def test_fetch_without_content_check_leaves_a_damaged_file_to_the_reader_which_names_it(
    tmp_path: Path,
) -> None:
    make_phantom(tmp_path / "ct", PhantomOptions(seed=4, shape=(12, 40, 48)))
    files = sorted((tmp_path / "ct").iterdir())
    listing = {p.name: p.stat().st_size for p in files}
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    ref = SeriesRef(
        series_instance_uid=str(first.SeriesInstanceUID),
        study_instance_uid=str(first.StudyInstanceUID),
        patient_id=str(first.PatientID),
        collection_id="phantom",
        modality="CT",
        crdc_series_uuid="00000000-0000-0000-0000-000000000004",
        instance_count=len(files),
        size_bytes=sum(listing.values()),
        aws_bucket="idc-open-data",
        idc_version=21,
    )
    # Damage a file in the bucket's copy without changing its size: the pixel data's declared
    # length now runs past the end of the file.
    damaged = files[len(files) // 2]
    data = bytearray(damaged.read_bytes())
    tag = data.rindex(b"\xe0\x7f\x10\x00")
    data[tag + 8 : tag + 12] = (len(data)).to_bytes(4, "little")
    damaged.write_bytes(bytes(data))

    # Counts and sizes agree, so the fetch without its parse verifies the series ...
    assert verify_series(ref, tmp_path / "ct", listing, check_contents=False) == listing
    # ... and the read stage, which parses every file, refuses it naming the damaged file.
    with pytest.raises(UnsupportedSeriesError) as refused:
        read_series(tmp_path / "ct")
    assert damaged.name in str(refused.value)
