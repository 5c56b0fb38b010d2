"""The release table: one parquet row per series x expected structure, ready for BigQuery.

Columns are flat scalars (strings, integers, floats, booleans) plus two string lists
(``reasons``, ``truncated_at``), all of which BigQuery loads from parquet as is (lists become
REPEATED fields). Present structures carry their metrics, their SEG instance and segment
number and the SR that reports them; absent ones carry only identity, status and verdict, so
"absent" stays distinguishable from "not segmented". No cell may exceed 1 MB (BigQuery's
limit on a row is far higher, but a cell that large means a bug): the writer checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from omas_idc import __version__
from omas_idc.errors import QAError
from omas_idc.publish.parquet import (
    MAX_CELL_BYTES,
    STRUCTURE_CODE_FIELDS,
    arrow_schema,
    structure_code_columns,
    write_rows,
)
from omas_idc.qa.records import QARecord, SeriesQA

__all__ = ["MAX_CELL_BYTES", "release_rows", "release_schema", "write_release_table"]

_STRING = "string"
_FIELDS: tuple[tuple[str, str], ...] = (
    ("source_series_instance_uid", _STRING),
    ("study_instance_uid", _STRING),
    ("patient_id", _STRING),
    ("seg_sop_instance_uid", _STRING),
    ("seg_series_instance_uid", _STRING),
    ("segment_number", "int32"),
    ("sr_sop_instance_uid", _STRING),
    ("sr_series_instance_uid", _STRING),
    ("model", _STRING),
    ("model_version", _STRING),
    ("task", _STRING),
    ("label", "int32"),
    ("structure", _STRING),
    *STRUCTURE_CODE_FIELDS,
    ("status", _STRING),
    ("verdict", _STRING),
    ("reasons", "list<string>"),
    ("series_verdict", _STRING),
    ("voxel_count", "int64"),
    ("volume_ml", "float64"),
    *((f"hu_{name}", "float64") for name in ("mean", "std", "min", "max", "median")),
    *((f"hu_p{q}", "float64") for q in (10, 25, 75, 90)),
    ("centroid_x_mm", "float64"),
    ("centroid_y_mm", "float64"),
    ("centroid_z_mm", "float64"),
    *((f"bbox_{end}_{axis}", "int32") for end in ("start", "stop") for axis in "zyx"),
    ("components", "int32"),
    ("largest_component_fraction", "float64"),
    ("truncated", "bool"),
    ("truncated_at", "list<string>"),
    ("laterality", _STRING),
    ("midline_distance_mm", "float64"),
    ("plausible_min_ml", "float64"),
    ("plausible_max_ml", "float64"),
    ("flag_truncated", "bool"),
    ("flag_split", "bool"),
    ("flag_wrong_side", "bool"),
    ("flag_implausible_volume", "bool"),
    ("flag_small_volume", "bool"),
    ("omas_idc_version", _STRING),
)


def release_schema() -> Any:
    """The table's ``pyarrow.Schema`` (pyarrow is imported on use)."""
    return arrow_schema(_FIELDS)


def _row(
    record: QARecord,
    qa: SeriesQA,
    header: Mapping[str, str],
    reference: tuple[Dataset, int] | None,
    sr: Dataset | None,
) -> dict[str, Any]:
    s = record.structure
    m = record.metrics
    reasons = record.reasons
    row: dict[str, Any] = {
        "source_series_instance_uid": record.series_instance_uid,
        "study_instance_uid": header.get("study_instance_uid"),
        "patient_id": header.get("patient_id"),
        "seg_sop_instance_uid": str(reference[0].SOPInstanceUID) if reference else None,
        "seg_series_instance_uid": str(reference[0].SeriesInstanceUID) if reference else None,
        "segment_number": reference[1] if reference else None,
        "sr_sop_instance_uid": str(sr.SOPInstanceUID) if sr is not None else None,
        "sr_series_instance_uid": str(sr.SeriesInstanceUID) if sr is not None else None,
        "model": record.model,
        "model_version": record.model_version,
        "task": record.task,
        "label": record.label,
        "structure": s.name,
        **structure_code_columns(s),
        "status": record.status.value,
        "verdict": record.verdict.value,
        "reasons": list(reasons),
        "series_verdict": qa.verdict.value,
        "laterality": record.laterality,
        "midline_distance_mm": record.midline_distance_mm,
        "plausible_min_ml": record.plausible_range_ml[0] if record.plausible_range_ml else None,
        "plausible_max_ml": record.plausible_range_ml[1] if record.plausible_range_ml else None,
        "flag_truncated": any(r.startswith("truncated") for r in reasons),
        "flag_split": "split" in reasons,
        "flag_wrong_side": "wrong_side" in reasons,
        "flag_implausible_volume": any(r.startswith("volume_") and "range" in r for r in reasons),
        "flag_small_volume": "volume_below_minimum" in reasons,
        "omas_idc_version": __version__,
    }
    if m is not None:
        row.update(
            {
                "voxel_count": m.voxel_count,
                "volume_ml": m.volume_ml,
                "hu_mean": m.hu.mean,
                "hu_std": m.hu.std,
                "hu_min": m.hu.minimum,
                "hu_max": m.hu.maximum,
                "hu_median": m.hu.median,
                "hu_p10": m.hu.p10,
                "hu_p25": m.hu.p25,
                "hu_p75": m.hu.p75,
                "hu_p90": m.hu.p90,
                "centroid_x_mm": m.centroid_lps[0],
                "centroid_y_mm": m.centroid_lps[1],
                "centroid_z_mm": m.centroid_lps[2],
                **{f"bbox_start_{a}": v for a, v in zip("zyx", m.bbox_start, strict=True)},
                **{f"bbox_stop_{a}": v for a, v in zip("zyx", m.bbox_stop, strict=True)},
                "components": m.components,
                "largest_component_fraction": m.largest_component_fraction,
                "truncated": bool(m.truncated_at),
                "truncated_at": list(m.truncated_at),
            }
        )
    return row


def release_rows(
    qa: SeriesQA,
    *,
    header: Mapping[str, str] | None = None,
    references: Mapping[str, tuple[Dataset, int]] | None = None,
    sr: Dataset | None = None,
) -> list[dict[str, Any]]:
    """The rows of one series: one per expected structure.

    Parameters
    ----------
    qa
        The series' QA.
    header
        ``study_instance_uid`` and ``patient_id`` of the source series.
    references
        Structure name -> (SEG dataset, segment number), from
        :func:`omas_idc.encode.segread.segment_references`.
    sr
        The series' measurement report, if written.
    """
    refs = references or {}
    return [_row(r, qa, header or {}, refs.get(r.name), sr) for r in qa.records]


def write_release_table(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as parquet (atomically: a temporary name, then a rename).

    Raises
    ------
    QAError
        If a cell is larger than :data:`MAX_CELL_BYTES` or a value does not fit its column.
    """
    return write_rows(rows, _FIELDS, path, table="release table", error=QAError)
