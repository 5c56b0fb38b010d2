"""BigQuery as a second selection source: the same filters over IDC's ``dicom_all`` table.

``dicom_all`` has one row per instance, so the query aggregates per series and can check what
the series-level index cannot: the geometry checks IDC applied before its TotalSegmentator
run over NLST (:class:`GeometryChecks`): one ImageOrientationPatient, no LOCALIZER instance,
distinct and uniformly spaced slice positions along the slice normal, and at least 50 slices.
These checks need per-slice positions, which multi-frame CT keeps in functional groups rather
than in top-level attributes: multi-frame series pass them unchecked and the read stage checks
their frames.

The query is written in BigQuery's dialect against the versioned dataset
``bigquery-public-data.idc_v{N}`` whose N is the IDC release of the local index, so that both
sources see the same data. The filter values are query parameters (``@collections`` ...; a
``QueryJobConfig`` of ``ScalarQueryParameter``/``ArrayQueryParameter``), never part of the
text. Tests transpile the text with sqlglot (``@name`` becomes duckdb's ``$name``) and run it
through duckdb with the same parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from omas_idc.errors import SelectionError
from omas_idc.select.filters import (
    MULTIFRAME_CT_SOP_CLASSES,
    SelectionFilters,
    SqlParameters,
    SqlQuery,
    sql_in,
)
from omas_idc.series_ref import SeriesRef

__all__ = [
    "GeometryChecks",
    "build_bigquery_sql",
    "dicom_all_table",
    "job_config",
    "query_bigquery",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeometryChecks:
    """The per-series geometry checks of the BigQuery source.

    Attributes
    ----------
    enabled
        Apply the checks at all.
    min_slices
        Least number of slices (instances) of a single-frame series.
    spacing_tolerance
        Largest allowed difference between the largest and the smallest gap of consecutive
        slice positions, as a fraction of the mean gap (span / (n - 1)); 0.01 is
        highdicom's and ``volume_geometry_index``'s tolerance.
    orientation_decimals
        ImageOrientationPatient cosines are compared after rounding to this many decimals.
    """

    enabled: bool = True
    min_slices: int = 50
    spacing_tolerance: float = 0.01
    orientation_decimals: int = 4


def dicom_all_table(idc_version: int) -> str:
    """The versioned ``dicom_all`` table of IDC release ``idc_version``."""
    return f"bigquery-public-data.idc_v{int(idc_version)}.dicom_all"


def build_bigquery_sql(
    filters: SelectionFilters,
    *,
    table: str,
    checks: GeometryChecks | None = None,
) -> SqlQuery:
    """The BigQuery SQL selecting ``filters`` from ``table`` (one row per series).

    The output columns carry the IDC index's names (``SeriesInstanceUID``, ``instanceCount``,
    ``series_size_MB`` ...), so rows convert to ``SeriesRef`` the same way for both sources.

    Parameters
    ----------
    filters
        The selection filters (as for the index source).
    table
        The ``dicom_all`` table, e.g. :func:`dicom_all_table` of the local IDC version.
    checks
        Geometry checks (default: :class:`GeometryChecks()`, IDC's TotalSegmentator rules).

    Returns
    -------
    SqlQuery
        The text (naming the filter values ``@collections``, ``@modality`` ...) and the
        values; :func:`job_config` turns them into BigQuery's query parameters.
    """
    checks = checks or GeometryChecks()
    parameters = SqlParameters("bigquery")
    # Filters that hold per instance are applied before the aggregation (less to sort);
    # the slice count can only be checked after it.
    per_instance = SelectionFilters(
        collections=filters.collections,
        modality=filters.modality,
        body_parts=filters.body_parts,
        licenses=filters.licenses,
        series_uids=filters.series_uids,
        original_only=filters.original_only,
    ).where_clauses(parameters)
    where = f"WHERE {' AND '.join(per_instance)}" if per_instance else ""
    d = int(checks.orientation_decimals)
    orientation = ", '/', ".join(
        f"CAST(ROUND(SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET({k})] AS FLOAT64), {d}) "
        "AS STRING)"
        for k in range(6)
    )
    conditions = []
    if filters.min_slices is not None:
        conditions.append(
            f"(instanceCount >= {int(filters.min_slices)} OR "
            f"{sql_in('SOPClassUID', MULTIFRAME_CT_SOP_CLASSES)})"
        )
    if checks.enabled:
        conditions.append(
            f"({sql_in('SOPClassUID', MULTIFRAME_CT_SOP_CLASSES)} OR ("
            f"instanceCount >= {int(checks.min_slices)} "
            "AND orientations = 1 AND localizers = 0 "
            "AND positions = instanceCount AND min_gap > 0 "
            f"AND max_gap - min_gap <= {float(checks.spacing_tolerance)!r} * "
            "SAFE_DIVIDE(span, instanceCount - 1)))"
        )
    outer = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    text = f"""
WITH instances AS (
  SELECT
    SeriesInstanceUID, StudyInstanceUID, PatientID, collection_id, Modality, SOPClassUID,
    SOPInstanceUID, BodyPartExamined, license_short_name, crdc_series_uuid, aws_bucket,
    SeriesDescription,
    SAFE_CAST(instance_size AS FLOAT64) AS instance_size,
    ARRAY_TO_STRING(ConvolutionKernel, '\\\\') AS kernel,
    SAFE_CAST(SliceThickness AS FLOAT64) AS slice_thickness,
    'LOCALIZER' IN UNNEST(ImageType) AS is_localizer,
    CONCAT({orientation}) AS orientation,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(0)] AS FLOAT64) AS r0,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(1)] AS FLOAT64) AS r1,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(2)] AS FLOAT64) AS r2,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(3)] AS FLOAT64) AS c0,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(4)] AS FLOAT64) AS c1,
    SAFE_CAST(ImageOrientationPatient[SAFE_OFFSET(5)] AS FLOAT64) AS c2,
    SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(0)] AS FLOAT64) AS px,
    SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(1)] AS FLOAT64) AS py,
    SAFE_CAST(ImagePositionPatient[SAFE_OFFSET(2)] AS FLOAT64) AS pz
  FROM `{table}`
  {where}
),
projected AS (
  SELECT *,
    px * (r1 * c2 - r2 * c1) + py * (r2 * c0 - r0 * c2) + pz * (r0 * c1 - r1 * c0)
      AS slice_position
  FROM instances
),
gaps AS (
  SELECT *,
    LEAD(slice_position) OVER (PARTITION BY SeriesInstanceUID ORDER BY slice_position)
      - slice_position AS gap
  FROM projected
),
series AS (
  SELECT
    SeriesInstanceUID,
    ANY_VALUE(StudyInstanceUID) AS StudyInstanceUID,
    ANY_VALUE(PatientID) AS PatientID,
    ANY_VALUE(collection_id) AS collection_id,
    ANY_VALUE(Modality) AS Modality,
    ANY_VALUE(SOPClassUID) AS SOPClassUID,
    ANY_VALUE(BodyPartExamined) AS BodyPartExamined,
    ANY_VALUE(license_short_name) AS license_short_name,
    ANY_VALUE(crdc_series_uuid) AS crdc_series_uuid,
    ANY_VALUE(aws_bucket) AS aws_bucket,
    ANY_VALUE(SeriesDescription) AS SeriesDescription,
    ANY_VALUE(kernel) AS ct_kernel,
    ANY_VALUE(slice_thickness) AS ct_slice_thickness,
    COUNT(DISTINCT SOPInstanceUID) AS instanceCount,
    SUM(instance_size) / 1000000 AS series_size_MB,
    COUNT(DISTINCT orientation) AS orientations,
    COUNTIF(is_localizer) AS localizers,
    COUNT(DISTINCT slice_position) AS positions,
    MIN(gap) AS min_gap,
    MAX(gap) AS max_gap,
    MAX(slice_position) - MIN(slice_position) AS span
  FROM gaps
  GROUP BY SeriesInstanceUID
)
SELECT * FROM series
{outer}
ORDER BY SeriesInstanceUID
""".strip()
    return parameters.query(text)


def job_config(query: SqlQuery) -> Any:
    """A ``google.cloud.bigquery.QueryJobConfig`` carrying ``query``'s parameters.

    A string becomes a ``ScalarQueryParameter`` of type STRING, a list an
    ``ArrayQueryParameter`` of STRING.
    """
    from google.cloud import bigquery

    parameters: list[Any] = [
        bigquery.ArrayQueryParameter(name, "STRING", list(value))
        if isinstance(value, list)
        else bigquery.ScalarQueryParameter(name, "STRING", value)
        for name, value in query.parameters.items()
    ]
    return bigquery.QueryJobConfig(query_parameters=parameters)


def rows_to_refs(
    rows: list[dict[str, Any]], idc_version: int, geometry_checked: bool
) -> list[SeriesRef]:
    """``SeriesRef`` for each row of :func:`build_bigquery_sql`'s result."""
    from omas_idc.select.index import row_to_ref

    refs = []
    for row in rows:
        if geometry_checked and row.get("SOPClassUID") not in MULTIFRAME_CT_SOP_CLASSES:
            row = {**row, "regular_volume": True}
        refs.append(row_to_ref(row, idc_version))
    return refs


