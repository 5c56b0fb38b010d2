"""Where a run's outputs go: a folder (local, or a gcsfuse-mounted bucket) or a bucket URL.

Per series the outputs are put first and a small ``DONE.json`` marker last; a series counts as
finished only where its marker exists. In a local folder each file is written to a temporary
name and renamed into place, so no reader sees a half-written file. A bucket mounted by gcsfuse
has no atomic rename, and an object store has none at all: there the marker written last is
what makes a series complete, and a run on a fresh machine (a pre-empted Cloud Batch task)
rebuilds its state from the markers (:meth:`OutputStore.done_series`).

Layout below the root: ``<collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/``
holding the SEG(s), the SR, the series' release-table rows, preview PNGs and ``DONE.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from omas_idc.errors import ConfigurationError, OmasIdcError

__all__ = ["DONE_MARKER", "FolderStore", "ObjectStore", "OutputStore", "PublishError", "open_store"]

logger = logging.getLogger(__name__)

DONE_MARKER = "DONE.json"


class PublishError(OmasIdcError):
    """Outputs could not be put into the output location."""

    default_reason = "publish"


class OutputStore(Protocol):
    """What the run needs from an output location."""

    @property
    def root(self) -> str:
        """The folder or bucket URL."""
        ...

    def publish(
        self, prefix: PurePosixPath, files: Mapping[str, Path], marker: Mapping[str, Any]
    ) -> list[str]:
        """Put ``files`` (name -> local path) below ``prefix``, then the marker; return URLs."""
        ...

    def done_series(self) -> dict[str, list[str]]:
        """SeriesInstanceUID -> output URLs of every series with a marker."""
        ...

    def put_file(self, relative: PurePosixPath, source: Path) -> str:
        """Put one file (e.g. a shard's release table) at ``relative``; return its URL."""
        ...

    def get_file(self, relative: PurePosixPath, target: Path) -> Path:
        """Copy the file at ``relative`` to the local ``target``."""
        ...


def _atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _marker_bytes(marker: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(marker), sort_keys=True, indent=1) + "\n").encode()


@dataclass(frozen=True)
class FolderStore:
    """Outputs in a folder (local disk or a gcsfuse mount)."""

    root: str

    def publish(
        self, prefix: PurePosixPath, files: Mapping[str, Path], marker: Mapping[str, Any]
    ) -> list[str]:
        """Copy each file into place (temporary name, then rename), the marker last."""
        folder = Path(self.root) / prefix
        urls = []
        for name, source in sorted(files.items()):
            _atomic_copy(source, folder / name)
            urls.append(str(folder / name))
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(_marker_bytes({**marker, "outputs": sorted(files)}))
        try:
            _atomic_copy(Path(handle.name), folder / DONE_MARKER)
        finally:
            Path(handle.name).unlink(missing_ok=True)
        return urls

    def done_series(self) -> dict[str, list[str]]:
        """Series with a readable marker below the root."""
        done: dict[str, list[str]] = {}
        root = Path(self.root)
        if not root.is_dir():
            return done
        for marker in root.rglob(DONE_MARKER):
            try:
                content = json.loads(marker.read_text())
                uid = str(content["source_series_instance_uid"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger.warning("ignoring unreadable marker %s: %s", marker, err)
                continue
            done[uid] = [str(marker.parent / name) for name in content.get("outputs", [])]
        return done

    def put_file(self, relative: PurePosixPath, source: Path) -> str:
        """Copy one file into place atomically."""
        target = Path(self.root) / relative
        _atomic_copy(source, target)
        return str(target)

    def get_file(self, relative: PurePosixPath, target: Path) -> Path:
        """Copy one file out of the store."""
        source = Path(self.root) / relative
        if not source.is_file():
            raise PublishError(f"{source} does not exist in the output folder", reason="missing")
        _atomic_copy(source, target)
        return target


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

    def publish(
        self, prefix: PurePosixPath, files: Mapping[str, Path], marker: Mapping[str, Any]
    ) -> list[str]:
        """Upload each file, then the marker."""
        urls = [self._upload(source, f"{prefix}/{name}") for name, source in sorted(files.items())]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / DONE_MARKER
            path.write_bytes(_marker_bytes({**marker, "outputs": sorted(files)}))
            self._upload(path, f"{prefix}/{DONE_MARKER}")
        return urls

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

    def put_file(self, relative: PurePosixPath, source: Path) -> str:
        """Upload one file."""
        return self._upload(source, str(relative))

    def get_file(self, relative: PurePosixPath, target: Path) -> Path:
        """Download one file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        done = self._run("cp", self._s3_url(str(relative)), str(target))
        if done.returncode != 0:
            raise PublishError(
                f"could not download {relative} from {self.root}: {done.stderr.strip()[-500:]}",
                reason="download",
            )
        return target


def open_store(root: str | Path, endpoint_url: str | None = None) -> OutputStore:
    """The store for an output location: a bucket URL or a folder."""
    text = str(root)
    if text.startswith(("s3://", "gs://")):
        return ObjectStore(text, endpoint_url=endpoint_url)
    if "://" in text:
        raise ConfigurationError(
            f"unsupported output location {text!r}: use a folder, s3://... or gs://...",
            reason="output-url",
        )
    return FolderStore(str(Path(text).resolve()))
