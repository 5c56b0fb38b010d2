"""Load the catalog: read its tables, validate them, and index them (the only module that
does all three, so that the rules and the types never import each other)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

from omas_idc.catalog.families import builtin_label_tables
from omas_idc.catalog.model import Catalog, LabelRow, Structure
from omas_idc.catalog.tables import read_labels_csv, read_structures_csv
from omas_idc.catalog.validate import validate_structures
from omas_idc.errors import CatalogError
from omas_idc.resources import template_path

__all__ = [
    "builtin_labels",
    "catalog_from_tables",
    "default_structures_path",
    "load_catalog",
]


def default_structures_path() -> Path:
    """The shipped ``dicom_templates/structures.csv``."""
    return template_path("structures.csv")


def builtin_labels() -> list[LabelRow]:
    """The label rows of every built-in model family, in card order."""
    return [row for path in builtin_label_tables() for row in read_labels_csv(path)]


def catalog_from_tables(
    structures: Sequence[Structure], labels: Iterable[LabelRow], where: object
) -> Catalog:
    """A :class:`Catalog` of ``structures`` and ``labels`` once they pass every rule.

    Parameters
    ----------
    structures, labels
        The two tables.
    where
        What the tables are, for the error message (a path, ``"the structure catalog"``).

    Raises
    ------
    CatalogError
        If the tables break a validation rule (see
        :func:`~omas_idc.catalog.validate.validate_structures`).
    """
    rows = list(labels)
    report = validate_structures(structures, rows)
    if report.errors:
        listed = "\n".join(f"  {issue}" for issue in report.errors)
        raise CatalogError(
            f"{where} is invalid:\n{listed}\nRun `omas-idc catalog validate` for the full report."
        )
    return Catalog(structures, rows)


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The shipped catalog with the built-in families' labels, checked against Part 16 (cached).

    A user's model family is added to it with :meth:`Catalog.with_labels`, which returns a new
    catalog: this one is shared and never changes.

    Raises
    ------
    CatalogError
        If the shipped catalog breaks a validation rule (see :func:`validate_structures`).
    """
    path = default_structures_path()
    return catalog_from_tables(
        read_structures_csv(path), builtin_labels(), f"the structure catalog {path}"
    )
