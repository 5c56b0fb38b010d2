"""Fetch against a real S3 protocol server (moto_server on loopback) with the real s5cmd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.errors import FetchError
from omas_idc.fetch import FetchOptions, fetch_selection, fetch_series, is_verified
from omas_idc.series_ref import write_selection


def options(endpoint: str, **kwargs: Any) -> FetchOptions:
    base = {"endpoint_url": endpoint, "attempts": 2, "backoff_s": 0.01, "s5cmd_retry_count": 0}
    return FetchOptions(**{**base, **kwargs})


def test_series_downloads_in_idc_index_layout_and_verifies(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    series = upload_phantom(seed=1)
    ref = series.ref
    result = fetch_series(ref, tmp_path, options(s3_endpoint))

    # idc-index's DOWNLOAD_HIERARCHY_DEFAULT:
    # %collection_id/%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID
    expected_dir = (
        tmp_path
        / ref.collection_id
        / ref.patient_id
        / ref.study_instance_uid
        / f"CT_{ref.series_instance_uid}"
    )
    assert result.ok
    assert result.status == "downloaded"
    assert result.path == expected_dir
    assert result.files_downloaded == ref.instance_count
    assert sorted(p.name for p in expected_dir.iterdir()) == sorted(series.objects)
    for name, content in series.objects.items():
        assert (expected_dir / name).read_bytes() == content
        assert pydicom.dcmread(expected_dir / name).SeriesInstanceUID == ref.series_instance_uid
    assert is_verified(tmp_path, ref)


def test_rerun_downloads_nothing_new(s3_endpoint: str, upload_phantom: Any, tmp_path: Path) -> None:
    refs = [upload_phantom(seed=2).ref, upload_phantom(seed=3).ref]
    first = fetch_selection(refs, tmp_path, options(s3_endpoint))
    assert [r.status for r in first] == ["downloaded", "downloaded"]
    files = sorted(p for p in tmp_path.rglob("*.dcm"))
    mtimes = [p.stat().st_mtime_ns for p in files]

    # An unreachable endpoint proves that a verified series needs no request at all.
    again = fetch_selection(refs, tmp_path, options("http://127.0.0.1:9"))
    assert [(r.status, r.files_downloaded) for r in again] == [("cached", 0), ("cached", 0)]
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.rglob("*.dcm"))] == mtimes


def test_interrupted_download_resumes_only_the_damaged_file(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    series = upload_phantom(seed=4)
    fetch_series(series.ref, tmp_path, options(s3_endpoint))
    victim = sorted((tmp_path / series.ref.relative_dir()).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])  # as left by a killed download

    result = fetch_series(series.ref, tmp_path, options(s3_endpoint))
    assert result.status == "downloaded"
    assert result.files_downloaded == 1
    assert victim.read_bytes() == series.objects[victim.name]


def test_a_killed_download_leaves_no_stray_files_behind(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    """s5cmd writes to ``<object><digits>`` first: a SIGKILL leaves such files behind."""
    series = upload_phantom(seed=41)  # a seed no other test uploads
    folder = tmp_path / series.ref.relative_dir()
    folder.mkdir(parents=True)
    first, second = sorted(series.objects)[:2]
    (folder / first).write_bytes(series.objects[first])
    stray = folder / f"{second}3118911713"
    stray.write_bytes(series.objects[second][:50])

    result = fetch_series(series.ref, tmp_path, options(s3_endpoint))
    assert result.status == "downloaded"
    assert not stray.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(series.objects)


def test_bad_series_fail_with_their_reason_and_others_still_download(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    good = upload_phantom(seed=5).ref
    missing = upload_phantom(seed=6, damage="missing").ref
    truncated = upload_phantom(seed=7, damage="truncated").ref
    results = fetch_selection([missing, good, truncated], tmp_path, options(s3_endpoint))
    by_uid = {r.series_instance_uid: r for r in results}

    assert by_uid[good.series_instance_uid].status == "downloaded"
    assert is_verified(tmp_path, good)

    failed_missing = by_uid[missing.series_instance_uid]
    assert (failed_missing.status, failed_missing.error_class, failed_missing.reason) == (
        "failed",
        "FetchError",
        "count-mismatch",
    )
    assert f"bucket lists {missing.instance_count - 1} objects" in (failed_missing.message or "")
    assert missing.series_instance_uid in (failed_missing.message or "")

    failed_truncated = by_uid[truncated.series_instance_uid]
    assert (failed_truncated.status, failed_truncated.reason) == ("failed", "invalid-dicom")
    assert "truncated" in (failed_truncated.message or "")
    assert not is_verified(tmp_path, truncated)


def test_unreachable_endpoint_is_a_fetch_error_per_series(
    upload_phantom: Any, closed_endpoint: str, tmp_path: Path
) -> None:
    refs = [upload_phantom(seed=8).ref, upload_phantom(seed=9).ref]
    closed = closed_endpoint
    results = fetch_selection(refs, tmp_path, options(closed))
    assert [(r.status, r.reason) for r in results] == [("failed", "unreachable")] * 2

    with pytest.raises(FetchError, match="could not be reached") as info:
        fetch_series(refs[0], tmp_path, options(closed, attempts=1))
    assert info.value.series_instance_uid == refs[0].series_instance_uid
    assert info.value.reason == "unreachable"


def test_disk_space_is_checked_before_anything_is_downloaded(
    upload_phantom: Any, tmp_path: Path
) -> None:
    import dataclasses

    ref = dataclasses.replace(upload_phantom(seed=10).ref, size_bytes=10**18)
    with pytest.raises(FetchError, match="GB free") as info:
        fetch_selection([ref], tmp_path / "out", FetchOptions(endpoint_url="http://127.0.0.1:9"))
    assert info.value.reason == "disk-space"
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_cli_fetch_reports_failures_and_exit_status(
    s3_endpoint: str, upload_phantom: Any, tmp_path: Path
) -> None:
    good = upload_phantom(seed=11).ref
    missing = upload_phantom(seed=12, damage="missing").ref
    selection = tmp_path / "selection.parquet"
    args = ["fetch", str(selection), "--out", str(tmp_path / "dl"), "--endpoint-url", s3_endpoint]
    args += ["--backoff", "0.01"]

    write_selection([good], selection)
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "1 downloaded" in ok.output

    write_selection([good, missing], selection)
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 1
    assert "1 cached" in failed.output
    assert "1 failed" in failed.output
    assert missing.series_instance_uid in failed.output
