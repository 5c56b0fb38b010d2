"""``omas-idc qa`` given the wrong files, as a user would: a named QAError, exit 2, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from omas_idc.catalog import load_catalog
from omas_idc.encode import Provenance, encode_labelmaps, write_dataset
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.testing.tasks import truth_task_labelmaps


def _omas_idc(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    wide = {**os.environ, "COLUMNS": "400"}  # typer's usage panel wraps at the terminal width
    return subprocess.run([script, *args], capture_output=True, text=True, check=False, env=wide)


def _series_and_seg(folder: Path, seed: int) -> tuple[Path, Path]:
    """A small phantom series and the LABELMAP SEG of its true task 551 labels."""
    catalog = load_catalog()
    phantom = make_phantom(
        folder / "ct",
        PhantomOptions(seed=seed, shape=(16, 44, 52), pixel_spacing=(7.0, 7.5), slice_spacing=10.0),
    )
    (task_551, *_) = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    volume = read_series(folder / "ct")
    provenance = Provenance(model="cads", model_version="1", timestamp=datetime(2026, 1, 1))
    (encoded,) = encode_labelmaps(volume, [task_551], catalog, provenance)
    seg = folder / "seg.dcm"
    write_dataset(encoded.dataset, seg)
    return folder / "ct", seg


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(series folder, its SEG, another series' SEG)."""
    ct, seg = _series_and_seg(tmp_path_factory.mktemp("one"), seed=6)
    _, other = _series_and_seg(tmp_path_factory.mktemp("two"), seed=7)
    return ct, seg, other


def _bad_seg(kind: str, series: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    ct, seg, other = series
    data = seg.read_bytes()
    path = tmp_path / f"{kind}.dcm"
    if kind == "truncated-header":
        path.write_bytes(data[:2000])
    elif kind == "truncated-pixels":
        path.write_bytes(data[: len(data) - 500])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("segmentation results\n")
    elif kind == "ct-slice":
        path.write_bytes(sorted(ct.glob("*.dcm"))[0].read_bytes())
    elif kind == "other-series":
        path.write_bytes(other.read_bytes())
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated-header", "unreadable-seg"),
        ("truncated-pixels", "unreadable-seg"),
        ("empty", "unreadable-seg"),
        ("text", "unreadable-seg"),
        ("ct-slice", "not-a-seg"),
        ("other-series", "wrong-series"),
    ],
)
def test_qa_names_a_file_that_is_not_a_seg_of_the_series(
    kind: str, reason: str, series: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ct, _, _ = series
    bad = _bad_seg(kind, series, tmp_path)
    out = tmp_path / "out"
    result = _omas_idc("qa", str(ct), str(bad), "--out", str(out), "--no-previews")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"QAError ({reason})" in message, message
    assert str(bad) in message
    assert not (out / "sr.dcm").exists()


def test_qa_of_the_right_seg_still_passes(series: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The refusals above are not a QA that refuses everything."""
    ct, seg, _ = series
    out = tmp_path / "out"
    result = _omas_idc("qa", str(ct), str(seg), "--out", str(out), "--no-previews")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "sr.dcm").is_file()


def test_qa_names_a_missing_seg_without_a_traceback(
    series: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ct, _, _ = series
    missing = tmp_path / "seg-that-is-not-there.dcm"
    result = _omas_idc("qa", str(ct), str(missing), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert missing.name in result.stderr
