"""A resumed run with another ``--structures`` selection is another run's work, not done work.

The selection is part of the outputs' identity: their SEGs hold only its structures, under
UIDs of their own, with the selection in the algorithm parameters; the run state and the
series' ``DONE.json`` marker record it. A run with another selection (or none) processes the
series again; a run with the same selection skips it, from the local state or, on a fresh
machine, from the markers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest

from omas_idc.run.resume import marker_selection, selection_key
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef

torch = pytest.importorskip("torch")

A = ("spleen", "liver")
B = ("heart", "kidney_left")


def _run(
    omas: SimpleNamespace,
    s3_server: str,
    selection: Path,
    out: Path,
    work: Path,
    structures: tuple[str, ...],
) -> dict[str, Any]:
    """``omas-idc run --model demo [--structures ...]``; its run report."""
    args = omas.args(selection, Path("demo"), out, work)
    args[args.index("--model") + 1] = "demo"
    if structures:
        args += ["--structures", ",".join(structures)]
    result = omas.run(args, s3_server)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads((work / "run-report-0-of-1.json").read_text()))


def _series_folder(out: Path, ref: SeriesRef) -> Path:
    return (
        out / ref.collection_id / ref.patient_id / ref.study_instance_uid / ref.series_instance_uid
    )


def _segments(seg: pydicom.Dataset) -> set[str]:
    return {
        str(segment.SegmentLabel)
        for segment in seg.SegmentSequence
        if segment.SegmentedPropertyTypeCodeSequence[0].CodeValue != "125040"  # background
    }


def _parameters(seg: pydicom.Dataset) -> set[str]:
    """The ``structures=`` algorithm parameters of every segment (highdicom joins with ',')."""
    found = set()
    for segment in seg.SegmentSequence:
        for algorithm in segment.get("SegmentationAlgorithmIdentificationSequence", []):
            for parameter in str(algorithm.get("AlgorithmParameters", "")).split(","):
                if parameter.startswith("structures="):
                    found.add(parameter)
    return found


@pytest.mark.slow
def test_another_selection_is_processed_again_and_the_same_one_skipped(
    one_series: tuple[SeriesRef, Path],
    s3_server: str,
    omas: SimpleNamespace,
    tmp_path: Path,
) -> None:
    ref, selection = one_series
    out, work = tmp_path / "out", tmp_path / "work"
    folder = _series_folder(out, ref)

    first = _run(omas, s3_server, selection, out, work, A)
    assert (first["done"], first["skipped_done"]) == (1, 0)
    seg_a = pydicom.dcmread(folder / "seg_900.dcm")
    assert _segments(seg_a) == {"liver", "spleen"}
    assert _parameters(seg_a) == {"structures=liver spleen"}
    marker = json.loads((folder / "DONE.json").read_text())
    assert marker["structures"] == ["liver", "spleen"]

    # another selection in the same work folder: processed again, B's segments only
    second = _run(omas, s3_server, selection, out, work, B)
    assert (second["done"], second["skipped_done"]) == (1, 0)
    assert second["model"]["selection"] == "structures=heart kidney_left"
    seg_b = pydicom.dcmread(folder / "seg_900.dcm")
    assert _segments(seg_b) == {"heart", "kidney left"}
    # other content, other objects: a SEG of A and one of B never share a UID
    assert seg_b.SOPInstanceUID != seg_a.SOPInstanceUID
    assert seg_b.SeriesInstanceUID != seg_a.SeriesInstanceUID
    assert _parameters(seg_b) == {"structures=heart kidney_left"}
    assert json.loads((folder / "DONE.json").read_text())["structures"] == ["heart", "kidney_left"]
    written = (folder / "seg_900.dcm").stat().st_mtime_ns

    # the same selection (in another order): skipped, nothing rewritten
    third = _run(omas, s3_server, selection, out, work, tuple(reversed(B)))
    assert (third["done"], third["skipped_done"]) == (0, 1)
    assert (folder / "seg_900.dcm").stat().st_mtime_ns == written

    # a fresh machine (a new work folder) without a selection: B's marker is not its own
    fresh = _run(omas, s3_server, selection, out, tmp_path / "fresh", ())
    assert (fresh["done"], fresh["skipped_done"]) == (1, 0)
    seg_all = pydicom.dcmread(folder / "seg_900.dcm")
    assert {"liver", "spleen", "heart", "kidney left"} <= _segments(seg_all)
    assert _parameters(seg_all) == set()
    assert "structures" not in json.loads((folder / "DONE.json").read_text())

    # another fresh machine, no selection: the whole model's marker counts as done
    again = _run(omas, s3_server, selection, out, tmp_path / "again", ())
    assert (again["done"], again["skipped_done"]) == (0, 1)


def test_a_state_written_before_selections_were_recorded_counts_as_the_whole_model(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE series (
            series_uid TEXT PRIMARY KEY, position INTEGER NOT NULL, ref TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending', stage TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0, error_class TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
            timings TEXT NOT NULL DEFAULT '{}', outputs TEXT NOT NULL DEFAULT '[]',
            updated TEXT NOT NULL DEFAULT ''
        );
        INSERT INTO series (series_uid, position, ref, status, attempts)
            VALUES ('1.2.3', 0, '{}', 'done', 1);
        """
    )
    old.commit()
    old.close()
    with RunState(path) as state:
        state.check()
        assert state.series("1.2.3").selection == ""
        assert state.reopen_other_selections("") == 0  # the whole model: still done
        assert state.series("1.2.3").status == "done"
        assert state.reopen_other_selections(selection_key(["liver"])) == 1
        redo = state.series("1.2.3")
        assert (redo.status, redo.attempts) == ("pending", 0)


