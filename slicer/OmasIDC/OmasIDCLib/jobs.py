"""A run of omas-idc commands in a subprocess, polled without blocking the GUI thread.

Slicer's GUI thread must never wait for a segmentation: the Widget polls :meth:`Job.poll` from
a ``QTimer`` (and the tests call :meth:`Job.wait`). Each step is one omas-idc command; its
output goes to a log file (a pipe could fill up and stall the process). A failed step stops
the run and is reported by omas-idc's own classified error line
(``ErrorClass (reason): message``, see ``omas_idc.cli.errors``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Job", "JobFailed", "JobState", "Step", "classified_error"]

#: omas-idc's classified error line: ``SeriesGeometryError (gantry-tilt): ...``.
_CLASSIFIED = re.compile(r"^([A-Z]\w*(?:Error|Exception|Bug)) \(([^)]*)\): (.+)$")


class JobFailed(RuntimeError):
    """A step of a job failed; the message is omas-idc's classified error line."""

    def __init__(self, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True)
class Step:
    """One command of a job: what the user sees, and the command line.

    ``argv`` may be a function, called when the step starts, for a command that names the
    files of an earlier step (the SEG files the QA step reads).
    """

    title: str
    argv: Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class JobState:
    """Where a job stands: ``status`` is running, done, failed or cancelled."""

    status: str
    step: int
    steps: int
    title: str
    message: str = ""
    error_class: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job ended (done, failed or cancelled)."""
        return self.status != "running"

    @property
    def progress(self) -> float:
        """Fraction of the steps finished (0..1)."""
        if self.status == "done":
            return 1.0
        return self.step / max(self.steps, 1)


def classified_error(log_text: str) -> tuple[str, str | None]:
    """The last classified omas-idc error line in ``log_text``, and its error class.

    Falls back to the command line's usage error (typer's framed message, frame removed) or
    the last non-empty line (a traceback's last line) where none is found.
    """
    lines = [line.strip(" \u2502\u256d\u256e\u2570\u256f\u2500") for line in log_text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Error")]
    for line in reversed(lines):
        match = _CLASSIFIED.match(line)
        if match:
            return line, match.group(1)
    return (lines[-1] if lines else "the command failed without a message"), None


class Job:
    """Run ``steps`` one after the other in a subprocess each.

    Parameters
    ----------
    steps
        The commands.
    log_dir
        Folder for the steps' output (``step-N.log``), kept for the user.
    env
        Extra environment variables for the commands.
    on_step_done
        Called with the step's index after a step succeeded, before the next starts (in the
        polling thread), e.g. to build the next step's arguments from this step's files.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        log_dir: Path,
        env: dict[str, str] | None = None,
        on_step_done: Callable[[int], None] | None = None,
    ) -> None:
        self.steps = list(steps)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        self._on_step_done = on_step_done
        self._index = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._state = JobState("running", 0, len(self.steps), self._title(0))
        self._start()

    def _title(self, index: int) -> str:
        return self.steps[index].title if index < len(self.steps) else "done"

    def log_path(self, index: int) -> Path:
        """The output file of step ``index``."""
        return self.log_dir / f"step-{index + 1}.log"

    def _start(self) -> None:
        if self._index >= len(self.steps):
            self._state = JobState("done", len(self.steps), len(self.steps), "done")
            return
        step = self.steps[self._index]
        argv = list(step.argv() if callable(step.argv) else step.argv)
        log = self.log_path(self._index).open("wb")
        try:
            self._process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                start_new_session=True,  # cancel stops the command and its children
            )
        finally:
            log.close()
        self._state = JobState("running", self._index, len(self.steps), step.title)

    def poll(self) -> JobState:
        """Check the running step without waiting; start the next one when it ended."""
        if self._state.finished or self._process is None:
            return self._state
        code = self._process.poll()
        if code is None:
            return self._state
        text = self.log_path(self._index).read_text(encoding="utf-8", errors="replace")
        if code != 0:
            message, error_class = classified_error(text)
            self._state = JobState(
                "failed",
                self._index,
                len(self.steps),
                self.steps[self._index].title,
                message,
                error_class,
            )
            return self._state
        if self._on_step_done is not None:
            self._on_step_done(self._index)
        self._index += 1
        self._start()
        return self._state

    def cancel(self) -> JobState:
        """Stop the running command (SIGTERM, then SIGKILL after 5 s)."""
        if self._state.finished or self._process is None:
            return self._state
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        except ProcessLookupError:
            pass
        self._state = JobState(
            "cancelled",
            self._index,
            len(self.steps),
            self.steps[self._index].title,
            "cancelled by the user",
        )
        return self._state

    def wait(self, interval: float = 0.2, timeout: float | None = None) -> JobState:
        """Poll until the job ends (for scripts and tests; the Widget polls from a timer).

        Raises
        ------
        JobFailed
            If a step failed (with omas-idc's classified message).
        TimeoutError
            If ``timeout`` seconds passed first (the job is cancelled).
        """
        start = time.monotonic()
        state = self.poll()
        while not state.finished:
            if timeout is not None and time.monotonic() - start > timeout:
                self.cancel()
                raise TimeoutError(f"{state.title} did not finish within {timeout} s")
            time.sleep(interval)
            state = self.poll()
        if state.status == "failed":
            raise JobFailed(state.message, state.error_class)
        return state
