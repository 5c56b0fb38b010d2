"""The run's folders, checked before any work: the work folder, the output location, the
selection file.

A run that cannot publish should say so before it fetches and segments anything: the output
location must exist or be creatable, be writable (a probe file is created and removed) and,
for a folder, have room for at least one series' outputs (:func:`required_free_bytes`). The
work folder must be a local folder (never a FUSE mount, see :func:`check_work_dir`). Every
failure is a :class:`~omas_idc.errors.ConfigurationError` (``omas-idc run`` exits 2).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from omas_idc.errors import ConfigurationError
from omas_idc.series_ref import SeriesRef, read_selection

__all__ = [
    "MIN_FREE_BYTES",
    "OUTPUT_SIZE_FACTOR",
    "check_output_location",
    "check_work_dir",
    "default_work_dir",
    "filesystem_type",
    "is_bucket_url",
    "load_selection_file",
    "required_free_bytes",
]

#: The outputs of a series (SEGs, SR, release rows, previews), estimated from the size of its
#: CT series: RLE-compressed LABELMAP SEGs and the SR are far smaller than the CT, BINARY SEGs
#: of many structures can approach its size; twice the CT leaves room for both.
OUTPUT_SIZE_FACTOR = 2
#: The least free space a local output folder must have, whatever the series' sizes.
MIN_FREE_BYTES = 8 * 1024 * 1024


def is_bucket_url(out: str) -> bool:
    """Whether ``out`` names a bucket or service (``s3://...``) rather than a folder."""
    return "://" in out


def filesystem_type(path: str | Path, mounts: str | None = None) -> str:
    """The type of the file system holding ``path`` (``ext4``, ``fuse.gcsfuse`` ...).

    Read from ``mounts`` (the text of ``/proc/self/mounts``; read from there by default) by
    the longest mount point that contains ``path``; ``""`` where that cannot be told.
    """
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return ""
    target = Path(path).absolute()
    best, kind = -1, ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/self/mounts escapes blanks in mount points as octal (\040).
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def check_work_dir(work_dir: Path, mounts: str | None = None) -> Path:
    """``work_dir``, refused where it is not a folder or lies on a FUSE mount.

    Raises
    ------
    ConfigurationError
        ``reason="work-folder"`` if ``work_dir`` (or a folder above it) is a file;
        ``reason="work-on-fuse"`` if it is on a FUSE file system (a gcsfuse-mounted bucket):
        SQLite's locking and atomic renames, which the run state and the staging of outputs
        rely on, do not hold there.
    """
    for folder in (work_dir, *Path(work_dir).parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigurationError(
                f"the work folder {work_dir} cannot be made: {folder} is a file, not a "
                "folder. Pass --work a folder (existing or new) on local disk.",
                reason="work-folder",
            )
    kind = filesystem_type(work_dir, mounts)
    if kind == "fuse" or kind.startswith("fuse."):
        raise ConfigurationError(
            f"the work folder {work_dir} is on a FUSE mount ({kind}): the run state (SQLite) "
            "and the staging of outputs need a local disk; pass --work on local disk "
            "(the outputs may stay on the mount)",
            reason="work-on-fuse",
        )
    return work_dir


def default_work_dir(out: str, mounts: str | None = None) -> Path:
    """The work folder when none is given: ``OUT/.omas-idc-work`` for a local output folder,
    else (a bucket URL, or a folder on a FUSE mount) ``omas-idc-work/<hash of OUT>`` in the
    current folder, one per output so that two releases never share a state."""
    if not is_bucket_url(out) and not filesystem_type(out, mounts).startswith("fuse"):
        return Path(out) / ".omas-idc-work"
    digest = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return Path("omas-idc-work") / digest


def required_free_bytes(refs: Sequence[SeriesRef]) -> int:
    """The free space a local output folder needs before a run starts: room for the outputs
    of the largest selected series (:data:`OUTPUT_SIZE_FACTOR` times its size), and at least
    :data:`MIN_FREE_BYTES`."""
    largest = max((ref.size_bytes for ref in refs), default=0)
    return max(MIN_FREE_BYTES, OUTPUT_SIZE_FACTOR * largest)


def check_output_location(out: str, required_bytes: int = 0) -> None:
    """Refuse an output folder the run could not publish to, before anything is fetched.

    A bucket URL is not checked here (its credentials and existence show at the first
    listing); a folder must exist or be creatable, take a new file (a probe file is created and
    removed) and have ``required_bytes`` free.

    Parameters
    ----------
    out
        The output folder or bucket URL.
    required_bytes
        The free space needed (:func:`required_free_bytes`); 0 skips the check.

    Raises
    ------
    ConfigurationError
        ``reason`` ``"output-folder"`` (a file, or not creatable), ``"output-not-writable"``
        or ``"output-full"``.
    """
    if is_bucket_url(out):
        return
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(
            f"the output location {out} is a file, not a folder. Pass --out a folder "
            "(existing or new) or a bucket URL.",
            reason="output-folder",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigurationError(
            f"the output folder {out} cannot be created: {err.strerror or err}. Pass --out a "
            "folder this user can create and write to.",
            reason="output-folder",
        ) from err
    try:
        handle, probe = tempfile.mkstemp(prefix=".omas-idc-probe-", dir=folder)
        try:
            os.write(handle, b"probe")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as err:
        raise ConfigurationError(
            f"the output folder {out} is not writable: {err.strerror or err}. Make it "
            "writable (or remount it read-write), or pass --out another folder.",
            reason="output-not-writable",
        ) from err
    if required_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < required_bytes:
            raise ConfigurationError(
                f"the output folder {out} has {free / 2**20:.1f} MiB free, less than the "
                f"{required_bytes / 2**20:.1f} MiB the outputs of one series may need (twice "
                "the largest selected series, at least "
                f"{MIN_FREE_BYTES // 2**20} MiB). Free space there or pass --out another "
                "folder.",
                reason="output-full",
            )


def load_selection_file(path: Path) -> list[SeriesRef]:
    """The series of a saved selection, or a :class:`ConfigurationError` saying what is wrong.

    Raises
    ------
    ConfigurationError
        ``reason="selection-file"`` if ``path`` is missing, not a file, not a parquet file
        or not a selection.
    """
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigurationError(
            f"the selection file {path} {what}. Pass --selection a parquet file written by "
            "`omas-idc select ... --out FILE`.",
            reason="selection-file",
        )
    try:
        return read_selection(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigurationError(
            f"the selection file {path} cannot be read as a selection: {err}. Pass --selection "
            "a parquet file written by `omas-idc select ... --out FILE`.",
            reason="selection-file",
        ) from err
