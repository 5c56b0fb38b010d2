"""The release manifest: one CSV row per annotated case.

Format (UTF-8 CSV with a header; column order free, unknown columns refused):

``case_id`` (required)
    Unique identifier of the case in the release; letters, digits, ``.``, ``_``, ``-`` (it
    names the case's output folder).
``dataset`` (required)
    The source dataset, as described in ``datasets.toml`` (see
    :mod:`omas_idc.release.labeltables`).
``labels`` (required)
    The label map NIfTI, relative to the ``--labels`` folder (or absolute).
``series_instance_uid`` (optional)
    The IDC series the labels were drawn on. Where given it decides.
``series_dir`` (optional)
    A local folder holding the DICOM series (relative to the manifest's folder, or absolute);
    otherwise the series is looked up in the ``--dicom`` folder.
``image`` (optional)
    The CT NIfTI the labels were drawn on (relative to ``--labels``), used to find the series
    by content and, where the series is named otherwise, to verify that it is the right one.
``structures`` (optional)
    ``;``-separated catalog names: the structures this case annotated, where the case
    annotated fewer than its dataset's label table lists (empty: the whole table).

A manifest that breaks these rules is refused as a whole (ConfigurationError) before any case
runs; problems of one case are recorded for that case only.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from omas_idc.errors import ConfigurationError

__all__ = ["MANIFEST_COLUMNS", "ManifestCase", "read_manifest"]

#: Required and optional columns, in their documented order.
MANIFEST_COLUMNS = (
    "case_id",
    "dataset",
    "labels",
    "series_instance_uid",
    "series_dir",
    "image",
    "structures",
)
_REQUIRED = ("case_id", "dataset", "labels")
#: Identifiers that are safe as folder and file names on every platform.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ManifestCase:
    """One row of the manifest, with paths resolved.

    Attributes
    ----------
    case_id, dataset
        Identifiers (see the module docstring).
    labels
        The label map NIfTI.
    series_instance_uid
        The series the labels belong to, or ``None`` to find it by content.
    series_dir
        A local folder with the DICOM series, or ``None`` to search ``--dicom``.
    image
        The CT NIfTI the labels were drawn on, or ``None``.
    structures
        The structures this case annotated (catalog names), or ``None`` for its dataset's
        whole label table.
    """

    case_id: str
    dataset: str
    labels: Path
    series_instance_uid: str | None = None
    series_dir: Path | None = None
    image: Path | None = None
    structures: tuple[str, ...] | None = None


def _resolve(root: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else root / path


def read_manifest(path: str | Path, labels_root: str | Path) -> list[ManifestCase]:
    """The cases of a manifest CSV, in file order.

    Parameters
    ----------
    path
        The manifest (see the module docstring for its columns).
    labels_root
        The folder that ``labels`` and ``image`` paths are relative to.

    Raises
    ------
    ConfigurationError
        For a missing file or required column, an unknown column, an empty required value, a
        case_id or dataset that is not a safe name, or a duplicate case_id.
    """
    manifest = Path(path)
    root = Path(labels_root)
    if not manifest.is_file():
        raise ConfigurationError(f"manifest {manifest} does not exist")
    with manifest.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in _REQUIRED if c not in columns]
        unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
        if missing or unknown:
            raise ConfigurationError(
                f"manifest {manifest}: missing columns {missing}, unknown columns {unknown}; "
                f"the columns are {', '.join(MANIFEST_COLUMNS)} (the first three required)"
            )
        cases: list[ManifestCase] = []
        seen: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"manifest {manifest} line {line}"
            for column in _REQUIRED:
                if not row.get(column):
                    raise ConfigurationError(f"{where}: {column} is empty")
            for column in ("case_id", "dataset"):
                if not SAFE_NAME.match(row[column]):
                    raise ConfigurationError(
                        f"{where}: {column} {row[column]!r} must be 1-64 letters, digits, '.', "
                        "'_' or '-' (it names output folders and files)"
                    )
            if row["case_id"] in seen:
                raise ConfigurationError(f"{where}: case_id {row['case_id']!r} is repeated")
            seen.add(row["case_id"])
            structures = tuple(s.strip() for s in row.get("structures", "").split(";") if s.strip())
            cases.append(
                ManifestCase(
                    case_id=row["case_id"],
                    dataset=row["dataset"],
                    labels=_resolve(root, row["labels"]),
                    series_instance_uid=row.get("series_instance_uid") or None,
                    series_dir=_resolve(manifest.parent, row["series_dir"])
                    if row.get("series_dir")
                    else None,
                    image=_resolve(root, row["image"]) if row.get("image") else None,
                    structures=structures or None,
                )
            )
    return cases
