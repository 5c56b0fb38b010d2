"""Where a series' outputs lie below a store's root, built from checked path parts.

Layout: ``<collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/`` holding the SEG(s),
the SR, the series' release-table rows, preview PNGs and ``DONE.json``; release-wide files
(``release/``, ``reports/``) sit beside the collections.

Every part made from data (a value from the IDC index, a selection file or a DICOM header, all
untrusted) goes through :func:`path_part`: a value made only of letters, digits, ``.``, ``_``
and ``-`` (every DICOM UID, every IDC collection id, ordinary patient IDs) is used as it is;
any other byte is percent-encoded (``%2F`` for ``/``), and ``.``/``..``/empty values are
encoded or replaced, so that no value can name a folder outside its place in the layout.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from omas_idc.errors import PublishError
from omas_idc.paths import path_part
from omas_idc.series_ref import SeriesRef

__all__ = ["check_relative_name", "output_path", "path_part", "series_prefix"]


def series_prefix(ref: SeriesRef) -> PurePosixPath:
    """``<collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>`` for a series."""
    return ref.study_dir() / path_part(ref.series_instance_uid)


def output_path(ref: SeriesRef | None, name: str | PurePosixPath) -> PurePosixPath:
    """The path below a store's root of output ``name`` of series ``ref`` (or of the release).

    Raises
    ------
    PublishError
        If ``name`` is absolute or holds ``..`` (names are the program's, never data).
    """
    relative = check_relative_name(name)
    return relative if ref is None else series_prefix(ref) / relative


def check_relative_name(name: str | PurePosixPath) -> PurePosixPath:
    """An output's name as a relative path with no ``..``, absolute or empty parts.

    Raises
    ------
    PublishError
        If the name could leave the store's root.
    """
    relative = PurePosixPath(str(name))
    parts = relative.parts
    if relative.is_absolute() or not parts or any(p in ("", ".", "..") for p in parts):
        raise PublishError(
            f"refusing to store a file named {str(name)!r}: a store name must be a relative "
            "path without '..'",
            reason="unsafe-name",
        )
    return relative
