"""``select_series``: filters -> ranked, sharded, de-duplicated list of ``SeriesRef``.

The steps, in this order (so that a shard's membership depends only on the filters, the
per-study rule and the IDC version, never on what has been processed already):

1. query the source (the IDC index offline, or BigQuery) with the filters;
2. with ``per_study="one"``, keep the best-ranked series of each study
   (:mod:`omas_idc.select.ranking`);
3. sort by SeriesInstanceUID and take the shard (:class:`~omas_idc.select.filters.Shard`);
4. skip series that already have a segmentation from ``skip_algorithm``: in IDC
   (``seg_index``, when available) and in the run's own outputs (always);
5. keep the first ``limit`` series.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from omas_idc.choices import suggestion
from omas_idc.errors import SelectionError
from omas_idc.select.filters import SelectionFilters, Shard
from omas_idc.select.ranking import one_per_study
from omas_idc.series_ref import SeriesRef

__all__ = ["PER_STUDY", "SOURCES", "Selection", "completed_series", "select_series"]

logger = logging.getLogger(__name__)

PER_STUDY = ("all", "one")
SOURCES = ("index", "bigquery")


@dataclass(frozen=True)
class Selection:
    """The result of :func:`select_series`.

    Attributes
    ----------
    refs
        The selected series, sorted by SeriesInstanceUID.
    idc_version
        The IDC data release they were selected from.
    source
        ``"index"`` or ``"bigquery"``.
    notes
        Checks that could not be made here (offline tables) and are left to the read stage.
    skipped_existing
        SeriesInstanceUIDs of the shard dropped because a segmentation already exists.
    """

    refs: tuple[SeriesRef, ...]
    idc_version: int
    source: str
    notes: tuple[str, ...] = ()
    skipped_existing: tuple[str, ...] = field(default=(), repr=False)

    def provenance(self, filters: SelectionFilters, **extra: str) -> dict[str, str]:
        """Text describing how the selection was made, stored with the parquet file."""
        return {
            "idc_version": str(self.idc_version),
            "source": self.source,
            **{f"filter.{k}": v for k, v in filters.describe().items()},
            "notes": " | ".join(self.notes),
            **extra,
        }


def completed_series(outputs_dir: Path, algorithm: str | None = None) -> set[str]:
    """SeriesInstanceUIDs with a ``DONE.json`` marker below ``outputs_dir``.

    A marker is a JSON object naming its source series in ``source_series_instance_uid``
    (or ``series_instance_uid``) and, optionally, the ``algorithm`` that produced it; when
    ``algorithm`` is given, markers of other algorithms do not count. Unreadable markers are
    logged and ignored (the series is then processed again, which is safe: outputs are
    deterministic).
    """
    done: set[str] = set()
    if not outputs_dir.is_dir():
        return done
    for marker in outputs_dir.rglob("DONE.json"):
        try:
            content = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable marker %s: %s", marker, err)
            continue
        if not isinstance(content, dict):
            continue
        uid = content.get("source_series_instance_uid") or content.get("series_instance_uid")
        marker_algorithm = content.get("algorithm")
        if (
            algorithm
            and marker_algorithm
            and algorithm.lower() not in str(marker_algorithm).lower()
        ):
            continue
        if isinstance(uid, str):
            done.add(uid)
    return done


def _validate_choice(name: str, value: str, choices: Iterable[str]) -> None:
    options = list(choices)
    if value not in options:
        raise SelectionError(
            f"{name} must be one of {options}, got {value!r}.{suggestion(value, options)}"
        )


def select_series(
    filters: SelectionFilters,
    *,
    source: Literal["index", "bigquery"] | str = "index",
    per_study: Literal["all", "one"] | str = "all",
    shard: Shard | None = None,
    limit: int | None = None,
    skip_algorithm: str | None = None,
    outputs_dir: Path | None = None,
    download_indices: bool = False,
    drop_irregular: bool = True,
    bigquery_project: str | None = None,
) -> Selection:
    """Select IDC series (see the module docstring for the order of the steps).

    Parameters
    ----------
    filters
        What to select.
    source
        ``"index"``: idc-index's parquet through duckdb (offline). ``"bigquery"``: the
        versioned ``dicom_all`` table of the same IDC release, with the geometry checks of
        :mod:`omas_idc.select.bigquery` (needs Google Cloud credentials).
    per_study
        ``"all"`` series, or the ``"one"`` best-ranked series of each study.
    shard
        Which shard of the sorted selection to return (default: all of it).
    limit
        Return at most this many series of the shard.
    skip_algorithm
        Skip series that already have a SEG from this algorithm (IDC's ``seg_index`` when
        available, and ``DONE.json`` markers below ``outputs_dir``).
    outputs_dir
        The run's output folder, whose ``DONE.json`` markers mark series as done. Used even
        without ``skip_algorithm`` (then every marker counts).
    download_indices
        Let idc-index download ``ct_index``, ``volume_geometry_index`` and ``seg_index``
        when they are not cached (index source only).
    drop_irregular
        Drop series that ``volume_geometry_index`` says are not a regular 3D volume.
    bigquery_project
        The Google Cloud project billed for BigQuery queries.

    Returns
    -------
    Selection
        The series and the IDC version they come from.
    """
    _validate_choice("source", source, SOURCES)
    _validate_choice("per_study", per_study, PER_STUDY)
    if limit is not None and limit < 0:
        raise SelectionError(f"limit must not be negative, got {limit}")
    shard = shard or Shard()
    from omas_idc.select.index import IndexTables, query_index, series_with_segmentation

    tables = IndexTables.locate(download=download_indices and source == "index")
    notes = tables.notes
    if source == "index":
        refs = query_index(filters, tables, drop_irregular=drop_irregular)
    else:
        from omas_idc.select.bigquery import query_bigquery

        refs = query_bigquery(filters, idc_version=tables.idc_version, project=bigquery_project)
        notes = ()
    logger.info("%d series pass the filters", len(refs))
    if per_study == "one":
        refs = one_per_study(refs)
        logger.info("%d series after keeping one per study", len(refs))
    ordered = sorted(refs, key=lambda r: r.series_instance_uid)
    refs = ordered[shard.index :: shard.count]
    skipped: set[str] = set()
    if skip_algorithm:
        in_idc = series_with_segmentation(
            tables, skip_algorithm, [r.series_instance_uid for r in refs]
        )
        if in_idc is not None:
            skipped |= in_idc
    if outputs_dir is not None:
        skipped |= completed_series(outputs_dir, skip_algorithm)
    skipped &= {r.series_instance_uid for r in refs}
    if skipped:
        refs = [r for r in refs if r.series_instance_uid not in skipped]
        logger.info("skipping %d series that already have a segmentation", len(skipped))
    if limit is not None:
        refs = refs[:limit]
    return Selection(
        refs=tuple(refs),
        idc_version=tables.idc_version,
        source=source,
        notes=notes,
        skipped_existing=tuple(sorted(skipped)),
    )
