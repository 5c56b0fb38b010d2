"""The JSON run report: what a run did, where, with what, and what went wrong.

Written to the work folder as ``run-report-<i>-of-<n>.json`` at the end of every run that got
past the work folder's lock, also one refused before any series (an output folder that is full
or read-only, an unreadable selection), so that a Cloud Batch task leaves its reason behind;
the runner copies it to the output's ``reports/`` where that still works.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

from omas_idc import __version__
from omas_idc.atomic import atomic_write_text
from omas_idc.errors import OmasIdcError

__all__ = ["REPORTED_PACKAGES", "base_report", "report_path", "write_refusal", "write_report"]

logger = logging.getLogger(__name__)

#: The packages whose versions decide what a run writes (recorded in the run report).
REPORTED_PACKAGES = ("torch", "numpy", "pydicom", "highdicom", "nnunetv2")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in REPORTED_PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def report_path(work_dir: Path, shard: tuple[int, int]) -> Path:
    """The report of shard ``shard`` in the work folder."""
    return Path(work_dir) / f"run-report-{shard[0]}-of-{shard[1]}.json"


def base_report(release: str, shard: tuple[int, int]) -> dict[str, Any]:
    """The fields every report carries: versions, platform, release name and shard."""
    return {
        "omas_idc_version": __version__,
        "versions": _versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "release": release,
        "shard": list(shard),
    }


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` to ``path`` atomically (sorted keys, one field a line)."""
    atomic_write_text(path, json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    return path


def write_refusal(
    work_dir: Path, release: str, shard: tuple[int, int], error: OmasIdcError
) -> Path | None:
    """The report of a run refused before its first series; ``None`` where the work folder
    takes no file (the error itself is then the only record)."""
    report = {
        **base_report(release, shard),
        "refused": {
            "error_class": error.error_class,
            "reason": error.reason,
            "message": error.message,
        },
        "errors": [str(error)],
        "processed": 0,
        "done": 0,
        "failed": 0,
    }
    try:
        return write_report(report_path(work_dir, shard), report)
    except OSError as err:
        logger.warning("no run report written to %s: %s", work_dir, err)
        return None
