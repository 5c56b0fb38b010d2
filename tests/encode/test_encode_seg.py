"""The encode stage against ground truth: exact round trips, validators, determinism."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Catalog
from omas_idc.encode import EncodedSeg, Provenance, encode_binary, encode_labelmaps, write_dataset
from omas_idc.encode.seg import series_number_for
from omas_idc.encode.sources import SourceSeries
from omas_idc.errors import EncodingError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import read_series, read_series_headers
from omas_idc.testing.tasks import truth_task_labelmaps
from omas_idc.testing.validators import dciodvfy_errors
from omas_idc.volume import CTVolume

PROVENANCE = Provenance(
    model="cads",
    model_version="1.0",
    weights_variant="open",
    weights_licence="CC BY-SA 4.0",
    timestamp=datetime(2026, 3, 4, 5, 6, 7),
)

ORIENTATIONS = [
    {"orientation": "axial"},
    {"orientation": "axial", "flip_rows": True, "flip_columns": True},
    {"orientation": "axial", "patient_position": "FFS"},
    {"orientation": "axial", "patient_position": "HFP"},
    {"orientation": "axial", "patient_position": "FFP", "flip_columns": True},
    {"orientation": "coronal"},
    {"orientation": "sagittal", "flip_rows": True},
    {"orientation": "axial", "oblique_degrees": 7.0},
    {"orientation": "axial", "gantry_tilt_degrees": 15.0},
]


def _id(option: dict[str, object]) -> str:
    return "-".join(f"{k}={v}" for k, v in option.items())


def _grid(option: dict[str, object]) -> dict[str, object]:
    if option.get("orientation") in ("coronal", "sagittal"):
        return {"shape": (24, 70, 60), "pixel_spacing": (6.0, 6.0), "slice_spacing": 13.0}
    return {"shape": (34, 48, 56), "pixel_spacing": (7.0, 7.0), "slice_spacing": 11.0}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _phantom(tmp_path: Path, **options: object) -> tuple[Phantom, CTVolume]:
    phantom = make_phantom(tmp_path / "ct", PhantomOptions(seed=8, **options))  # type: ignore[arg-type]
    return phantom, read_series(tmp_path / "ct")


def _read_back(path: Path, volume: CTVolume) -> hd.seg.Segmentation:
    seg = hd.seg.segread(path)
    assert seg.SeriesInstanceUID != volume.series_instance_uid
    return seg


def _labelmap_array(seg: hd.seg.Segmentation, volume: SourceSeries) -> np.ndarray:
    """The SEG read back as a label array in the volume's slice order (by source instance)."""
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    array = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
    )
    return np.asarray(array)


def _structure_codes(seg: hd.seg.Segmentation, number: int) -> tuple[str, str | None]:
    item = seg.get_segment_description(number)
    type_item = item.SegmentedPropertyTypeCodeSequence[0]
    modifier = type_item.get("SegmentedPropertyTypeModifierCodeSequence")
    return str(type_item.CodeValue), (str(modifier[0].CodeValue) if modifier else None)


@pytest.mark.parametrize("option", ORIENTATIONS, ids=_id)
def test_labelmap_layout_round_trips_exactly(
    tmp_path: Path, catalog: Catalog, option: dict[str, object]
) -> None:
    phantom, volume = _phantom(tmp_path, **_grid(option), **option)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    encoded = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    assert {e.tasks[0] for e in encoded} == {m.task for m in maps if m.present_labels()}
    for item in encoded:
        path = write_dataset(item.dataset, tmp_path / f"seg_{item.tasks[0]}.dcm")
        seg = _read_back(path, volume)
        assert seg.SegmentationType == "LABELMAP"
        assert seg.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
        (labelmap,) = [m for m in maps if m.task == item.tasks[0]]
        np.testing.assert_array_equal(_labelmap_array(seg, volume), labelmap.array)
        # Segment numbers are the task's label values; codes are the catalog's.
        assert list(seg.get_segment_numbers()) == labelmap.present_labels()
        for number in seg.get_segment_numbers():
            structure = catalog.by_model_label("cads", item.tasks[0], number)
            type_code, modifier = _structure_codes(seg, number)
            assert type_code == structure.type.value
            assert modifier == (structure.type_modifier.value if structure.type_modifier else None)
            assert catalog.by_codes(type_code, modifier).name == structure.name


