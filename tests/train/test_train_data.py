"""Training cases from DICOM (CT series + SEG) and NIfTI: labels land on the right structures.

The SEGs are encoded from a phantom's truth by the encode stage and then given misleading
SegmentLabel texts (left and right kidneys swapped, liver called spleen, ...): the loader must
match segments by their type and type-modifier codes, so the training labels still equal the
phantom's truth. The NIfTI label maps number the structures as the files do, not as the
model does, and hold structures the dataset does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

torch = pytest.importorskip("torch")

from omas_idc.catalog import load_catalog  # noqa: E402
from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset  # noqa: E402
from omas_idc.encode.seg import EncodedSeg  # noqa: E402
from omas_idc.errors import TrainingError  # noqa: E402
from omas_idc.nifti import write_nifti  # noqa: E402
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom  # noqa: E402
from omas_idc.read import read_series  # noqa: E402
from omas_idc.testing.tasks import truth_task_labelmaps  # noqa: E402
from omas_idc.train.config import DatasetConfig  # noqa: E402
from omas_idc.train.data import SourceCase, dicom_cases, nifti_cases, to_raw_case  # noqa: E402

#: The model's labels, in an order that is neither the phantom's nor the catalog's.
MODEL_LABELS = ("kidney_right", "heart", "liver", "kidney_left", "spleen")
#: What the training dataset annotates (the SEGs and label maps hold more: the heart, lungs...).
ANNOTATED = ("liver", "spleen", "kidney_left", "kidney_right")
#: SegmentLabel text written over each structure's segment: a text matcher would swap them.
MISLEADING = {
    "kidney_left": "kidney right",
    "kidney_right": "kidney left",
    "liver": "spleen",
    "spleen": "liver",
}
PROVENANCE = Provenance(model="phantom-truth", model_version="1", timestamp=datetime(2026, 1, 2))
#: Small grids at 12 mm: every structure above is present, and the tests stay fast.
ACQUISITIONS = {
    "axial_HFS": {"shape": (32, 24, 32)},
    "coronal_FFS": {"shape": (24, 32, 32), "orientation": "coronal", "patient_position": "FFS"},
    "sagittal_flipped": {"shape": (32, 32, 24), "orientation": "sagittal", "flip_columns": True},
}


def _phantom(folder: Path, acquisition: str, seed: int) -> Phantom:
    options = PhantomOptions(
        seed=seed,
        pixel_spacing=(12.0, 12.0),
        slice_spacing=12.0,
        **ACQUISITIONS[acquisition],  # type: ignore[arg-type]
    )
    return make_phantom(folder, options)


def _expected(phantom: Phantom, annotated: Sequence[str] = ANNOTATED) -> npt.NDArray[np.uint8]:
    """The phantom's truth in model label numbers, for the annotated structures only."""
    index = {name: i + 1 for i, name in enumerate(MODEL_LABELS)}
    out = np.zeros(phantom.labels.shape, dtype=np.uint8)
    for value, name in phantom.label_names.items():
        if name in annotated:
            out[phantom.labels == value] = index[name]
    return out


def _write_misleading(encoded: EncodedSeg, path: Path) -> Path:
    """Write a SEG whose segment labels name other structures than its codes say."""
    write_dataset(encoded.dataset, path)
    seg = pydicom.dcmread(path)
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        if number == 0:
            continue
        name = encoded.segments[number].name
        item.SegmentLabel = MISLEADING.get(name, "liver")
    seg.save_as(path)
    return path


def _check_case(case: SourceCase, phantom: Phantom) -> None:
    index = {name: i + 1 for i, name in enumerate(MODEL_LABELS)}
    assert case.annotated == frozenset(index[n] for n in ANNOTATED)
    for name in ANNOTATED:
        assert (case.labels == index[name]).any(), f"{name} is missing from {case.name}"
    np.testing.assert_array_equal(case.labels, _expected(phantom))
    np.testing.assert_allclose(case.hu, phantom.hu, atol=0.5)
    # the network sees the same array and labels as from the phantom's own truth
    truth = SourceCase(
        name="truth",
        dataset=case.dataset,
        hu=phantom.hu.astype(np.float32),
        geometry=phantom.geometry,
        labels=_expected(phantom),
        annotated=case.annotated,
    )
    ours, theirs = to_raw_case(case), to_raw_case(truth)
    np.testing.assert_array_equal(ours.labels, theirs.labels)
    np.testing.assert_allclose(ours.image, theirs.image, atol=0.5)
    np.testing.assert_allclose(ours.spacing, theirs.spacing, atol=1e-3)


