"""Write DICOM files atomically: a temporary name in the same folder, then a rename.

A reader (or a resumed run) never sees a half-written file: either the previous file or the
complete new one is at the final path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset

__all__ = ["write_dataset"]


def write_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` (DICOM Part 10) atomically; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            dataset.save_as(stream, enforce_file_format=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
