"""The annotations table: one parquet row per released case x structure, ready for BigQuery.

Every structure of the release's universe has a row in every released case, with its
``status``: ``annotated_present`` (the row carries its SEG segment, label, voxel count and
volume), ``annotated_absent`` (annotated by the dataset but not in this case) or
``not_annotated`` (the dataset did not annotate it, or it lies outside the region a cropped
label map covers: nothing is known). Dataset provenance
(version, annotation type, annotator, algorithm, licence, citation) repeats on each row so
that a query needs no join. Columns are flat scalars; BigQuery loads the file as is. Refused
cases have no rows here: they are in the outcome file (:mod:`omas_idc.release.annotations`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omas_idc import __version__
from omas_idc.encode.annotation_sr import AnnotationStatus
from omas_idc.errors import EncodingError
from omas_idc.publish.parquet import (
    STRUCTURE_CODE_FIELDS,
    arrow_schema,
    structure_code_columns,
    write_rows,
)
from omas_idc.release.released import ReleasedCase

__all__ = ["annotation_rows", "annotations_schema", "write_annotations_table"]

_STRING = "string"
_FIELDS: tuple[tuple[str, str], ...] = (
    ("case_id", _STRING),
    ("dataset", _STRING),
    ("dataset_version", _STRING),
    ("annotation_type", _STRING),
    ("annotator", _STRING),
    ("algorithm", _STRING),
    ("algorithm_version", _STRING),
    ("licence", _STRING),
    ("citation", _STRING),
    ("source_series_instance_uid", _STRING),
    ("study_instance_uid", _STRING),
    ("patient_id", _STRING),
    ("series_match", _STRING),
    ("structure", _STRING),
    *STRUCTURE_CODE_FIELDS,
    ("status", _STRING),
    ("annotated", "bool"),
    ("present", "bool"),
    ("label", "int32"),
    ("source_label_name", _STRING),
    ("voxel_count", "int64"),
    ("volume_ml", "float64"),
    ("seg_sop_instance_uid", _STRING),
    ("seg_series_instance_uid", _STRING),
    ("segment_number", "int32"),
    ("sr_sop_instance_uid", _STRING),
    ("sr_series_instance_uid", _STRING),
    ("omas_idc_version", _STRING),
)


def annotations_schema() -> Any:
    """The table's ``pyarrow.Schema`` (pyarrow is imported on use)."""
    return arrow_schema(_FIELDS)


def annotation_rows(released: ReleasedCase) -> list[dict[str, Any]]:
    """The rows of one released case: one per structure of the universe, in report order."""
    dataset = released.dataset
    header = released.volume.header
    segments = (
        {s.name: number for number, s in released.seg.segments.items()} if released.seg else {}
    )
    seg = released.seg.dataset if released.seg else None
    rows = []
    for item in released.statuses:
        s = item.structure
        number = segments.get(s.name)
        rows.append(
            {
                "case_id": released.case.case_id,
                "dataset": dataset.name,
                "dataset_version": dataset.version,
                "annotation_type": dataset.annotation_type,
                "annotator": dataset.annotator or None,
                "algorithm": dataset.algorithm or None,
                "algorithm_version": dataset.algorithm_version or None,
                "licence": dataset.licence or None,
                "citation": dataset.citation or None,
                "source_series_instance_uid": header.series_instance_uid,
                "study_instance_uid": header.study_instance_uid,
                "patient_id": header.patient_id,
                "series_match": released.match_method,
                "structure": s.name,
                **structure_code_columns(s),
                "status": item.status.value,
                "annotated": item.status is not AnnotationStatus.NOT_ANNOTATED,
                "present": item.status is AnnotationStatus.PRESENT,
                "label": item.label,
                "source_label_name": dataset.source_names.get(item.label or 0) or None,
                "voxel_count": item.voxel_count,
                "volume_ml": item.volume_ml,
                "seg_sop_instance_uid": str(seg.SOPInstanceUID) if number and seg else None,
                "seg_series_instance_uid": str(seg.SeriesInstanceUID) if number and seg else None,
                "segment_number": number,
                "sr_sop_instance_uid": str(released.sr.SOPInstanceUID),
                "sr_series_instance_uid": str(released.sr.SeriesInstanceUID),
                "omas_idc_version": __version__,
            }
        )
    return rows


def write_annotations_table(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as parquet (atomically: a temporary name, then a rename).

    Raises
    ------
    EncodingError
        If a cell is larger than :data:`~omas_idc.publish.parquet.MAX_CELL_BYTES` or a
        value does not fit its column.
    """
    return write_rows(rows, _FIELDS, path, table="annotations table", error=EncodingError)
