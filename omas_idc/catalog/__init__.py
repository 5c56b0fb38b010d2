"""The structure catalog: which model label is which anatomical structure, and how it is coded.

The data lives in ``dicom_templates/catalog.csv`` (one row per structure, reviewed in diffs);
this package loads it, looks structures up by model label, name or codes, and validates it
against DICOM Part 16 (see :mod:`omas_idc.catalog.validate` for the rules).

Examples
--------
>>> from omas_idc.catalog import load_catalog
>>> catalog = load_catalog()
>>> catalog.by_model_label("cads", 551, 3).name
'kidney_left'
"""

from __future__ import annotations

from omas_idc.catalog.model import (
    MODELS,
    CadsLabel,
    Catalog,
    Code,
    Structure,
    TotalSegLabel,
    default_catalog_path,
    load_catalog,
    parse_row,
    read_catalog_csv,
)
from omas_idc.catalog.validate import Issue, ValidationReport, validate_structures

__all__ = [
    "MODELS",
    "CadsLabel",
    "Catalog",
    "Code",
    "Issue",
    "Structure",
    "TotalSegLabel",
    "ValidationReport",
    "default_catalog_path",
    "load_catalog",
    "parse_row",
    "read_catalog_csv",
    "validate_structures",
]