def test_dicom_seg_segments_are_matched_by_codes_not_label_text(tmp_path: Path) -> None:
    catalog = load_catalog()
    images, labels = tmp_path / "ct", tmp_path / "seg"
    labels.mkdir()
    phantoms: dict[str, Phantom] = {}
    # One series gets one LABELMAP SEG per CADS task, another one BINARY SEG of all tasks.
    for layout, acquisition, seed in (("labelmap", "axial_HFS", 31), ("binary", "coronal_FFS", 32)):
        folder = images / f"{layout}_{acquisition}"
        phantom = phantoms[folder.name] = _phantom(folder, acquisition, seed)
        volume = read_series(folder)
        maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
        if layout == "labelmap":
            encoded = encode_labelmaps(volume, maps, catalog, PROVENANCE)
        else:
            binary = encode_binary(volume, maps, catalog, PROVENANCE)
            assert binary is not None
            encoded = [binary]
        for i, seg in enumerate(encoded):
            _write_misleading(seg, labels / f"{layout}_{i}.dcm")
    # the labels really do mislead
    texts = {
        str(item.SegmentLabel)
        for path in labels.iterdir()
        for item in pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence
        if int(item.SegmentNumber) > 0
    }
    assert {"kidney left", "kidney right", "liver", "spleen"} <= texts

    dataset = DatasetConfig(
        name="idc", format="dicom", images=images, labels=labels, structures=ANNOTATED
    )
    cases = dicom_cases(dataset, MODEL_LABELS)

    assert sorted(case.name for case in cases) == sorted(phantoms)
    for case in cases:
        _check_case(case, phantoms[case.name])


def _write_nnunet_raw(folder: Path, phantom: Phantom, case: str) -> None:
    """``images/{case}_0000.nii.gz`` (HU) and ``labels/{case}.nii.gz`` (the phantom's values)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    hu = np.rint(phantom.hu).astype(np.int16)
    write_nifti(folder / "images" / f"{case}_0000.nii.gz", hu, phantom.geometry)
    write_nifti(folder / "labels" / f"{case}.nii.gz", phantom.labels, phantom.geometry)


def _file_values(phantom: Phantom) -> Mapping[int, str]:
    return {value: name for value, name in phantom.label_names.items() if name in ANNOTATED}


def test_nifti_label_values_are_renumbered_into_the_model_labels(tmp_path: Path) -> None:
    phantoms = {
        "case_a": _phantom(tmp_path / "dicom_a", "sagittal_flipped", 41),
        "case_b": _phantom(tmp_path / "dicom_b", "coronal_FFS", 41),
    }
    for case, phantom in phantoms.items():
        _write_nnunet_raw(tmp_path / "raw", phantom, case)
    values = _file_values(phantoms["case_a"])
    assert values == _file_values(phantoms["case_b"])
    index = {name: i + 1 for i, name in enumerate(MODEL_LABELS)}
    # the files number the structures otherwise than the model, and hold undeclared ones
    assert any(index[name] != value for value, name in values.items())
    assert set(np.unique(phantoms["case_a"].labels)) - set(values) - {0}

    dataset = DatasetConfig(
        name="raw",
        format="nifti",
        images=tmp_path / "raw" / "images",
        labels=tmp_path / "raw" / "labels",
        label_values=values,
    )
    cases = nifti_cases(dataset, MODEL_LABELS)

    assert [case.name for case in cases] == ["case_a", "case_b"]
    for case in cases:
        _check_case(case, phantoms[case.name])


def test_nifti_labels_off_the_image_grid_are_refused(tmp_path: Path) -> None:
    phantom = _phantom(tmp_path / "dicom", "axial_HFS", 42)
    _write_nnunet_raw(tmp_path / "raw", phantom, "case")
    shifted = make_phantom(
        tmp_path / "other",
        PhantomOptions(
            seed=42,
            shape=(32, 24, 32),
            pixel_spacing=(12.0, 12.0),
            slice_spacing=12.0,
            center_offset=(0.0, 0.0, 24.0),
        ),
    )
    write_nifti(tmp_path / "raw" / "labels" / "case.nii.gz", shifted.labels, shifted.geometry)
    dataset = DatasetConfig(
        name="raw",
        format="nifti",
        images=tmp_path / "raw" / "images",
        labels=tmp_path / "raw" / "labels",
        label_values=_file_values(phantom),
    )
    with pytest.raises(TrainingError, match="does not lie on the grid"):
        nifti_cases(dataset, MODEL_LABELS)
