"""Outputs in a folder: local disk or a gcsfuse-mounted bucket.

Each file is copied to a temporary name in its folder and renamed into place
(:mod:`omas_idc.atomic`), so no reader sees a half-written file; a gcsfuse mount has no atomic
rename, and there the marker written last is what makes a series complete. A write the file
system refuses (disk full, read-only, permissions) is a :class:`~omas_idc.errors.PublishError`
whose reason names the cause (``no-space``, ``read-only``, ``permission``, ``io``).
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omas_idc.atomic import atomic_copy, atomic_write_bytes
from omas_idc.errors import PublishError
from omas_idc.publish.layout import output_path
from omas_idc.publish.store import DONE_MARKER, SeriesOutput, marker_bytes
from omas_idc.series_ref import SeriesRef

__all__ = ["FolderStore"]

logger = logging.getLogger(__name__)

_REASONS = {
    errno.ENOSPC: "no-space",
    errno.EDQUOT: "no-space",
    errno.EROFS: "read-only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
}


def _write_error(err: OSError, target: Path, ref: SeriesRef | None) -> PublishError:
    """The classified error of a write the output folder refused."""
    reason = _REASONS.get(err.errno or 0, "io")
    return PublishError(
        f"cannot write {target} into the output folder: {err.strerror or err}. Free space or "
        "make the folder writable, then run the same command again: series without a "
        "DONE.json marker are redone.",
        series_instance_uid=None if ref is None else ref.series_instance_uid,
        reason=reason,
    )


@dataclass(frozen=True)
class FolderStore:
    """Outputs in a folder (local disk or a gcsfuse mount)."""

    root: str

    def _target(self, ref: SeriesRef | None, name: str) -> Path:
        return Path(self.root, output_path(ref, name))

    def put_object(self, ref: SeriesRef, output: SeriesOutput) -> str:
        """Copy a DICOM object into the series' folder atomically."""
        return self.put_side_file(ref, output.name, output.path)

    def put_side_file(self, ref: SeriesRef | None, name: str, source: Path) -> str:
        """Copy one file into place atomically."""
        target = self._target(ref, name)
        try:
            atomic_copy(source, target)
        except OSError as err:
            raise _write_error(err, target, ref) from err
        return str(target)

    def get_side_file(self, ref: SeriesRef | None, name: str, target: Path) -> Path:
        """Copy one file out of the store."""
        source = self._target(ref, name)
        if not source.is_file():
            raise PublishError(f"{source} does not exist in the output folder", reason="missing")
        atomic_copy(source, target)
        return target

    def mark_done(self, ref: SeriesRef, marker: Mapping[str, Any]) -> str:
        """Write the series' ``DONE.json`` atomically."""
        target = self._target(ref, DONE_MARKER)
        try:
            atomic_write_bytes(target, marker_bytes(marker))
        except OSError as err:
            raise _write_error(err, target, ref) from err
        return str(target)

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
