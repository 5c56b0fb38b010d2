"""A saved selection written as an attack: values that look like paths never become paths.

- A PatientID such as ``../../../../<tmp>/elsewhere`` once made ``run`` write the SEG, SR,
  release rows, previews and DONE.json outside ``--out``: the value is now one encoded folder
  name inside ``--out`` (:func:`omas_idc.paths.path_part`).
- A SeriesInstanceUID that is an absolute path once made ``run`` delete that folder (the
  staging folder of the series): a UID that is not a DICOM UID is now refused (a
  ``SelectionError``, reason ``invalid-uid``, final) and the run goes on with the other series.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omas_idc.paths import path_part
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef, write_selection


def _traversal(target: Path) -> str:
    """A value that, used as a path part anywhere below ``/``, names ``target``."""
    return "../" * 24 + str(target).lstrip("/")


def test_a_path_like_patient_id_stays_one_folder_inside_the_output(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
) -> None:
    good, _ = one_series
    elsewhere = tmp_path / "elsewhere"
    hostile = replace(good, patient_id=_traversal(elsewhere))
    selection = tmp_path / "selection.parquet"
    write_selection([hostile], selection)
    out, work = tmp_path / "out", tmp_path / "work"
    before = omas.tree(tmp_path, skip=(out, work))

    result = omas.run(omas.args(selection, threshold_model, out, work), s3_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not elsewhere.exists()
    assert omas.tree(tmp_path, skip=(out, work)) == before
    (marker,) = out.rglob("DONE.json")
    folder = marker.parent
    assert folder.relative_to(out).parts == (
        "phantom_collection",
        path_part(hostile.patient_id),
        good.study_instance_uid,
        good.series_instance_uid,
    )
    assert {"sr.dcm", "qa.parquet"} <= {p.name for p in folder.iterdir()}
    # Every file of the run lies below --out or the work folder, resolved.
    for root in (out, work):
        for path in root.rglob("*"):
            assert path.resolve().is_relative_to(root.resolve()), path


def test_a_path_like_series_uid_is_refused_and_the_run_goes_on(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
) -> None:
    good, _ = one_series
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "precious.txt").write_text("keep me")
    hostile = replace(good, series_instance_uid=str(sentinel))
    selection = tmp_path / "selection.parquet"
    write_selection([hostile, good], selection)
    out, work = tmp_path / "out", tmp_path / "work"
    before = omas.tree(tmp_path, skip=(out, work))

    result = omas.run(omas.args(selection, threshold_model, out, work), s3_server)
    assert result.returncode == 0, result.stdout + result.stderr  # a refusal is final
    assert (sentinel / "precious.txt").read_text() == "keep me"
    assert omas.tree(tmp_path, skip=(out, work)) == before
    with RunState(work / "state.sqlite") as state:
        rows = {r.series_uid: r for r in state.all_series()}
    refused = rows[str(sentinel)]
    assert (refused.status, refused.error_class, refused.reason) == (
        "refused",
        "SelectionError",
        "invalid-uid",
    )
    assert refused.attempts == 0  # refused before any fetch
    assert str(sentinel) in refused.message
    assert rows[good.series_instance_uid].status == "done"  # one bad row never stops a run
    report: dict[str, Any] = json.loads((work / "run-report-0-of-1.json").read_text())
    assert (report["done"], report["failed"]) == (1, 1)
    assert "SelectionError (invalid-uid)" in result.stdout
    (marker,) = out.rglob("DONE.json")
    assert marker.parent.name == good.series_instance_uid
    for root in (out, work):
        for path in root.rglob("*"):
            assert path.resolve().is_relative_to(root.resolve()), path
