"""``omas-idc run`` end to end against a loopback S3 server holding series in IDC's layout.

Five series: three good phantoms, one with a missing slice (refused: gap) and one that is not
a CT volume (refused: Secondary Capture). The selection is a saved selection file (the local
index table). The model is a small threshold network in nnU-Net's format.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

import omas_idc
from omas_idc.engine.model import load_model
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef, write_selection

OUTPUT_BUCKET = "omas-release"

TIMESTAMP = "2026-05-01T00:00:00"


@pytest.fixture(scope="module")
def selection(
    s3_client: Any, tmp_path_factory: pytest.TempPathFactory, idc_upload: Any
) -> dict[str, Any]:
    upload_files, upload_series, grid = idc_upload
    root = tmp_path_factory.mktemp("inputs")
    good = [upload_series(s3_client, root / f"good{seed}", seed) for seed in (11, 12, 13)]
    broken = upload_series(s3_client, root / "broken", 14, missing_slice=4)
    # A Secondary Capture with Modality CT: an object in the index that is not a CT volume.
    phantom = make_phantom(root / "sc", PhantomOptions(seed=15, **grid))  # type: ignore[arg-type]
    series_uid = generate_uid(entropy_srcs=["sc-series"])
    sc_files = []
    for i, path in enumerate(phantom.files[:3]):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.SeriesInstanceUID = series_uid
        out = root / "sc" / f"sc{i}.dcm"
        ds.save_as(out)
        sc_files.append(out)
    not_ct = upload_files(s3_client, sc_files, 15, series_uid, phantom.study_instance_uid)
    path = root / "selection.parquet"
    write_selection([*good, broken, not_ct], path)
    return {"path": path, "good": good, "broken": broken, "not_ct": not_ct}


def _run(args: list[str], endpoint: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "omas_idc.cli", "run", *args, "--endpoint-url", endpoint]
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def _command(selection: Path, model: Path, out: str, work: Path) -> list[str]:
    return [
        "--selection",
        str(selection),
        "--model",
        str(model),
        "--out",
        out,
        "--work",
        str(work),
        "--device",
        "cpu",
        "--timestamp",
        TIMESTAMP,
    ]


def _objects(client: Any, prefix: str) -> dict[str, Any]:
    listing = client.list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix=prefix)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])}


def _series_prefix(prefix: str, ref: SeriesRef) -> str:
    return f"{prefix}/{ref.collection_id}/{ref.patient_id}/{ref.study_instance_uid}/" + (
        ref.series_instance_uid
    )


def test_run_writes_outputs_records_refusals_and_a_second_run_does_nothing(
    selection: dict[str, Any],
    threshold_model: Path,
    s3_server: str,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    out = f"s3://{OUTPUT_BUCKET}/first"
    work = tmp_path / "work"
    first = _run(_command(selection["path"], threshold_model, out, work), s3_server)
    assert first.returncode == 0, first.stdout + first.stderr  # refusals are final, not errors
    for ref in selection["good"]:
        names = {k.rsplit("/", 1)[1] for k in _objects(s3_client, _series_prefix("first", ref))}
        assert {"sr.dcm", "qa.parquet", "DONE.json"} <= names, names
        assert any(n.startswith("seg_") for n in names)
    with RunState(work / "state.sqlite") as state:
        rows = {r.series_uid: r for r in state.all_series()}
    broken = rows[selection["broken"].series_instance_uid]
    assert (broken.status, broken.error_class, broken.reason) == (
        "refused",
        "SeriesGeometryError",
        "gap",
    )
    not_ct = rows[selection["not_ct"].series_instance_uid]
    assert (not_ct.status, not_ct.error_class) == ("refused", "UnsupportedSeriesError")
    assert sum(r.status == "done" for r in rows.values()) == 3
    # The JSON run report says what ran, where, with what, and where the time went.
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["device"] == "cpu"
    assert report["omas_idc_version"] == omas_idc.__version__
    assert report["versions"]["torch"] == importlib.metadata.version("torch")
    card = load_model(threshold_model).card
    assert (report["model"]["name"], report["model"]["version"]) == (card.name, card.version)
    assert (report["processed"], report["done"], report["failed"]) == (5, 3, 2)
    assert {k: n for k, n in report["state"].items() if n} == {"done": 3, "refused": 2}
    for stage in ("fetch", "read", "segment", "encode", "qa", "publish"):
        assert report["stage_seconds"][stage] > 0, stage
    assert {f["error_class"] for f in report["failures"]} == {
        "SeriesGeometryError",
        "UnsupportedSeriesError",
    }
    # Downloads of finished series are deleted (a small disk can process a large collection);
    # those of refused series stay for inspection.
    downloaded = {p.name for p in (work / "dicom").rglob("CT_*") if p.is_dir()}
    refused = {f"CT_{selection[k].series_instance_uid}" for k in ("broken", "not_ct")}
    assert downloaded == refused
    status = subprocess.run(
        [sys.executable, "-m", "omas_idc.cli", "status", str(work)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "3 done" in status
    assert "2 refused" in status
    assert "SeriesGeometryError (gap)" in status
    # The shard's release table holds rows of exactly the good series.
    table_path = tmp_path / "release.parquet"
    s3_client.download_file(OUTPUT_BUCKET, "first/release/shard-0-of-1.parquet", str(table_path))
    table = pq.read_table(table_path).to_pydict()
    assert set(table["source_series_instance_uid"]) == {
        r.series_instance_uid for r in selection["good"]
    }

    before = _objects(s3_client, "first/phantom_collection")
    second = _run(_command(selection["path"], threshold_model, out, work), s3_server)
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["processed"] == 0
    assert report["skipped_done"] == 3
    assert _objects(s3_client, "first/phantom_collection") == before


def _series_files(root: Path) -> dict[str, bytes]:
    base = root / "phantom_collection"
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def test_a_killed_run_resumes_to_byte_identical_outputs(
    selection: dict[str, Any], threshold_model: Path, s3_server: str, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    done = _run(
        _command(selection["path"], threshold_model, str(straight), tmp_path / "w1"), s3_server
    )
    assert done.returncode == 0, done.stdout + done.stderr

    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "omas_idc.cli",
        "run",
        *_command(selection["path"], threshold_model, str(killed), tmp_path / "w2"),
        "--endpoint-url",
        s3_server,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(killed.rglob("DONE.json")):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    markers_at_kill = len(list(killed.rglob("DONE.json")))
    assert markers_at_kill < len(selection["good"]), "the run finished before the kill"

    resumed = _run(
        _command(selection["path"], threshold_model, str(killed), tmp_path / "w2"), s3_server
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((tmp_path / "w2" / "run-report-0-of-1.json").read_text())
    assert report["skipped_done"] == markers_at_kill  # nothing finished was redone
    assert _series_files(killed) == _series_files(straight)


def test_a_fresh_machine_redoes_nothing_that_has_a_done_marker(
    selection: dict[str, Any],
    threshold_model: Path,
    s3_server: str,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    out = f"s3://{OUTPUT_BUCKET}/fresh"
    work = tmp_path / "work"
    first = _run(_command(selection["path"], threshold_model, out, work), s3_server)
    assert first.returncode == 0, first.stdout + first.stderr
    before = _objects(s3_client, "fresh/phantom_collection")
    shutil.rmtree(work)  # a pre-empted Cloud Batch VM: the local state is gone
    again = _run(_command(selection["path"], threshold_model, out, work), s3_server)
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["skipped_done"] == 3
    assert report["done"] == 0
    assert _objects(s3_client, "fresh/phantom_collection") == before


def _without_timestamp(command: list[str]) -> list[str]:
    at = command.index("--timestamp")
    return command[:at] + command[at + 2 :]


def test_outputs_of_later_runs_carry_the_first_start_as_content_time(
    selection: dict[str, Any], threshold_model: Path, s3_server: str, tmp_path: Path
) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    command = _without_timestamp(_command(selection["path"], threshold_model, str(out), work))
    first = _run([*command, "--limit", "1"], s3_server)
    assert first.returncode == 0, first.stdout + first.stderr
    time.sleep(1.1)  # the second run starts at a later second
    second = _run(command, s3_server)
    assert second.returncode == 0, second.stdout + second.stderr
    with RunState(work / "state.sqlite") as state:
        stamp = state.get_meta("timestamp")
    assert stamp is not None
    first_start = datetime.fromisoformat(stamp)
    sops = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    assert len({s.SeriesInstanceUID for s in sops}) >= 2 * len(selection["good"])
    for dataset in sops:  # the SEGs and SRs of the first and the second run alike
        assert dataset.ContentDate == first_start.strftime("%Y%m%d")
        assert dataset.ContentTime.startswith(first_start.strftime("%H%M%S"))


def test_batch_task_variables_choose_the_shard(
    selection: dict[str, Any], threshold_model: Path, s3_server: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done: list[set[str]] = []
    for index in (0, 1):
        work = tmp_path / f"work{index}"  # one VM per task
        env = {**os.environ, "BATCH_TASK_INDEX": str(index), "BATCH_TASK_COUNT": "2"}
        result = _run(
            _command(selection["path"], threshold_model, str(out), work), s3_server, env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((work / f"run-report-{index}-of-2.json").read_text())
        assert report["shard"] == [index, 2]
        assert (out / "release" / f"shard-{index}-of-2.parquet").is_file()
        with RunState(work / "state.sqlite") as state:
            rows = state.all_series()
        assert 0 < len(rows) < 5
        done.append({r.series_uid for r in rows if r.status == "done"})
    assert not done[0] & done[1]
    assert done[0] | done[1] == {r.series_instance_uid for r in selection["good"]}


def test_a_failing_series_is_retried_a_bounded_number_of_times(
    selection: dict[str, Any], threshold_model: Path, s3_server: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    # The index lists a series whose objects are not in the bucket (yet): a fetch failure a
    # later run may not see again, so it is retried, but only max_attempts (3) times.
    missing = replace(
        selection["good"][0],
        series_instance_uid=generate_uid(entropy_srcs=["missing-series"]),
        crdc_series_uuid="00000000-0000-4000-8000-000000000000",
    )
    path = tmp_path / "selection.parquet"
    write_selection([missing], path)
    work = tmp_path / "work"
    command = _command(path, threshold_model, str(tmp_path / "out"), work)
    for attempt in (1, 2, 3, 4):
        result = _run(command, s3_server)
        assert result.returncode == 1, result.stdout + result.stderr  # retryable: exit 1
        report = json.loads((work / "run-report-0-of-1.json").read_text())
        assert report["processed"] == (1 if attempt <= 3 else 0)
        with RunState(work / "state.sqlite") as state:
            (row,) = state.all_series()
        assert (row.status, row.error_class, row.reason) == ("failed", "FetchError", "not-found")
        assert row.attempts == min(attempt, 3)


def test_the_configured_qa_floor_reaches_the_release_table(
    selection: dict[str, Any], threshold_model: Path, s3_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "selection.parquet"
    write_selection(selection["good"][:1], path)
    config = tmp_path / "release.toml"
    config.write_text('[release]\nname = "floor-test"\n\n[qa]\nmin_volume_ml = 1e9\n')
    out = tmp_path / "out"
    command = _command(path, threshold_model, str(out), tmp_path / "work")
    result = _run([*command, "--config", str(config)], s3_server)
    assert result.returncode == 0, result.stdout + result.stderr
    (table_path,) = out.rglob("qa.parquet")
    rows = [r for r in pq.read_table(table_path).to_pylist() if r["status"] == "present"]
    unranged = [r for r in rows if r["plausible_min_ml"] is None]
    assert unranged  # the threshold model's vertebra has no cited range
    for row in unranged:  # under a floor of 1e9 mL every one of them is flagged
        assert row["flag_small_volume"], row["structure"]
        assert "volume_below_minimum" in row["reasons"]
    config.write_text("[qa]\nmin_volume_ml = -1\n")
    refused = _run([*command, "--config", str(config)], s3_server)
    assert refused.returncode == 2
    assert "min_volume_ml" in refused.stderr
