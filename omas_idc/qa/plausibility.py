"""Per-structure expectations kept as data: ``dicom_templates/plausibility.csv``.

Columns: ``name`` (catalog name), ``min_ml`` and ``max_ml`` (a plausible adult volume range,
empty where no published reference supports one), ``components`` (``1`` for a structure that
is one connected piece, ``several`` for one that is naturally in pieces: both eyes, the
bowel, all muscles), ``small`` (``yes`` exempts the structure from the generic 5 mL floor,
since it is smaller than that in adults), ``source`` (the citation of the range; required
with a range) and ``notes``.

A structure not listed has no range, is expected in one piece and is held to the 5 mL floor.
The ranges are deliberately wide (see ``dicom_templates/README.md`` for the rule that derives
them from the reference masses): they catch gross failures, not anatomical variants.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from omas_idc.errors import ConfigurationError
from omas_idc.resources import template_path

__all__ = [
    "PLAUSIBILITY_COLUMNS",
    "StructureExpectation",
    "default_plausibility_path",
    "load_plausibility",
    "read_plausibility_csv",
]

PLAUSIBILITY_COLUMNS = ("name", "min_ml", "max_ml", "components", "small", "source", "notes")


@dataclass(frozen=True)
class StructureExpectation:
    """What is plausible for one structure (see the module docstring)."""

    name: str
    min_ml: float | None = None
    max_ml: float | None = None
    single_component: bool = True
    small: bool = False
    source: str = ""
    notes: str = ""

    @property
    def volume_range(self) -> tuple[float, float] | None:
        """``(min_ml, max_ml)`` where the structure has a cited range, else ``None``."""
        if self.min_ml is None or self.max_ml is None:
            return None
        return self.min_ml, self.max_ml


def _number(text: str, column: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as err:
        raise ConfigurationError(f"{where}: {column} must be a number, got {text!r}") from err


def _parse(row: dict[str, str], where: str) -> StructureExpectation:
    name = row["name"].strip()
    where = f"{where} ({name or 'no name'})"
    low = _number(row["min_ml"], "min_ml", where)
    high = _number(row["max_ml"], "max_ml", where)
    source = row["source"].strip()
    if (low is None) != (high is None):
        raise ConfigurationError(f"{where}: give both min_ml and max_ml, or neither")
    if low is not None and high is not None:
        if not 0 <= low < high:
            raise ConfigurationError(f"{where}: need 0 <= min_ml < max_ml, got {low}, {high}")
        if not source:
            raise ConfigurationError(
                f"{where}: a volume range needs a cited source; leave the range empty where "
                "no published reference supports it"
            )
    components = row["components"].strip() or "1"
    if components not in ("1", "several"):
        raise ConfigurationError(f"{where}: components must be '1' or 'several'")
    small = row["small"].strip() or "no"
    if small not in ("yes", "no"):
        raise ConfigurationError(f"{where}: small must be 'yes' or 'no'")
    return StructureExpectation(
        name=name,
        min_ml=low,
        max_ml=high,
        single_component=components == "1",
        small=small == "yes",
        source=source,
        notes=row["notes"].strip(),
    )


def read_plausibility_csv(path: Path) -> dict[str, StructureExpectation]:
    """Read a plausibility table.

    Raises
    ------
    ConfigurationError
        If the header is not :data:`PLAUSIBILITY_COLUMNS`, a row is malformed, a range has no
        source, or a name repeats.
    """
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or tuple(reader.fieldnames) != PLAUSIBILITY_COLUMNS:
            raise ConfigurationError(
                f"{path}: the header must be {','.join(PLAUSIBILITY_COLUMNS)}; "
                f"got {reader.fieldnames}"
            )
        table: dict[str, StructureExpectation] = {}
        for line, row in enumerate(reader, start=2):
            item = _parse(row, f"{path.name} line {line}")
            if item.name in table:
                raise ConfigurationError(f"{path.name} line {line}: {item.name!r} listed twice")
            table[item.name] = item
    return table


def default_plausibility_path() -> Path:
    """The shipped ``dicom_templates/plausibility.csv``."""
    return template_path("plausibility.csv")


@functools.lru_cache(maxsize=1)
def load_plausibility() -> dict[str, StructureExpectation]:
    """The shipped plausibility table (cached)."""
    return read_plausibility_csv(default_plausibility_path())