@pytest.mark.parametrize("option", ORIENTATIONS, ids=_id)
def test_binary_layout_round_trips_exactly(
    tmp_path: Path, catalog: Catalog, option: dict[str, object]
) -> None:
    phantom, volume = _phantom(tmp_path, **_grid(option), **option)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    encoded = encode_binary(volume, maps, catalog, PROVENANCE)
    assert encoded is not None
    seg = _read_back(write_dataset(encoded.dataset, tmp_path / "seg.dcm"), volume)
    assert seg.SegmentationType == "BINARY"
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    numbers = list(seg.get_segment_numbers())
    assert numbers == list(range(1, len(numbers) + 1))
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    masks = np.asarray(
        seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, skip_overlap_checks=True)
    )
    rank = {s.name: i for i, s in enumerate(catalog.structures)}
    names = [encoded.segments[n].name for n in numbers]
    assert names == sorted(names, key=rank.__getitem__)  # catalog order
    for number in numbers:
        structure = encoded.segments[number]
        value = {v: k for k, v in phantom.label_names.items()}[structure.name]
        np.testing.assert_array_equal(masks[..., number - 1] > 0, phantom.labels == value)
        type_code, modifier = _structure_codes(seg, number)
        assert catalog.by_codes(type_code, modifier).name == structure.name
    # Empty frames are omitted: frames only where some segment is present.
    assert seg.NumberOfFrames == int(
        sum(masks[..., i].any(axis=(1, 2)).sum() for i in range(len(numbers)))
    )


def _assert_frames_on_their_source_planes(
    seg: pydicom.Dataset, volume: SourceSeries
) -> dict[str, int]:
    """Each frame's plane position is that of the source image it derives from.

    Returns the volume's slice index of each source SOP Instance UID.
    """
    sources = {ref.sop_instance_uid: k for k, ref in enumerate(volume.source_refs)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        derivation = frame.DerivationImageSequence[0].SourceImageSequence[0]
        k = sources[derivation.ReferencedSOPInstanceUID]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, volume.geometry.slice_positions[k], atol=1e-4)
    return sources


def test_frames_reference_their_source_slices(tmp_path: Path, catalog: Catalog) -> None:
    """Each frame's plane position and derivation reference equal its source slice's."""
    phantom, volume = _phantom(tmp_path, gantry_tilt_degrees=-12.0, **_grid({}))
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    (item, *_) = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    seg = item.dataset
    sources = _assert_frames_on_their_source_planes(seg, volume)
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == set(sources)  # every source instance, including empty slices


def test_header_is_copied_not_invented(tmp_path: Path, catalog: Catalog) -> None:
    phantom, volume = _phantom(tmp_path, **_grid({}))
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    seg = encode_labelmaps(volume, maps, catalog, PROVENANCE)[0].dataset
    source = pydicom.dcmread(phantom.files[0])
    for keyword in (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "StudyID",
        "AccessionNumber",
        "FrameOfReferenceUID",
    ):
        assert seg[keyword].value == source[keyword].value, keyword
    assert seg.SeriesNumber == series_number_for(int(source.SeriesNumber), 1)
    assert seg.SeriesDescription == "CADS 551 segmentation"
    assert str(seg.ContentCreatorName) == "omas-idc^"
    assert (seg.ContentDate, seg.ContentTime) == ("20260304", "050607")
    first = seg.get_segment_description(min(seg.get_segment_numbers()))
    algorithm = first.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "cads"
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "CC BY-SA 4.0" in algorithm.AlgorithmParameters


