"""The encoder's template path writes what highdicom itself writes for the same input.

The SEGs are built from one highdicom template per series with the per-frame functional
groups encoded as bytes (omas_idc.encode.template); these tests build the same SEG with
highdicom directly and compare every element, frame by frame, so that a highdicom upgrade
that changes what it writes shows up here rather than in a viewer.
"""

from __future__ import annotations

from datetime import datetime
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Catalog
from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset
from omas_idc.encode.seg import _finish, _frames, series_number_for
from omas_idc.encode.segments import algorithm_identification, segment_description
from omas_idc.encode.sources import load_source_datasets
from omas_idc.encode.template import LazySegmentation, highdicom_segmentation
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.testing.tasks import truth_task_labelmaps

PROVENANCE = Provenance(model="cads", model_version="1.0", timestamp=datetime(2026, 3, 4, 5, 6, 7))
OPTIONS = [
    {"orientation": "axial", "patient_position": "FFS"},
    {"orientation": "coronal", "flip_rows": True, "shape": (20, 40, 48)},
    {"orientation": "axial", "gantry_tilt_degrees": 12.0},
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _written(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The dataset as a reader of the file sees it."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _assert_same(ours: pydicom.Dataset, theirs: pydicom.Dataset, skip: set[str]) -> None:
    assert isinstance(ours, LazySegmentation)  # made from the template, not by highdicom
    ours, theirs = _written(ours), _written(theirs)
    assert ours.file_meta.TransferSyntaxUID == theirs.file_meta.TransferSyntaxUID
    keywords = {e.keyword for e in ours} | {e.keyword for e in theirs}
    for keyword in sorted(keywords - skip - {"PixelData"}):
        assert keyword in ours, keyword
        assert keyword in theirs, keyword
        assert ours[keyword] == theirs[keyword], keyword
    np.testing.assert_array_equal(ours.pixel_array, theirs.pixel_array)


def _phantom(tmp_path: Path, option: dict[str, object]):  # type: ignore[no-untyped-def]
    options = {"shape": (26, 40, 48), "pixel_spacing": (8.0, 8.0), "slice_spacing": 14.0}
    phantom = make_phantom(tmp_path / "ct", PhantomOptions(seed=3, **{**options, **option}))  # type: ignore[arg-type]
    return phantom, read_series(tmp_path / "ct")


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_labelmap_seg_equals_highdicoms(
    tmp_path: Path, catalog: Catalog, option: dict[str, object]
) -> None:
    phantom, volume = _phantom(tmp_path, option)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    sources = load_source_datasets(volume)
    algorithm = algorithm_identification(PROVENANCE)
    encoded = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    assert len(encoded) >= 3
    for position, item in enumerate(encoded, start=1):
        (labelmap,) = [m for m in maps if m.task == item.tasks[0]]
        uid = volume.series_instance_uid
        descriptions = [
            segment_description(v, s, PROVENANCE, algorithm) for v, s in item.segments.items()
        ]
        reference = highdicom_segmentation(
            sources,
            _frames(volume, labelmap.array),
            "LABELMAP",
            descriptions,
            PROVENANCE.uid(uid, labelmap.task, "series"),
            PROVENANCE.uid(uid, labelmap.task, "instance"),
            series_number_for(volume.header.series_number, position),
            PROVENANCE,
            RLELossless,
            volume,
        )
        title = f"CADS {labelmap.task} segmentation"
        dimension = PROVENANCE.uid(uid, labelmap.task, "dimension-organization")
        _assert_same(item.dataset, _finish(reference, PROVENANCE, title, dimension), set())


@pytest.mark.parametrize("option", OPTIONS[:2], ids=lambda o: "-".join(map(str, o.values())))
def test_binary_seg_equals_highdicoms(
    tmp_path: Path, catalog: Catalog, option: dict[str, object]
) -> None:
    """The truth tasks do not overlap: highdicom can take all segments as one label map."""
    phantom, volume = _phantom(tmp_path, option)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    encoded = encode_binary(volume, maps, catalog, PROVENANCE)
    assert encoded is not None
    combined = np.zeros(volume.shape, dtype=np.uint8)
    descriptions = []
    algorithm = algorithm_identification(PROVENANCE)
    for number, structure in encoded.segments.items():
        label = next(m for m in maps if structure.name in m.labels.values())
        value = {name: v for v, name in label.labels.items()}[structure.name]
        combined[label.array == value] = number
        descriptions.append(segment_description(number, structure, PROVENANCE, algorithm))
    uid = volume.series_instance_uid
    reference = highdicom_segmentation(
        load_source_datasets(volume),
        _frames(volume, combined),
        "BINARY",
        descriptions,
        PROVENANCE.uid(uid, "binary", "series"),
        PROVENANCE.uid(uid, "binary", "instance"),
        series_number_for(volume.header.series_number, 0),
        PROVENANCE,
        ExplicitVRLittleEndian,
        volume,
    )
    reference = _finish(
        reference,
        PROVENANCE,
        "CADS segmentation",
        PROVENANCE.uid(uid, "binary", "dimension-organization"),
    )
    # Several tasks may overlap in general: we do not claim they do not.
    assert encoded.dataset.SegmentsOverlap == "UNDEFINED"
    _assert_same(encoded.dataset, reference, {"SegmentsOverlap"})


def test_single_segment_binary_seg_equals_highdicoms(tmp_path: Path, catalog: Catalog) -> None:
    phantom, volume = _phantom(tmp_path, {})
    (liver,) = [
        m
        for m in truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
        if "liver" in m.labels.values()
    ]
    value = {name: v for v, name in liver.labels.items()}["liver"]
    only = type(liver)(
        liver.model, liver.task, (liver.array == value).astype(np.uint8) * value, {value: "liver"}
    )
    encoded = encode_binary(volume, [only], catalog, PROVENANCE)
    assert encoded is not None
    uid = volume.series_instance_uid
    algorithm = algorithm_identification(PROVENANCE)
    reference = highdicom_segmentation(
        load_source_datasets(volume),
        _frames(volume, (only.array > 0).astype(np.uint8)),
        "BINARY",
        [segment_description(1, encoded.segments[1], PROVENANCE, algorithm)],
        PROVENANCE.uid(uid, "binary", "series"),
        PROVENANCE.uid(uid, "binary", "instance"),
        series_number_for(volume.header.series_number, 0),
        PROVENANCE,
        ExplicitVRLittleEndian,
        volume,
    )
    reference = _finish(
        reference,
        PROVENANCE,
        "CADS segmentation",
        PROVENANCE.uid(uid, "binary", "dimension-organization"),
    )
    _assert_same(encoded.dataset, reference, set())


def test_in_memory_seg_answers_highdicom_queries(tmp_path: Path, catalog: Catalog) -> None:
    """The returned dataset is a full highdicom Segmentation, before and after writing."""
    phantom, volume = _phantom(tmp_path, {"orientation": "sagittal", "shape": (20, 40, 48)})
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    item = encode_labelmaps(volume, maps, catalog, PROVENANCE)[0]
    path = write_dataset(item.dataset, tmp_path / "seg.dcm")
    (labelmap,) = [m for m in maps if m.task == item.tasks[0]]
    for seg in (item.dataset, hd.seg.segread(path)):
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
        )
        np.testing.assert_array_equal(np.asarray(pixels), labelmap.array)
    # Reading the in-memory object did not change what is written.
    again = write_dataset(item.dataset, tmp_path / "again.dcm")
    assert again.read_bytes() == path.read_bytes()
