"""Hostile selections: values that look like paths never make fetch touch anything outside.

Each test is the attack: a saved selection (or a planted link) that, taken at its word, would
make ``omas-idc fetch`` delete or write files in a sentinel folder ``victim`` beside the
download root. The sentinel must come out unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.fetch import FetchOptions, fetch_selection, fetch_series, is_verified
from omas_idc.series_ref import read_selection, write_selection


def options(endpoint: str) -> FetchOptions:
    return FetchOptions(endpoint_url=endpoint, attempts=1, backoff_s=0.01, s5cmd_retry_count=0)


def sentinel(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (victim / "sub").mkdir()
    (victim / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return victim


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_path_like_uids_in_a_saved_selection_are_refused_and_reported(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    """A UID that climbs to ``victim`` would make the stray-file cleanup empty that folder."""
    victim = sentinel(tmp_path)
    before = snapshot(victim)
    good = upload_phantom(seed=41).ref
    # Valid bucket objects (the listing succeeds), but the UID climbs from the series folder
    # <out>/<collection>/<patient>/<study>/CT_<uid> to <tmp>/victim.
    climbing = dataclasses.replace(good, series_instance_uid="/../../../../../victim")
    absolute = dataclasses.replace(good, series_instance_uid=str(victim))
    bad_uuid = dataclasses.replace(good, crdc_series_uuid="../../idc-open-data-two/x")
    bad_study = dataclasses.replace(good, study_instance_uid="1.2.3/../../..")
    selection = tmp_path / "selection.parquet"
    write_selection([good, climbing, absolute, bad_uuid, bad_study], selection)
    out = tmp_path / "out"

    results = fetch_selection(read_selection(selection), out, options(s3_endpoint))

    assert [r.status for r in results] == ["downloaded"] + ["failed"] * 4
    assert [(r.error_class, r.reason) for r in results[1:]] == [
        ("SelectionError", "invalid-uid"),
        ("SelectionError", "invalid-uid"),
        ("SelectionError", "invalid-uuid"),
        ("SelectionError", "invalid-uid"),
    ]
    # Each message names the row and the value, so the user can find and correct it.
    assert "selection row 1" in (results[1].message or "")
    assert "'/../../../../../victim'" in (results[1].message or "")
    assert f"{str(victim)!r}" in (results[2].message or "")
    assert "crdc_series_uuid in selection row 3" in (results[3].message or "")
    assert "StudyInstanceUID in selection row 4" in (results[4].message or "")
    assert snapshot(victim) == before
    assert is_verified(out, good)
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_cli_fetch_reports_a_bad_row_and_fetches_the_others(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    victim = sentinel(tmp_path)
    before = snapshot(victim)
    good = upload_phantom(seed=42).ref
    climbing = dataclasses.replace(good, series_instance_uid="/../../../../../victim")
    # Markup-like text is shown as it is (rich would fail on the unmatched closing tag).
    markup = dataclasses.replace(good, series_instance_uid="[/red]")
    selection = tmp_path / "selection.parquet"
    write_selection([climbing, markup, good], selection)
    args = ["fetch", str(selection), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(
        app, [*args, "--endpoint-url", s3_endpoint, "--attempts", "1"], terminal_width=250
    )

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert "1 downloaded, 0 cached, 2 failed" in result.output
    assert "3/3" in result.output
    assert "failed [/red]" in result.output  # the progress line shows the UID as it is
    assert snapshot(victim) == before


def test_path_like_patient_and_collection_stay_inside_the_download_root(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    """Free-text values are encoded as one folder name each, never followed."""
    victim = sentinel(tmp_path)
    before = snapshot(victim)
    ref = dataclasses.replace(
        upload_phantom(seed=43).ref, patient_id="../../../victim", collection_id="../.."
    )
    out = tmp_path / "out"

    result = fetch_series(ref, out, options(s3_endpoint))

    assert result.status == "downloaded"
    assert result.path.resolve().is_relative_to(out.resolve())
    assert result.path.relative_to(out).parts[:2] == ("%2E.%2F..", "%2E.%2F..%2F..%2Fvictim")
    assert len(list(result.path.glob("*.dcm"))) == ref.instance_count
    assert snapshot(victim) == before
    assert is_verified(out, ref)


def test_a_planted_link_in_the_download_root_is_not_followed(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    """A series folder that is a link to elsewhere is refused before anything is removed.

    Without the check the clean-up of an interrupted download would delete every file of the
    link's target that is not an object of the series.
    """
    victim = sentinel(tmp_path)
    before = snapshot(victim)
    ref = upload_phantom(seed=44).ref
    out = tmp_path / "out"
    series_dir = out / ref.relative_dir()
    series_dir.parent.mkdir(parents=True)
    series_dir.symlink_to(victim, target_is_directory=True)

    (result,) = fetch_selection([ref], out, options(s3_endpoint))

    assert (result.status, result.error_class, result.reason) == (
        "failed",
        "FetchError",
        "unsafe-path",
    )
    assert str(victim) in (result.message or "")
    assert snapshot(victim) == before
