"""Locate the package data: ``dicom_templates/`` and ``pipelines/``.

In a source checkout (or an editable install) the folders sit at the repository root; in a
wheel they are shipped inside the package as ``omas_idc/_data/<folder>`` (see
``pyproject.toml``). Both layouts resolve through the same functions.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pipelines_dir", "template_path", "templates_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(folder: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"omas-idc package data folder {folder!r} is missing: looked in "
        f"{_PACKAGE_DIR / '_data' / folder} and {_PACKAGE_DIR.parent / folder}. "
        "Reinstall omas-idc (pip install omas-idc) or run from a full source checkout."
    )


def templates_dir() -> Path:
    """The folder holding the structure catalog and the SEG/SR header templates."""
    return _data_dir("dicom_templates")


def pipelines_dir() -> Path:
    """The folder holding the run configurations (``nlst.toml``) and Cloud Batch templates."""
    return _data_dir("pipelines")


def template_path(name: str) -> Path:
    """The path of one file in ``dicom_templates/``, which must exist.

    Raises
    ------
    FileNotFoundError
        If no such template is shipped.
    """
    path = templates_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no template {name!r} in {templates_dir()}")
    return path
