"""One run per work folder: a second ``omas-idc run`` on a work folder in use stops at once
(exit 2, naming the first run's PID), and a run killed with SIGKILL never blocks the next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from omas_idc.errors import ConfigurationError
from omas_idc.run.lock import LOCK_NAME, work_lock
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef


def _wait_for_holder(lock: Path, process: subprocess.Popen[Any], timeout: float = 120) -> None:
    """Wait until ``process`` has written its PID into the lock file (it then holds the lock)."""
    deadline = time.monotonic() + timeout
    while not (lock.is_file() and f"PID {process.pid} " in lock.read_text()):
        assert process.poll() is None, "the first run ended before it took the lock"
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.02)


def test_a_second_run_stops_at_once_naming_the_first_and_a_killed_run_blocks_nothing(
    omas: SimpleNamespace,
    one_series: tuple[SeriesRef, Path],
    threshold_model: Path,
    s3_server: str,
    tmp_path: Path,
) -> None:
    ref, selection = one_series
    out, work = tmp_path / "out", tmp_path / "work"
    args = omas.args(selection, threshold_model, out, work)
    first = subprocess.Popen(
        [sys.executable, "-m", "omas_idc.cli", *args, "--endpoint-url", s3_server],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_holder(work / LOCK_NAME, first)
        # Frozen while it holds the lock: the second run meets it whatever the timing.
        os.kill(first.pid, signal.SIGSTOP)
        started = time.monotonic()
        second = omas.run(args, s3_server)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"PID {first.pid}" in second.stderr
        assert "ConfigurationError (work-locked)" in second.stderr
        assert "in use by another omas-idc run" in second.stderr
        assert "Traceback" not in second.stderr
        assert time.monotonic() - started < 60  # at once: no model loaded, nothing fetched
        assert not (work / "dicom").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    third = omas.run(args, s3_server)
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"PID {first.pid}" not in (work / LOCK_NAME).read_text()  # the new holder's PID
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["state"]["done"] == 1
    with RunState(work / "state.sqlite") as state:
        (row,) = state.all_series()
    assert (row.series_uid, row.status) == (ref.series_instance_uid, "done")
    assert len(list(out.rglob("DONE.json"))) == 1  # the state agrees with the markers


def test_the_lock_is_reentrant_in_one_process_and_exclusive_between_processes(
    tmp_path: Path,
) -> None:
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from omas_idc.run.lock import work_lock\n"
        "with work_lock(Path(sys.argv[1])):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    with work_lock(tmp_path), work_lock(tmp_path):  # the CLI and execute_run, nested
        other = subprocess.run(
            [sys.executable, "-c", holder, str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert other.returncode != 0
        assert f"PID {os.getpid()}" in other.stderr
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigurationError, match=f"PID {process.pid} ") as refused:
            with work_lock(tmp_path):
                pass
        assert refused.value.reason == "work-locked"
    finally:
        process.kill()
        process.wait()
    with work_lock(tmp_path):  # the OS released the killed holder's lock
        assert f"PID {os.getpid()} " in (tmp_path / LOCK_NAME).read_text()
