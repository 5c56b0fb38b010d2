"""``omas-idc encode``: an existing NIfTI label map becomes a valid SEG on its DICOM series."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from omas_idc.catalog import load_catalog
from omas_idc.geometry import lps_to_ras
from omas_idc.nifti import read_nifti
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.testing.tasks import truth_task_labelmaps


def _omas_idc(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    return subprocess.run([script, *args], capture_output=True, text=True, check=False)


def _task_551_nifti(tmp_path: Path, flip_rows: bool) -> tuple[Path, Path, np.ndarray]:
    phantom = make_phantom(
        tmp_path / "ct",
        PhantomOptions(seed=6, shape=(24, 44, 52), pixel_spacing=(7.0, 7.5), slice_spacing=10.0),
    )
    (task_551, *_) = truth_task_labelmaps(phantom.labels, phantom.label_names, load_catalog())
    assert task_551.task == "551"
    xyz = task_551.array.transpose(2, 1, 0)
    affine = phantom.geometry.affine.copy()
    if flip_rows:  # store rows bottom-up, as dcm2niix does
        affine[:3, 3] += affine[:3, 1] * (xyz.shape[1] - 1)
        affine[:3, 1] *= -1
        xyz = xyz[:, ::-1, :]
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(xyz), lps_to_ras(affine)), path)
    return tmp_path / "ct", path, task_551.array


def test_encode_writes_a_seg_that_reads_back_equal(tmp_path: Path) -> None:
    series, labels, truth = _task_551_nifti(tmp_path, flip_rows=True)
    for layout in ("labelmap", "binary"):
        result = _omas_idc(
            "encode",
            str(series),
            str(labels),
            "--task",
            "551",
            "--layout",
            layout,
            "--out",
            str(tmp_path / layout),
            "--timestamp",
            "2026-02-03T04:05:06",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        (path,) = (tmp_path / layout).glob("*.dcm")
        seg = hd.seg.segread(path)
        volume = read_series(series)
        uids = [ref.sop_instance_uid for ref in volume.source_refs]
        array = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, relabel=layout == "binary"
        )
        if layout == "labelmap":
            np.testing.assert_array_equal(array, truth)
        else:
            np.testing.assert_array_equal(np.asarray(array) > 0, truth > 0)
        assert seg.ContentDate == "20260203"


def test_encode_refuses_labels_the_task_does_not_define(tmp_path: Path) -> None:
    """Task 557 (brain tissues) has 9 labels; the 551 map uses labels up to 17."""
    series, labels, _ = _task_551_nifti(tmp_path, flip_rows=False)
    result = _omas_idc(
        "encode", str(series), str(labels), "--task", "557", "--out", str(tmp_path / "o")
    )
    assert result.returncode != 0
    assert "does not define" in result.stdout + result.stderr
    assert not (tmp_path / "o").exists()


def test_encode_refuses_a_map_that_would_need_resampling(tmp_path: Path) -> None:
    series, labels, _ = _task_551_nifti(tmp_path, flip_rows=False)
    image = nib.load(labels)
    shifted = image.affine.copy()
    shifted[:3, 3] += 0.5 * shifted[:3, 0]  # half a voxel
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), tmp_path / "shifted.nii.gz")
    result = _omas_idc(
        "encode",
        str(series),
        str(tmp_path / "shifted.nii.gz"),
        "--task",
        "551",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode != 0
    assert "offset" in result.stdout + result.stderr


def _bad_nifti(kind: str, good: Path, folder: Path) -> Path:
    """A label map broken the way files get broken: renamed, exported 4-D, cut short."""
    if kind == "not-gzip":
        path = folder / "labels-not-gzip.nii.gz"  # an uncompressed NIfTI named .nii.gz
        path.write_bytes(gzip.decompress(good.read_bytes()))
    elif kind == "four-d":
        path = folder / "labels-4d.nii.gz"
        image = nib.load(good)
        data = np.asarray(image.dataobj)
        nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), image.affine), path)
    elif kind == "truncated-gzip":
        path = folder / "labels-truncated.nii.gz"
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-nii":
        path = folder / "labels-truncated.nii"
        data = gzip.decompress(good.read_bytes())
        path.write_bytes(data[: len(data) // 2])
    else:
        path = folder / "labels-empty.nii.gz"
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind", ["not-gzip", "four-d", "truncated-gzip", "truncated-nii", "empty"])
def test_encode_names_a_label_map_it_cannot_read(kind: str, tmp_path: Path) -> None:
    series, labels, _ = _task_551_nifti(tmp_path, flip_rows=False)
    bad = _bad_nifti(kind, labels, tmp_path)
    out = tmp_path / "o"
    result = _omas_idc("encode", str(series), str(bad), "--task", "551", "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "Aborted" not in output
    message = " ".join(result.stderr.split())
    assert "EncodingError (unreadable-labels)" in message, message
    assert str(bad) in message
    assert not out.exists()


def test_read_nifti_refuses_a_truncated_file_with_a_value_error(tmp_path: Path) -> None:
    _, labels, _ = _task_551_nifti(tmp_path, flip_rows=False)
    bad = _bad_nifti("truncated-gzip", labels, tmp_path)
    with pytest.raises(ValueError, match="truncated or damaged"):
        read_nifti(bad)
    with pytest.raises(ValueError, match="4-D image"):
        read_nifti(_bad_nifti("four-d", labels, tmp_path))


def test_encode_takes_a_built_in_models_alias_as_its_name(tmp_path: Path) -> None:
    """``--model demo`` (the packaged demo's alias, as ``segment`` and ``run`` take it) encodes
    the demo's label numbers exactly as ``--model omas-demo`` does: the same SEG, byte for byte."""
    series, labels_551, truth = _task_551_nifti(tmp_path, flip_rows=False)
    catalog = load_catalog()
    demo = {s.name: value for value, s in catalog.labels_for("omas-demo", "900").items()}
    cads = {s.name: value for value, s in catalog.labels_for("cads", "551").items()}
    image = nib.load(labels_551)
    data = np.asarray(image.dataobj)
    remapped = np.zeros_like(data)
    for name in ("liver", "spleen"):
        remapped[data == cads[name]] = demo[name]
    path = tmp_path / "demo_labels.nii.gz"
    nib.save(nib.Nifti1Image(remapped, image.affine), path)
    written = []
    for model in ("demo", "omas-demo"):
        out = tmp_path / model
        result = _omas_idc(
            "encode", str(series), str(path), "--model", model, "--task", "900",
            "--out", str(out), "--timestamp", "2026-02-03T04:05:06",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        (seg,) = out.glob("*.dcm")
        written.append(seg.read_bytes())
    assert written[0] == written[1]
    assert (truth == cads["liver"]).any()
