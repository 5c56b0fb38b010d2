"""A run state that cannot be opened (overwritten, truncated) is moved aside with a warning and
rebuilt from the outputs' DONE markers: nothing that has a marker is redone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_corrupt_state_is_moved_aside_and_rebuilt_from_the_markers(
    damage: str,
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
) -> None:
    ref, selection = one_series
    out, work = tmp_path / "out", tmp_path / "work"
    args = omas.args(selection, threshold_model, out, work)
    first = omas.run(args, s3_server)
    assert first.returncode == 0, first.stdout + first.stderr
    outputs = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    database = work / "state.sqlite"
    good = database.read_bytes()
    damaged = b"this is not an SQLite database\n" * 64 if damage == "overwritten" else good[:200]
    database.write_bytes(damaged)

    second = omas.run(args, s3_server)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Traceback" not in second.stderr
    assert f"the run state {database} cannot be read" in second.stderr
    assert "moved it aside" in second.stderr
    (aside,) = work.glob("state.sqlite.corrupt-*[0-9]Z")
    assert aside.read_bytes() == damaged  # kept for inspection, inside the work folder
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert (report["processed"], report["skipped_done"]) == (0, 1)  # nothing redone
    with RunState(database) as state:
        (row,) = state.all_series()
    assert (row.series_uid, row.status) == (ref.series_instance_uid, "done")
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    series = {p: t for p, t in written.items() if "phantom_collection" in p.parts}
    assert series == {p: t for p, t in outputs.items() if "phantom_collection" in p.parts}


def test_status_of_a_corrupt_state_says_what_the_next_run_does(
    omas: SimpleNamespace, tmp_path: Path
) -> None:
    (tmp_path / "state.sqlite").write_bytes(b"garbage" * 100)
    result = omas.run(["status", str(tmp_path)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot be read" in result.stderr
    assert "moves it aside" in result.stderr
    assert (tmp_path / "state.sqlite").read_bytes() == b"garbage" * 100  # status changes nothing
