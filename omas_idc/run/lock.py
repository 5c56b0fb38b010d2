"""One run per work folder: an exclusive, advisory lock on a file in the work folder.

Two runs on the same work folder would share one state database and one staging folder and
fail each other's series. :func:`work_lock` takes an exclusive ``flock`` on ``run.lock`` in the
work folder for the whole run and writes the holder's PID (and host) into it. The operating
system releases the lock when the process ends in any way (a SIGKILL, a pre-empted VM), so a
killed run never blocks the next one; the PID left in the file is only a hint for the message.

The lock is re-entrant within one process (the command line takes it before it loads the
model, and :func:`omas_idc.run.runner.execute_run` takes it again), since a second ``flock``
on a new open file of the same process would refuse itself.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from omas_idc.errors import ConfigurationError

__all__ = ["LOCK_NAME", "lock_holder", "work_lock"]

#: The lock file's name in the work folder.
LOCK_NAME = "run.lock"

_held: dict[Path, tuple[IO[str], int]] = {}
_guard = threading.Lock()


def lock_holder(work_dir: Path) -> str:
    """What the lock file of ``work_dir`` says about its last holder (``"PID 12 on host"``)."""
    try:
        text = (Path(work_dir) / LOCK_NAME).read_text().strip()
    except OSError:
        return ""
    return text


@contextmanager
def work_lock(work_dir: Path) -> Iterator[Path]:
    """Hold the work folder's lock for the duration of the ``with`` block.

    Parameters
    ----------
    work_dir
        The run's work folder (created if missing).

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    ConfigurationError
        ``reason="work-locked"`` if another process holds the lock (the message names its
        PID), or ``reason="work-folder"`` if the lock file cannot be created.
    """
    folder = Path(work_dir).absolute()
    path = folder / LOCK_NAME
    key = path.resolve() if path.exists() else path
    with _guard:
        if key in _held:
            stream, count = _held[key]
            _held[key] = (stream, count + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            _release(key)
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Held open for the whole run: the lock lives as long as this open file.
        stream = open(path, "a+", encoding="utf-8")
    except OSError as err:
        raise ConfigurationError(
            f"cannot create the lock file {path}: {err.strerror or err}. Give --work a local "
            "folder this user can write to.",
            reason="work-folder",
        ) from err
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        stream.close()
        holder = lock_holder(folder) or "a process whose PID is not written yet"
        raise ConfigurationError(
            f"the work folder {folder} is in use by another omas-idc run ({holder}): two runs "
            "on one work folder would fail each other's series. Wait for that run to end, stop "
            "it, or give this run another --work folder.",
            reason="work-locked",
        ) from err
    stream.seek(0)
    stream.truncate()
    stream.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
    stream.flush()
    key = path.resolve()
    with _guard:
        _held[key] = (stream, 1)
    try:
        yield path
    finally:
        _release(key)


def _release(key: Path) -> None:
    with _guard:
        stream, count = _held[key]
        if count > 1:
            _held[key] = (stream, count - 1)
            return
        del _held[key]
    # Unlocking is implied by closing; the file stays, with the last holder's PID as a hint.
    stream.close()
