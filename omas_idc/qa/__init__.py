"""The QA stage: per-segment measurements, checks and verdicts for each series.

:func:`assess_series` measures every expected structure of a series from its task label maps
and CT volume (volume, HU statistics, centroid, bounding box, connected components,
truncation by the field of view), checks them (laterality, plausibility, components,
truncation, status) and gives a verdict per segment and per series. The rules are documented
in :mod:`omas_idc.qa.checks`; the SR writer is :mod:`omas_idc.qa.sr` and the release table
and previews are in :mod:`omas_idc.publish`.
"""

from __future__ import annotations

from omas_idc.qa.checks import (
    LATERALITY_TOLERANCE_MM,
    MINIMUM_VOLUME_ML,
    SPLIT_FRACTION,
    assess_series,
    laterality_of,
    measure_series,
)
from omas_idc.qa.measure import body_midline, measure_labelmap
from omas_idc.qa.plausibility import StructureExpectation, load_plausibility
from omas_idc.qa.records import (
    Finding,
    HUStatistics,
    QARecord,
    SegmentMetrics,
    SeriesQA,
    Status,
    Verdict,
)

__all__ = [
    "LATERALITY_TOLERANCE_MM",
    "MINIMUM_VOLUME_ML",
    "SPLIT_FRACTION",
    "Finding",
    "HUStatistics",
    "QARecord",
    "SegmentMetrics",
    "SeriesQA",
    "Status",
    "StructureExpectation",
    "Verdict",
    "assess_series",
    "body_midline",
    "laterality_of",
    "load_plausibility",
    "measure_labelmap",
    "measure_series",
]
