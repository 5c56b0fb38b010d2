"""Read the catalog's two tables: structures, and model label rows in long form.

``dicom_templates/structures.csv`` holds one row per structure (name, codes, colour, notes);
each model family ships its label table beside its card (columns ``model, task, label,
label_name, structure``, one row per label). Parsing checks the form of each row; the coding
rules are :mod:`omas_idc.catalog.validate`'s.
"""

from __future__ import annotations

import csv
from pathlib import Path

from omas_idc.catalog.model import CODE_FIELDS, Code, LabelRow, Structure
from omas_idc.errors import CatalogError

__all__ = [
    "LABEL_COLUMNS",
    "STRUCTURE_COLUMNS",
    "parse_label_row",
    "parse_row",
    "read_labels_csv",
    "read_structures_csv",
]

STRUCTURE_COLUMNS = (
    "name",
    *(f"{field}_{part}" for field in CODE_FIELDS for part in ("code", "scheme", "meaning")),
    "color_rgb",
    "outside_part16_source",
    "notes",
)
LABEL_COLUMNS = ("model", "task", "label", "label_name", "structure")


def _code(row: dict[str, str], field: str, where: str) -> Code | None:
    value, scheme, meaning = (
        row[f"{field}_{part}"].strip() for part in ("code", "scheme", "meaning")
    )
    if not (value or scheme or meaning):
        return None
    if not (value and scheme and meaning):
        raise CatalogError(
            f"{where}: {field} needs code, scheme and meaning, got ({value!r}, {scheme!r}, "
            f"{meaning!r}); fill in all three or leave all three empty"
        )
    return Code(value, scheme, meaning)


def _color(text: str, where: str) -> tuple[int, int, int]:
    parts = text.split()
    if len(parts) != 3 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise CatalogError(
            f"{where}: color_rgb must be three integers 0-255 separated by spaces, got {text!r}"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def parse_row(row: dict[str, str], where: str = "row") -> Structure:
    """Build a :class:`Structure` from one row of the structures table (a dict of its columns).

    Raises
    ------
    CatalogError
        If a column is missing or malformed; the message names the row and the column.
    """
    missing = [c for c in STRUCTURE_COLUMNS if c not in row]
    if missing:
        raise CatalogError(f"{where}: missing columns {missing}")
    name = row["name"].strip()
    where = f"{where} ({name or 'no name'})"
    if not name:
        raise CatalogError(f"{where}: every structure needs a name")
    category = _code(row, "category", where)
    type_ = _code(row, "type", where)
    if category is None or type_ is None:
        raise CatalogError(
            f"{where}: category and type are required; an unmapped label is an error, "
            "never a placeholder: code the structure or remove the label"
        )
    return Structure(
        name=name,
        category=category,
        type=type_,
        type_modifier=_code(row, "type_modifier", where),
        region=_code(row, "region", where),
        region_modifier=_code(row, "region_modifier", where),
        color_rgb=_color(row["color_rgb"], where),
        outside_part16_source=row["outside_part16_source"].strip() or None,
        notes=row["notes"].strip(),
    )


def parse_label_row(row: dict[str, str], where: str = "row") -> LabelRow:
    """Build a :class:`LabelRow` from one row of a label table.

    Raises
    ------
    CatalogError
        If a column is missing or empty, or the label is not a positive integer.
    """
    values = {c: (row.get(c) or "").strip() for c in LABEL_COLUMNS}
    empty = [c for c, v in values.items() if not v]
    if empty:
        raise CatalogError(f"{where}: {', '.join(empty)} must not be empty")
    try:
        label = int(values["label"])
    except ValueError:
        label = 0
    if label <= 0:
        raise CatalogError(
            f"{where}: label must be a positive integer (0 is background), got {values['label']!r}"
        )
    return LabelRow(
        model=values["model"],
        task=values["task"],
        label=label,
        label_name=values["label_name"],
        structure=values["structure"],
    )


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or list(reader.fieldnames) != list(columns):
                raise CatalogError(
                    f"{path}: the header must be exactly {','.join(columns)}; "
                    f"got {reader.fieldnames}"
                )
            return [(f"{path.name} line {i}", row) for i, row in enumerate(reader, start=2)]
    except OSError as err:
        raise CatalogError(f"cannot read the catalog table {path}: {err}") from err


def read_structures_csv(path: Path) -> list[Structure]:
    """Read a structures table into structures, without validating the coding.

    Raises
    ------
    CatalogError
        If the file cannot be read or parsed.
    """
    return [parse_row(row, where) for where, row in _rows(path, STRUCTURE_COLUMNS)]


def read_labels_csv(path: Path) -> list[LabelRow]:
    """Read a model family's label table (``model, task, label, label_name, structure``).

    Raises
    ------
    CatalogError
        If the file cannot be read or parsed.
    """
    return [parse_label_row(row, where) for where, row in _rows(path, LABEL_COLUMNS)]
