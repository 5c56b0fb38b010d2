"""Selection from the IDC index that idc-index ships: duckdb SQL over its parquet files.

The main ``index`` table (one row per series) is part of the idc-index-data package and works
offline. ``ct_index`` (kernel, slice thickness, ImageType), ``volume_geometry_index``
(``regularly_spaced_3d_volume``) and ``seg_index`` (existing segmentations) are downloaded on
demand by idc-index into its cache; :meth:`IndexTables.locate` uses them where they are cached,
downloads them when asked to and the internet is reachable, and otherwise records that the
checks they enable are left to the read stage.

This is the only module that imports ``idc_index`` (for downloading the optional tables).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omas_idc.errors import SelectionError
from omas_idc.select.filters import SelectionFilters, SqlParameters, SqlQuery, sql_string
from omas_idc.series_ref import SeriesRef

__all__ = [
    "OPTIONAL_TABLES",
    "IndexTables",
    "idc_version",
    "query_index",
    "series_with_segmentation",
]

logger = logging.getLogger(__name__)

#: The tables idc-index downloads on demand that the selection can use.
OPTIONAL_TABLES = ("ct_index", "volume_geometry_index", "seg_index")


def idc_version() -> int:
    """The IDC data release of the installed idc-index-data (its major version: 25 for v25)."""
    import idc_index_data

    return int(str(idc_index_data.__version__).split(".")[0])


def _cache_dir() -> Path:
    """Where idc-index stores the tables it downloads (versioned like idc-index does it)."""
    from importlib.metadata import version

    import platformdirs

    return Path(
        platformdirs.user_data_dir("idc_index_data", "IDC", version=version("idc-index-data"))
    )


def _internet_reachable(host: str = "github.com") -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _download_tables(names: Sequence[str]) -> dict[str, Path]:
    """Let idc-index download ``names``; return those that exist afterwards.

    idc-index's ``fetch_index`` logs and returns on HTTP errors and raises on connection
    errors; either way only a readable file on disk counts as success.
    """
    from idc_index import IDCClient

    client = IDCClient()
    found: dict[str, Path] = {}
    for name in names:
        try:
            client.fetch_index(name)
        except Exception as err:  # noqa: BLE001 - idc-index raises requests' and OS errors
            logger.warning("idc-index could not download %s: %s", name, err)
            continue
        path = client.indices_overview.get(name, {}).get("file_path")
        if path and Path(path).is_file():
            found[name] = Path(path)
        else:
            logger.warning("idc-index did not download %s (no file afterwards)", name)
    return found


@dataclass(frozen=True)
class IndexTables:
    """The parquet files a selection reads.

    Attributes
    ----------
    main
        idc-index-data's ``idc_index.parquet`` (one row per series).
    idc_version
        The IDC data release of ``main``.
    optional
        ``ct_index``, ``volume_geometry_index`` and ``seg_index`` where available.
    notes
        What could not be used and what that means, for the log and the provenance.
    """

    main: Path
    idc_version: int
    optional: dict[str, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def locate(cls, *, download: bool = False) -> IndexTables:
        """Find the index tables: cached optional tables, downloaded ones if ``download``.

        Parameters
        ----------
        download
            Ask idc-index to download the optional tables that are not cached (needs the
            internet; skipped quickly when github.com does not resolve).
        """
        import idc_index_data

        main = idc_index_data.IDC_INDEX_PARQUET_FILEPATH
        if main is None or not Path(main).is_file():
            raise SelectionError(
                "the IDC index parquet of idc-index-data is missing; reinstall it with "
                "`pip install --force-reinstall idc-index-data`"
            )
        cache = _cache_dir()
        optional = {
            name: cache / f"{name}.parquet"
            for name in OPTIONAL_TABLES
            if (cache / f"{name}.parquet").is_file()
        }
        missing = [n for n in OPTIONAL_TABLES if n not in optional]
        if missing and download:
            if _internet_reachable():
                optional.update(_download_tables(missing))
            else:
                logger.warning("the internet is not reachable: not downloading %s", missing)
        notes = []
        if "ct_index" not in optional:
            notes.append(
                "ct_index unavailable (offline): localizers are not dropped and kernels come "
                "from SeriesDescription; the read stage drops localizers"
            )
        if "volume_geometry_index" not in optional:
            notes.append(
                "volume_geometry_index unavailable (offline): irregular volumes are not dropped "
                "here; the read stage checks every series' geometry"
            )
        if "seg_index" not in optional:
            notes.append(
                "seg_index unavailable (offline): existing IDC segmentations cannot be skipped; "
                "only the run's own outputs are"
            )
        for note in notes:
            logger.info(note)
        return cls(Path(main), idc_version(), optional, tuple(notes))


def _parquet(path: Path) -> str:
    return f"read_parquet({sql_string(str(path))})"


def build_index_sql(
    filters: SelectionFilters, tables: IndexTables, *, drop_irregular: bool = True
) -> SqlQuery:
    """The duckdb query selecting ``filters`` from ``tables``, one row per series.

    With ``ct_index`` the series whose ImageType says LOCALIZER are dropped; with
    ``volume_geometry_index`` and ``drop_irregular`` those that are not a regularly spaced
    3D volume are dropped (series absent from it are kept: unknown). The filter values are
    the query's parameters (``$name``), never part of its text.
    """
    parameters = SqlParameters("duckdb")
    where = filters.where_clauses(parameters)
    selected = f"SELECT * FROM {_parquet(tables.main)}" + (
        f" WHERE {' AND '.join(where)}" if where else ""
    )
    columns = ["s.*"]
    joins = []
    conditions = []
    ct = tables.optional.get("ct_index")
    if ct is not None:
        joins.append(f"LEFT JOIN {_parquet(ct)} ct ON ct.SeriesInstanceUID = s.SeriesInstanceUID")
        columns += [
            "array_to_string(ct.ConvolutionKernel, '\\') AS ct_kernel",
            "ct.SliceThickness AS ct_slice_thickness",
        ]
        conditions.append("NOT coalesce(list_contains(ct.ImageType, 'LOCALIZER'), false)")
    geometry = tables.optional.get("volume_geometry_index")
    if geometry is not None:
        joins.append(
            f"LEFT JOIN {_parquet(geometry)} g ON g.SeriesInstanceUID = s.SeriesInstanceUID"
        )
        columns.append("g.regularly_spaced_3d_volume AS regular_volume")
        if drop_irregular:
            conditions.append("coalesce(g.regularly_spaced_3d_volume, true)")
    sql = f"WITH s AS ({selected}) SELECT {', '.join(columns)} FROM s {' '.join(joins)}"
    if conditions:
        sql += f" WHERE {' AND '.join(conditions)}"
    return parameters.query(sql + " ORDER BY s.SeriesInstanceUID")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def row_to_ref(row: dict[str, Any], version: int) -> SeriesRef:
    """A ``SeriesRef`` from one row of the IDC index (plus optional ``ct_*`` columns)."""
    size_mb = row.get("series_size_MB")
    crdc = row.get("crdc_series_uuid") or str(row["series_aws_url"]).split("/")[3]
    return SeriesRef(
        series_instance_uid=row["SeriesInstanceUID"],
        study_instance_uid=row["StudyInstanceUID"],
        patient_id=row["PatientID"],
        collection_id=row["collection_id"],
        modality=row["Modality"],
        crdc_series_uuid=crdc,
        instance_count=int(row["instanceCount"]),
        size_bytes=round(float(size_mb or 0.0) * 1e6),
        aws_bucket=row["aws_bucket"],
        idc_version=version,
        sop_class_uid=row.get("SOPClassUID") or "",
        license_short_name=row.get("license_short_name"),
        body_part_examined=row.get("BodyPartExamined"),
        series_description=row.get("SeriesDescription"),
        convolution_kernel=row.get("ct_kernel") or None,
        slice_thickness_mm=_optional_float(row.get("ct_slice_thickness")),
        regular_volume=row.get("regular_volume"),
    )


def query_index(
    filters: SelectionFilters, tables: IndexTables, *, drop_irregular: bool = True
) -> list[SeriesRef]:
    """The series of ``tables`` that pass ``filters``, sorted by SeriesInstanceUID."""
    import duckdb

    query = build_index_sql(filters, tables, drop_irregular=drop_irregular)
    logger.debug("index query: %s with %s", query.text, query.parameters)
    try:
        with duckdb.connect() as connection:
            cursor = connection.execute(query.text, dict(query.parameters))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    except duckdb.Error as err:
        raise SelectionError(
            f"the IDC index query failed: {err}. The index files may be damaged: reinstall "
            "idc-index-data, or delete idc-index's cached tables in "
            f"{_cache_dir()}"
        ) from err
    return [row_to_ref(row, tables.idc_version) for row in rows]


def series_with_segmentation(
    tables: IndexTables, algorithm: str, series_uids: Sequence[str]
) -> set[str] | None:
    """Those of ``series_uids`` that IDC already holds a SEG of ``algorithm`` for.

    ``algorithm`` is matched case-insensitively as a substring of the SEG's
    SegmentAlgorithmName. Returns ``None`` where ``seg_index`` is not available.
    """
    import duckdb

    seg = tables.optional.get("seg_index")
    if seg is None or not series_uids:
        return None if seg is None else set()
    sql = (
        f"SELECT DISTINCT segmented_SeriesInstanceUID FROM {_parquet(seg)} "
        "WHERE contains(lower(CAST(AlgorithmName AS VARCHAR)), lower(?)) "
        "AND segmented_SeriesInstanceUID IN (SELECT unnest(?::VARCHAR[]))"
    )
    with duckdb.connect() as connection:
        rows = connection.execute(sql, [algorithm, list(series_uids)]).fetchall()
    return {r[0] for r in rows}