def test_a_selection_failure_is_retried_by_another_selection(tmp_path: Path) -> None:
    liver, heart = selection_key(["liver"]), selection_key(["heart"])
    with RunState(tmp_path / "state.sqlite") as state:
        state.add_series([("1.2.3", {}), ("1.2.4", {})])
        # no liver in this series: refused for this selection, for good
        state.mark_running("1.2.3", "fetch", selection=liver)
        state.mark_failed(
            "1.2.3",
            "encode",
            "EncodingError",
            "empty-segmentation",
            "none",
            permanent=True,
            selection=liver,
        )
        state.mark_done("1.2.4", ["x"], {}, selection=liver)
        assert state.reopen_other_selections(liver) == 0
        assert [s.series_uid for s in state.to_do(3)] == []
        assert state.reopen_other_selections(heart) == 2
        assert [s.series_uid for s in state.to_do(3)] == ["1.2.3", "1.2.4"]


def test_the_selection_has_one_written_form() -> None:
    assert selection_key() == ""
    assert selection_key(["liver", "heart", "liver"]) == "structures=heart liver"
    assert selection_key([], ["552", "551"]) == "tasks=551 552"
    assert marker_selection({"structures": ["liver", "heart"]}) == selection_key(["heart", "liver"])
    assert marker_selection({"algorithm": "omas-demo"}) == ""  # a marker of the whole model


def test_a_selection_makes_other_uids_and_the_whole_model_keeps_its_own() -> None:
    from datetime import datetime

    from omas_idc.encode import Provenance
    from omas_idc.encode.provenance import derived_uid
    from omas_idc.encode.segments import algorithm_identification
    from omas_idc.identity import ModelIdentity

    when = datetime(2026, 5, 6, 7, 8, 9)
    whole = Provenance.for_model(ModelIdentity("cads", "1.0", "open"), when)
    # the whole model's UIDs are what they were before selections existed
    assert whole.uid("1.2.3", "551", "series") == derived_uid(
        "1.2.3", "cads", "1.0", "open", "551", whole.omas_idc_version, "series"
    )
    picked = Provenance.for_model(ModelIdentity("cads", "1.0", "open", "", ("liver",)), when)
    same = Provenance.for_model(ModelIdentity("cads", "1.0", "open", "", ("liver", "liver")), when)
    assert picked.uid("1.2.3", "551", "series") != whole.uid("1.2.3", "551", "series")
    assert same.uid("1.2.3", "551", "series") == picked.uid("1.2.3", "551", "series")
    assert picked.identity.structures == ("liver",)
    parameters = algorithm_identification(picked)[0].AlgorithmParameters
    assert "structures=liver" in parameters.split(",")
    assert "structures" not in algorithm_identification(whole)[0].AlgorithmParameters