def query_bigquery(
    filters: SelectionFilters,
    *,
    idc_version: int,
    project: str | None = None,
    checks: GeometryChecks | None = None,
    client: Any | None = None,
) -> list[SeriesRef]:
    """Run :func:`build_bigquery_sql` on BigQuery against ``idc_v{idc_version}.dicom_all``.

    Parameters
    ----------
    filters
        What to select.
    idc_version
        The IDC release to query (that of the local index, so both sources agree).
    project
        The Google Cloud project to bill (default: that of the environment's credentials).
    checks
        Geometry checks (default: IDC's TotalSegmentator rules).
    client
        A ``google.cloud.bigquery.Client`` (default: one for ``project``).

    Raises
    ------
    SelectionError
        If google-cloud-bigquery is missing, there are no credentials, or the query fails.
    """
    checks = checks or GeometryChecks()
    try:
        from google.cloud import bigquery
    except ImportError as err:
        raise SelectionError(
            "the BigQuery source needs google-cloud-bigquery: pip install google-cloud-bigquery"
        ) from err
    query = build_bigquery_sql(filters, table=dicom_all_table(idc_version), checks=checks)
    logger.debug("BigQuery query: %s with %s", query.text, query.parameters)
    try:
        client = client if client is not None else bigquery.Client(project=project)
        job = client.query(query.text, job_config=job_config(query))
        rows = [dict(row.items()) for row in job.result()]
    except Exception as err:
        raise SelectionError(
            f"the BigQuery query over {dicom_all_table(idc_version)} failed: {err}. Log in with "
            "`gcloud auth application-default login` and pass a billing project "
            "(--bigquery-project), or use the offline index (--source index).",
            reason="query-failed",
        ) from err
    return rows_to_refs(rows, idc_version, checks.enabled)