def test_series_number_rule_covers_a_missing_source_number() -> None:
    assert series_number_for(3, 2) == 302
    assert series_number_for(None, 2) == 9902
    assert series_number_for(30_000_000, 1) == 9901  # 100 * n would overflow IS


def _encode_to(
    folder: Path, volume: SourceSeries, maps: list[TaskLabelMap], catalog: Catalog
) -> list[Path]:
    paths = [
        write_dataset(item.dataset, folder / f"seg_{item.tasks[0]}.dcm")
        for item in encode_labelmaps(volume, maps, catalog, PROVENANCE)
    ]
    binary = encode_binary(volume, maps, catalog, PROVENANCE)
    assert binary is not None
    paths.append(write_dataset(binary.dataset, folder / "seg_binary.dcm"))
    return paths


def test_encoding_twice_gives_byte_identical_files(tmp_path: Path, catalog: Catalog) -> None:
    phantom, volume = _phantom(tmp_path, **_grid({}))
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    first = _encode_to(tmp_path / "a", volume, maps, catalog)
    second = _encode_to(tmp_path / "b", read_series(tmp_path / "ct"), maps, catalog)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    # The encoder's header-only read (no pixels, source headers read once) writes the same bytes.
    third = _encode_to(tmp_path / "c", read_series_headers(tmp_path / "ct"), maps, catalog)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in third]
    # A different model version makes different objects (no UID collisions in IDC).
    other = encode_labelmaps(
        volume,
        maps,
        catalog,
        Provenance(model="cads", model_version="1.1", timestamp=PROVENANCE.timestamp),
    )
    assert other[0].dataset.SOPInstanceUID != pydicom.dcmread(first[0]).SOPInstanceUID


