"""The run's folders checked before any work: a missing or wrong selection file, a work or
output folder that is a file, a read-only or full output folder. Each is refused with a named
error and exit 2 before anything is fetched; a disk that fills while publishing fails the series
with a classified error and the run report is still written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.run import runner
from omas_idc.run.folders import (
    MIN_FREE_BYTES,
    OUTPUT_SIZE_FACTOR,
    check_output_location,
    required_free_bytes,
)
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef


def _refused(result: Any, *phrases: str) -> None:
    """Exit 2, one message holding ``phrases``, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_a_missing_or_foreign_selection_file_is_a_configuration_error(
    omas: SimpleNamespace, threshold_model: Path, tmp_path: Path
) -> None:
    text = tmp_path / "selection.txt"
    text.write_text("1.2.3\n1.2.4\n")
    for selection, phrase in (
        (tmp_path / "missing.parquet", "does not exist"),
        (text, "cannot be read as a selection"),
        (tmp_path, "is a folder"),
    ):
        work = tmp_path / f"work-{selection.name}"
        result = omas.run(omas.args(selection, threshold_model, tmp_path / "out", work))
        _refused(
            result, "ConfigurationError (selection-file)", f"the selection file {selection}", phrase
        )
        assert "omas-idc select" in result.stderr  # how to fix it
        assert not (work / "dicom").exists()


def test_a_work_or_output_folder_that_is_a_file_is_a_configuration_error(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    tmp_path: Path,
) -> None:
    _, selection = one_series
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    as_work = omas.run(omas.args(selection, threshold_model, tmp_path / "out", a_file))
    _refused(as_work, "ConfigurationError (work-folder)", f"the work folder {a_file}", "is a file")
    below = omas.run(omas.args(selection, threshold_model, tmp_path / "out", a_file / "work"))
    _refused(below, f"{a_file} is a file")
    as_out = omas.run(omas.args(selection, threshold_model, a_file, tmp_path / "work"))
    _refused(as_out, f"the output location {a_file} is a file")
    args = omas.args(selection, threshold_model, a_file, tmp_path)
    at = args.index("--work")
    default_work = omas.run(args[:at] + args[at + 2 :])  # the work folder inside --out
    _refused(default_work, f"the output location {a_file} is a file")
    assert a_file.read_text() == "not a folder"
    assert not (tmp_path / "out").exists()


def test_a_read_only_output_folder_is_refused_before_anything_is_fetched(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
    tmpfs: Any,
) -> None:
    _, selection = one_series
    out = tmpfs(tmp_path / "read-only", read_only=True)
    work = tmp_path / "work"
    before = omas.tree(tmp_path, skip=(work,))
    result = omas.run(omas.args(selection, threshold_model, out, work), s3_server)
    _refused(result, f"the output folder {out} is not writable", "Read-only file system")
    assert not (work / "dicom").exists()  # nothing fetched
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["refused"]["reason"] == "output-not-writable"
    assert report["processed"] == 0
    assert omas.tree(tmp_path, skip=(work,)) == before


def test_a_full_output_folder_is_refused_before_anything_is_fetched(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
    tmpfs: Any,
) -> None:
    _, selection = one_series
    out = tmpfs(tmp_path / "small", size="1m")
    work = tmp_path / "work"
    before = omas.tree(tmp_path, skip=(work,))
    result = omas.run(omas.args(selection, threshold_model, out, work), s3_server)
    _refused(result, f"the output folder {out} has", "MiB free", "Free space there")
    assert not (work / "dicom").exists()
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["refused"]["reason"] == "output-full"
    assert omas.tree(tmp_path, skip=(work,)) == before


def test_a_disk_that_fills_while_publishing_fails_the_series_and_keeps_the_report(
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
    tmpfs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, selection = one_series
    out = tmpfs(tmp_path / "filling", size="1m")
    # Another writer fills the disk once the run has checked it: a few KiB stay free, enough
    # for the probe, not for a SEG.
    monkeypatch.setattr(runner, "required_free_bytes", lambda refs: 0)
    filler = out / "other-writer.bin"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        written = os.write(handle, b"\0" * (2 * 1024 * 1024))  # a short write: the disk is full
    finally:
        os.close(handle)
    assert written < 2 * 1024 * 1024
    os.truncate(filler, written - 8192)
    work = tmp_path / "work"
    before = {p: p.stat().st_size for p in out.iterdir()}
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--selection",
            str(selection),
            "--model",
            str(threshold_model),
            "--out",
            str(out),
            "--work",
            str(work),
            "--device",
            "cpu",
            "--endpoint-url",
            s3_server,
        ],
    )
    assert result.exit_code == 1, (result.output, result.exception)  # a rerun may succeed
    assert not isinstance(result.exception, OSError), result.exception
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    (failure,) = report["failures"]
    assert (failure["error_class"], failure["reason"], failure["stage"]) == (
        "PublishError",
        "no-space",
        "publish",
    )
    assert "Free space" in failure["message"]
    with RunState(work / "state.sqlite") as state:
        (row,) = state.all_series()
    assert (row.series_uid, row.status, row.reason) == (
        ref.series_instance_uid,
        "failed",
        "no-space",
    )
    assert not list(out.rglob("DONE.json"))
    # No half-written file left (the failed copies' temporary files are removed, which frees
    # room for the small release files); the other writer's file is untouched.
    assert {p: p.stat().st_size for p in out.iterdir() if p.is_file()} == before
    left = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p != filler}
    assert left <= {"reports/run-report-0-of-1.json", "release/shard-0-of-1.parquet"}, left
    if "reports/run-report-0-of-1.json" in left:
        copied = (out / "reports" / "run-report-0-of-1.json").read_text()
        assert copied == (work / "run-report-0-of-1.json").read_text()


def test_free_space_needed_is_twice_the_largest_series_and_never_below_the_floor(
    tmp_path: Path, one_series: tuple[SeriesRef, Path]
) -> None:
    from dataclasses import replace

    ref, _ = one_series
    large = replace(ref, size_bytes=100 * MIN_FREE_BYTES)
    assert required_free_bytes([]) == MIN_FREE_BYTES
    assert required_free_bytes([ref]) == MIN_FREE_BYTES
    assert required_free_bytes([ref, large]) == OUTPUT_SIZE_FACTOR * large.size_bytes
    check_output_location(str(tmp_path / "new" / "out"), MIN_FREE_BYTES)
    assert (tmp_path / "new" / "out").is_dir()
    assert list((tmp_path / "new" / "out").iterdir()) == []  # the probe is gone
    check_output_location("s3://bucket/prefix", 10**30)  # a bucket has no free-space check
