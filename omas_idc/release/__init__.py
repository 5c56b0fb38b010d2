"""Release existing annotations (NIfTI label maps of IDC series) as DICOM SEG + SR.

The stage behind ``omas-idc release-labels``: a manifest of cases
(:mod:`~omas_idc.release.manifest`), per-dataset label tables
(:mod:`~omas_idc.release.labeltables`), finding each case's DICOM series and putting its labels
on that grid exactly (:mod:`~omas_idc.release.matching`), and encoding them with the status of
every structure: annotated and present, annotated but absent (only where the labels cover the
whole series), not annotated (not in the dataset's table, or outside a cropped label map)
(:mod:`~omas_idc.release.annotations`).
"""

from __future__ import annotations

from omas_idc.release.annotations import (
    UNIVERSES,
    CaseOutcome,
    PreparedCase,
    ReleasedCase,
    ReleaseOptions,
    annotation_statuses,
    encode_case,
    prepare_case,
    release_annotations,
    structure_universe,
)
from omas_idc.release.errors import REASONS, ReleaseError
from omas_idc.release.labeltables import AnnotatedDataset, DatasetRegistry, load_label_tables
from omas_idc.release.manifest import ManifestCase, read_manifest
from omas_idc.release.matching import SeriesIndex, SeriesMatch, find_case_series

__all__ = [
    "REASONS",
    "UNIVERSES",
    "AnnotatedDataset",
    "CaseOutcome",
    "DatasetRegistry",
    "ManifestCase",
    "PreparedCase",
    "ReleaseError",
    "ReleaseOptions",
    "ReleasedCase",
    "SeriesIndex",
    "SeriesMatch",
    "annotation_statuses",
    "encode_case",
    "find_case_series",
    "load_label_tables",
    "prepare_case",
    "read_manifest",
    "release_annotations",
    "structure_universe",
]
