"""The structure catalog: which model label is which anatomical structure, and how it is coded.

The data lives in two kinds of tables: ``dicom_templates/structures.csv`` (one row per
structure: codes, colour, notes) and each model family's label table beside its card (one row
per model, task and label, naming a structure). This package reads them
(:mod:`~omas_idc.catalog.tables`), indexes them (:mod:`~omas_idc.catalog.model`), validates
them against DICOM Part 16 (:mod:`~omas_idc.catalog.validate`) and loads the shipped catalog
(:mod:`~omas_idc.catalog.load`). A model family is data: adding one adds rows, not code.

Examples
--------
>>> from omas_idc.catalog import load_catalog
>>> catalog = load_catalog()
>>> catalog.by_model_label("cads", 551, 3).name
'kidney_left'
"""

from __future__ import annotations

from omas_idc.catalog.load import (
    builtin_labels,
    catalog_from_tables,
    default_structures_path,
    load_catalog,
)
from omas_idc.catalog.model import Catalog, Code, LabelRow, Structure
from omas_idc.catalog.tables import (
    parse_label_row,
    parse_row,
    read_labels_csv,
    read_structures_csv,
)
from omas_idc.catalog.validate import Issue, ValidationReport, validate_structures

__all__ = [
    "Catalog",
    "Code",
    "Issue",
    "LabelRow",
    "Structure",
    "ValidationReport",
    "builtin_labels",
    "catalog_from_tables",
    "default_structures_path",
    "load_catalog",
    "parse_label_row",
    "parse_row",
    "read_labels_csv",
    "read_structures_csv",
    "validate_structures",
]
