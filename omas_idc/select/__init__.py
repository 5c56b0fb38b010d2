"""The select stage: IDC series -> ``SeriesRef`` (see :func:`select_series`).

Sources: the IDC index shipped by idc-index (duckdb over its parquet; offline) and BigQuery
(``--source bigquery``). This sub-package is the only place that imports ``idc_index``;
duckdb and google-cloud-bigquery are imported inside the functions that query.
"""

from __future__ import annotations

from omas_idc.select.filters import CT_SOP_CLASSES, SelectionFilters, Shard
from omas_idc.select.ranking import kernel_class, one_per_study, rank_key
from omas_idc.select.selection import Selection, completed_series, select_series

__all__ = [
    "CT_SOP_CLASSES",
    "Selection",
    "SelectionFilters",
    "Shard",
    "completed_series",
    "kernel_class",
    "one_per_study",
    "rank_key",
    "select_series",
]
