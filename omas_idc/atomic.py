"""One way to write a file so that nobody ever sees half of it.

The content goes to a unique temporary name in the target's own folder (so the rename stays on
one file system), is flushed and fsynced, gets the mode an ordinary ``open()`` would give it
(``0o666`` less the process umask, so a release folder shared with a group or served by a web
server stays readable), and is then renamed over the target. A killed process leaves either the
previous file or the complete new one, and at most a hidden ``.name.*`` temporary file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_copy",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "file_mode",
]


def file_mode() -> int:
    """The mode a newly created file gets under the current umask (0o644 with umask 022)."""
    return 0o666 & ~_umask()


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process' umask, read without changing it where the system tells it (Linux's
    /proc/self/status): setting it to 0 for a moment, the only other way, would give a file
    another thread creates in that moment the mode 0666."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def _temporary_beside(target: Path, suffix: str = "") -> Iterator[Path]:
    """A unique temporary path in ``target``'s folder; on a clean exit its file is fsynced,
    given the umask's mode and renamed over ``target``; on an exception it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, file_mode())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Open a binary stream whose content replaces ``path`` only when the block ends cleanly.

    The parent folder is created if needed. On an exception the temporary file is removed and
    the target is left as it was.
    """
    with _temporary_beside(Path(path)) as temporary, temporary.open("wb") as stream:
        yield stream


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_output(path) as stream:
        stream.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """Copy the file ``source`` to ``target`` atomically; return the target."""
    with atomic_output(target) as stream, Path(source).open("rb") as src:
        shutil.copyfileobj(src, stream, 1 << 20)
    return Path(target)


def atomic_write_with(path: str | Path, write: Callable[[Path], object], suffix: str = "") -> Path:
    """Let ``write`` produce the file at a temporary path (for writers that want a path, such
    as pyarrow or nibabel), then move it into place atomically with the umask's mode.

    ``suffix`` keeps an extension writers look at (``".nii.gz"``) on the temporary name.
    """
    target = Path(path)
    with _temporary_beside(target, suffix) as temporary:
        write(temporary)
    return target