def _dcmqi_read(path: Path, out: Path) -> dict[int, nib.Nifti1Image]:
    """dcmqi's segimage2itkimage: one NIfTI per segment (or per labelmap) plus meta.json."""
    tool = shutil.which("segimage2itkimage")
    assert tool, "dcmqi (PyPI) is a test dependency"
    out.mkdir(parents=True)
    result = subprocess.run(
        [tool, "--inputDICOM", str(path), "--outputDirectory", str(out), "--outputType", "nifti"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {int(p.name.split(".")[0]): nib.load(p) for p in out.glob("*.nii.gz")}


def _centroid_lps(image: nib.Nifti1Image, value: int | None = None) -> np.ndarray:
    data = np.asarray(image.dataobj)
    ijk = np.argwhere(data == value if value is not None else data > 0)
    ras = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    return ras.mean(axis=0) * np.array([-1.0, -1.0, 1.0])


@pytest.mark.parametrize(
    "option",
    [
        {"orientation": "axial", "patient_position": "FFP", "flip_columns": True},
        {"orientation": "coronal", "flip_rows": True},
        {"orientation": "axial", "patient_position": "HFP"},
        {"orientation": "axial", "oblique_degrees": 7.0},
    ],
    ids=_id,
)
def test_dciodvfy_and_dcmqi_accept_both_layouts_with_organs_on_the_right_side(
    tmp_path: Path, catalog: Catalog, option: dict[str, object]
) -> None:
    phantom, volume = _phantom(tmp_path, **_grid(option), **option)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    paths = _encode_to(tmp_path / "seg", volume, maps, catalog)
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name
    # LABELMAP of task 551 (kidneys): dcmqi writes the label map as one image.
    kidney_left = catalog.label_of("kidney_left", "cads")
    kidney_right = catalog.label_of("kidney_right", "cads")
    assert kidney_left is not None
    assert kidney_right is not None
    images = _dcmqi_read(tmp_path / "seg" / "seg_551.dcm", tmp_path / "dcmqi_551")
    assert images, "dcmqi wrote nothing"
    (image,) = images.values()
    left = _centroid_lps(image, kidney_left.label)
    right = _centroid_lps(image, kidney_right.label)
    truth_left = phantom.structure("kidney_left").centroid_lps
    truth_right = phantom.structure("kidney_right").centroid_lps
    assert left[0] > right[0] + 50
    assert np.linalg.norm(left - truth_left) < 8
    assert np.linalg.norm(right - truth_right) < 8
    # BINARY: one image per segment.
    binary = pydicom.dcmread(tmp_path / "seg" / "seg_binary.dcm")
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in binary.SegmentSequence}
    by_label = {v: k for k, v in labels.items()}
    images = _dcmqi_read(tmp_path / "seg" / "seg_binary.dcm", tmp_path / "dcmqi_binary")
    left = _centroid_lps(images[by_label["kidney left"]])
    right = _centroid_lps(images[by_label["kidney right"]])
    assert left[0] > right[0] + 50
    assert np.linalg.norm(left - truth_left) < 8


@pytest.mark.parametrize("tilt", [15.0, -20.0])
def test_segs_of_gantry_tilted_series_pass_dciodvfy_and_keep_the_tilt(
    tmp_path: Path, catalog: Catalog, tilt: float
) -> None:
    """Tilted series: SEG frames lie on the tilted source planes, in both layouts.

    dcmqi is not asked here: it rebuilds an ITK image, whose slices run along the plane normal,
    so it cannot place the frames of a tilted series (at +15 degrees its label image is shifted
    by 10-50 mm along the tilt; at -20 degrees it writes no image, "Frame 0 origin ... is outside
    image geometry"). That is a limit of orthogonal image grids, not of the SEG, which carries
    each frame's own position as the Segmentation IOD asks.
    """
    phantom, volume = _phantom(tmp_path, gantry_tilt_degrees=tilt, **_grid({}))
    assert volume.geometry.tilt_degrees == pytest.approx(abs(tilt), abs=0.01)
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    paths = _encode_to(tmp_path / "seg", volume, maps, catalog)
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name
    binary = hd.seg.segread(tmp_path / "seg" / "seg_binary.dcm")
    _assert_frames_on_their_source_planes(binary, volume)
    # The plane orientation is the tilted one of the sources, not an orthogonal stand-in.
    shared = binary.SharedFunctionalGroupsSequence[0]
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    source = pydicom.dcmread(volume.files[0], stop_before_pixels=True)
    np.testing.assert_allclose(orientation, [float(v) for v in source.ImageOrientationPatient])


@pytest.mark.parametrize("read", [read_series, read_series_headers])
def test_empty_source_uids_are_refused(
    shared_data: Path, catalog: Catalog, read: Callable[[Path], SourceSeries]
) -> None:
    folder = next(shared_data.glob("totalsegmentator/**/example_ct_dicom"))
    volume = read(folder)
    array = np.zeros(volume.shape, dtype=np.uint8)
    array[5:10, 200:260, 200:260] = 5
    labelmap = TaskLabelMap("cads", "551", array, {5: "liver"})
    with pytest.raises(EncodingError, match="empty") as info:
        encode_labelmaps(volume, [labelmap], catalog, PROVENANCE)
    assert info.value.reason == "empty-uids"


@pytest.mark.parametrize("read", [read_series, read_series_headers])
def test_empty_specific_character_set_is_sanitised_not_copied(
    tmp_path: Path, shared_data: Path, catalog: Catalog, read: Callable[[Path], SourceSeries]
) -> None:
    """The dcmqi CT has an empty SpecificCharacterSet that highdicom refuses as is."""
    folder = shared_data / "dcmqi" / "data" / "segmentations" / "ct-3slice"
    volume = read(folder)
    assert any(
        "SpecificCharacterSet" in pydicom.dcmread(f, stop_before_pixels=True)
        and not pydicom.dcmread(f, stop_before_pixels=True).SpecificCharacterSet
        for f in volume.files
    )
    array = np.zeros(volume.shape, dtype=np.uint8)
    array[:, 100:300, 100:300] = 5
    (item,) = encode_labelmaps(
        volume, [TaskLabelMap("cads", "551", array, {5: "liver"})], catalog, PROVENANCE
    )
    path = write_dataset(item.dataset, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert seg.PatientID == pydicom.dcmread(volume.files[0], stop_before_pixels=True).PatientID
    np.testing.assert_array_equal(_labelmap_array(seg, volume), array)


def test_unmapped_labels_and_off_grid_maps_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    _, volume = _phantom(tmp_path, **_grid({}))
    array = np.zeros(volume.shape, dtype=np.uint8)
    array[3, 3, 3] = 99
    with pytest.raises(EncodingError, match="99") as info:
        encode_labelmaps(
            volume, [TaskLabelMap("cads", "551", array, {99: "unicorn"})], catalog, PROVENANCE
        )
    assert info.value.reason == "unmapped-label"
    with pytest.raises(EncodingError, match="source grid"):
        encode_labelmaps(
            volume,
            [TaskLabelMap("cads", "551", array[:-1], {5: "liver"})],
            catalog,
            PROVENANCE,
        )


def test_tasks_without_any_present_structure_make_no_seg(tmp_path: Path, catalog: Catalog) -> None:
    _, volume = _phantom(tmp_path, **_grid({}))
    empty = TaskLabelMap(
        "cads", "553", np.zeros(volume.shape, dtype=np.uint8), {17: "urinary_bladder"}
    )
    assert encode_labelmaps(volume, [empty], catalog, PROVENANCE) == []
    assert encode_binary(volume, [empty], catalog, PROVENANCE) is None


def test_encoded_seg_lists_what_it_holds(tmp_path: Path, catalog: Catalog) -> None:
    phantom, volume = _phantom(tmp_path, **_grid({}))
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    encoded: list[EncodedSeg] = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    names = {s.name for item in encoded for s in item.segments.values()}
    assert {"kidney_left", "kidney_right", "liver", "heart"} <= names
    assert all(item.layout == "labelmap" for item in encoded)


def test_binary_layout_keeps_overlapping_segments_of_different_tasks(
    tmp_path: Path, catalog: Catalog
) -> None:
    """Tasks overlap (CADS: e.g. heart in 556 and its chambers in 553): each segment survives."""
    phantom, volume = _phantom(tmp_path, **_grid({}))
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    liver = {v: k for k, v in phantom.label_names.items()}["liver"]
    kidney = {v: k for k, v in phantom.label_names.items()}["kidney_left"]
    overlap = np.zeros(volume.shape, dtype=np.uint8)
    overlap[phantom.labels == liver] = 13  # 553/13: an overlapping structure on the liver
    overlap[phantom.labels == kidney] = 17
    labels_553 = catalog.labels_for("cads", "553")
    extra = TaskLabelMap("cads", "553", overlap, {13: labels_553[13].name, 17: labels_553[17].name})
    maps = [m for m in maps if m.task != "553"] + [extra]
    encoded = encode_binary(volume, maps, catalog, PROVENANCE)
    assert encoded is not None
    path = write_dataset(encoded.dataset, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert seg.SegmentsOverlap == "UNDEFINED"
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    masks = np.asarray(
        seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, skip_overlap_checks=True)
    )
    expected = {(m.task, v): m.array == v for m in maps for v in m.present_labels()}
    by_structure = {
        catalog.by_model_label("cads", task, value).name: mask
        for (task, value), mask in expected.items()
    }
    assert len(encoded.segments) == len(expected)
    for number, structure in encoded.segments.items():
        np.testing.assert_array_equal(masks[..., number - 1] > 0, by_structure[structure.name])
    numbers = list(seg.get_segment_numbers())
    assert numbers == list(range(1, len(expected) + 1))
