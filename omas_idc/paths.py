"""Paths built from values that come from outside the program, and the folders they must stay in.

Two rules, used by every stage that touches the file system with data in hand:

- :func:`path_part` turns an untrusted value (a UID, a collection id, a PatientID from the IDC
  index, a selection file or a DICOM header) into one safe path component: a value made only of
  letters, digits, ``.``, ``_`` and ``-`` (every DICOM UID, every IDC collection id, ordinary
  patient IDs) is used as it is; any other byte is percent-encoded (``%2F`` for ``/``), and
  ``.``/``..``/empty values are encoded or replaced, so that no value can name a folder outside
  its place in a layout.
- :func:`inside` checks that a path the program is about to delete, replace or rename lies
  below the folder it belongs to (after resolving symbolic links and ``..``), and raises the
  caller's error class with ``reason="unsafe-path"`` otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omas_idc.errors import OmasIdcError

__all__ = ["UNSAFE_PATH", "inside", "path_part"]

#: The ``reason`` of the error :func:`inside` raises.
UNSAFE_PATH = "unsafe-path"

_PLAIN = re.compile(r"[A-Za-z0-9._-]+")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def path_part(value: str, missing: str = "unknown") -> str:
    """``value`` as one safe path component (see the module docstring for the encoding).

    Parameters
    ----------
    value
        The untrusted value (a UID, a collection id, a PatientID).
    missing
        What an empty value becomes.

    Returns
    -------
    str
        A name with no separator that is neither ``.`` nor ``..``; plain values unchanged.
    """
    if not value:
        return missing
    if _PLAIN.fullmatch(value) and not value.startswith("."):
        return value
    # Percent-encode every byte outside the plain set (a '.' too, where it could start '..').
    return "".join(
        chr(byte) if byte in _SAFE_BYTES or (byte == 0x2E and i > 0) else f"%{byte:02X}"
        for i, byte in enumerate(value.encode("utf-8"))
    )


def inside(
    root: Path,
    path: Path,
    *,
    what: str,
    error: type[OmasIdcError],
    series_instance_uid: str | None = None,
    follow_links: bool = True,
) -> Path:
    """``path`` if it lies strictly below ``root``; raise ``error`` otherwise.

    Both are resolved first (symbolic links followed, ``..`` removed; neither needs to exist),
    so a link inside ``root`` that points elsewhere counts as outside: what is written
    through it, or deleted below it, would be outside.

    Parameters
    ----------
    root
        The folder ``path`` belongs to (the download root, the weights cache).
    path
        The path about to be deleted, replaced or renamed.
    what
        What ``path`` is, for the message (``"the series folder"``).
    error
        The error class to raise (the stage's: ``FetchError``, ``ModelError`` ...).
    series_instance_uid
        The series concerned, if any.
    follow_links
        ``False`` checks the names only (``..`` removed, links kept): for a path that is only
        read, where a link placed by the user (weights kept on another disk) is legitimate.

    Returns
    -------
    Path
        ``path`` unchanged.

    Raises
    ------
    OmasIdcError
        ``error`` with ``reason="unsafe-path"`` if ``path`` is ``root`` itself or outside it.
    """
    if follow_links:
        base, target = Path(root).resolve(), Path(path).resolve()
    else:
        base = Path(os.path.normpath(Path(root).absolute()))
        target = Path(os.path.normpath(Path(path).absolute()))
    if target == base or not target.is_relative_to(base):
        raise error(
            f"refusing to touch {what} {path}: it resolves to {target}, which is not inside "
            f"{base}. Either a name from data (a selection, a model card, a bucket listing) "
            "climbs out of its folder, or a symbolic link there points elsewhere: correct the "
            "data, or remove the link.",
            series_instance_uid=series_instance_uid,
            reason=UNSAFE_PATH,
        )
    return path
