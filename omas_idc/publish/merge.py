"""Merge per-shard release tables into one release table.

Each task of a sharded run writes ``release/shard-<i>-of-<n>.parquet`` below the run's output.
:func:`merge_release_tables` combines them into one table, in order to load it into BigQuery
or publish it, and refuses anything that would make the merged table lie:

- tables of different schemas;
- tables of different releases: rows made by another omas-idc version or another model
  (version), or parquet metadata (``omas_idc*`` keys) that differ;
- an incomplete set of shards (``shard-3-of-8`` without ``shard-5-of-8``), unless allowed;
- two different rows for one segment, i.e. one (source series, task, label).

Rows that are exactly equal are kept once: a retried task re-writes identical rows, since its
UIDs are deterministic. The merged rows are sorted by (source series, task, label), so that
merging the same inputs gives the same file. The work is done by DuckDB, which streams, sorts
out of core and compares NaN equal to NaN.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omas_idc.atomic import atomic_write_with
from omas_idc.errors import ConfigurationError, QAError

__all__ = [
    "IDENTITY_COLUMNS",
    "KEY_COLUMNS",
    "MergeReport",
    "find_release_tables",
    "merge_release_tables",
]

logger = logging.getLogger(__name__)

#: The columns that identify one segment of one series: at most one row each.
KEY_COLUMNS = ("source_series_instance_uid", "task", "label")
#: The columns that must hold one value across a release.
IDENTITY_COLUMNS = ("omas_idc_version", "model", "model_version")

_SHARD_NAME = re.compile(r"^shard-(\d+)-of-(\d+)\.parquet$")
_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class MergeReport:
    """What a merge read and wrote.

    Attributes
    ----------
    output
        The merged table.
    inputs
        The tables read, in the order given.
    rows_read, rows_written
        Rows in all inputs, and rows in the merged table.
    series
        Distinct source series in the merged table.
    identity
        The release's (omas-idc version, model, model version), ``None`` for empty inputs.
    shard_counts
        The ``n`` of the ``shard-i-of-n`` inputs (normally one value).
    """

    output: Path
    inputs: tuple[Path, ...]
    rows_read: int
    rows_written: int
    series: int
    identity: tuple[str, ...] | None
    shard_counts: tuple[int, ...] = field(default=())

    @property
    def duplicates_dropped(self) -> int:
        """Rows dropped as exact duplicates of another row."""
        return self.rows_read - self.rows_written


def find_release_tables(paths: Iterable[str | Path]) -> list[Path]:
    """The release tables named by ``paths``: parquet files, or run output folders.

    A folder contributes its ``release/shard-*-of-*.parquet`` files (a run's output) or, where
    it has no ``release/`` folder, its own ``shard-*-of-*.parquet`` files.

    Raises
    ------
    ConfigurationError
        If a path does not exist or a folder holds no shard tables.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise ConfigurationError(
                f"{path} does not exist: pass release tables (.parquet) or a run's output folder",
                reason="missing",
            )
        folder = path / "release" if (path / "release").is_dir() else path
        shards = sorted(folder.glob("shard-*-of-*.parquet"))
        if not shards:
            raise ConfigurationError(
                f"no shard release tables (shard-<i>-of-<n>.parquet) in {folder}: is it a run's "
                "output folder, and has the run finished? Copy a bucket's release/ folder "
                "locally first (gcloud storage cp -r gs://BUCKET/PREFIX/release .)",
                reason="missing",
            )
        found.extend(shards)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _check_shards(paths: Sequence[Path], allow_missing: bool) -> tuple[int, ...]:
    seen: dict[int, set[int]] = {}
    for path in paths:
        match = _SHARD_NAME.match(path.name)
        if match:
            seen.setdefault(int(match[2]), set()).add(int(match[1]))
    for count, indices in sorted(seen.items()):
        missing = sorted(set(range(count)) - indices)
        if missing and not allow_missing:
            shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ConfigurationError(
                f"{len(missing)} of {count} shard tables are missing (shards {shown}): rerun "
                "those tasks, or pass --allow-missing-shards to merge a partial release",
                reason="missing-shards",
            )
    return tuple(sorted(seen))


def _check_schemas(paths: Sequence[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = None
    first_metadata: dict[bytes, bytes] = {}
    for path in paths:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as err:
            raise QAError(f"{path} is not a readable parquet file: {err}", reason="schema") from err
        metadata = {k: v for k, v in (schema.metadata or {}).items() if k.startswith(b"omas_idc")}
        schema = schema.remove_metadata()
        if first is None:
            first, first_metadata = schema, metadata
            continue
        if not schema.equals(first):
            theirs = {f.name: str(f.type) for f in schema}
            ours = {f.name: str(f.type) for f in first}
            differences = sorted(
                f"{name}: {ours.get(name, 'absent')} vs {theirs.get(name, 'absent')}"
                for name in set(ours) | set(theirs)
                if ours.get(name) != theirs.get(name)
            ) or ["column order"]
            raise QAError(
                f"{path} has another schema than {paths[0]} ({'; '.join(differences[:8])}): "
                "tables written by different omas-idc versions cannot be merged; rerun the "
                "older shards with the same version",
                reason="schema",
            )
        if metadata != first_metadata:
            raise ConfigurationError(
                f"{path} belongs to another release than {paths[0]} (parquet metadata "
                f"{metadata} vs {first_metadata}); merge one release at a time",
                reason="mixed-releases",
            )
    return first


def _query_rows(con: Any, sql: str, files: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in con.execute(sql, {"files": files}).fetchall()]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_identity(con: Any, files: list[str]) -> tuple[str, ...] | None:
    columns = ", ".join(_quote(c) for c in IDENTITY_COLUMNS)
    rows = _query_rows(
        con,
        f"SELECT DISTINCT {columns}, filename FROM read_parquet($files, filename=true) "
        "ORDER BY ALL",
        files,
    )
    identities = sorted({tuple(str(v) for v in row[:-1]) for row in rows})
    if len(identities) > 1:
        where: dict[tuple[str, ...], str] = {}
        for row in rows:
            where.setdefault(tuple(str(v) for v in row[:-1]), Path(row[-1]).name)
        shown = "; ".join(
            f"{dict(zip(IDENTITY_COLUMNS, identity, strict=True))} in {where[identity]}"
            for identity in identities[:4]
        )
        raise ConfigurationError(
            f"the tables mix {len(identities)} releases ({shown}): merge the tables of one "
            "release (one omas-idc version and model version) at a time",
            reason="mixed-releases",
        )
    return identities[0] if identities else None


def _check_conflicts(con: Any, files: list[str]) -> None:
    keys = ", ".join(_quote(c) for c in KEY_COLUMNS)
    conflicts = _query_rows(
        con,
        f"SELECT {keys}, count(*) FROM (SELECT DISTINCT * EXCLUDE (filename) FROM "
        f"read_parquet($files, filename=true)) GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL",
        files,
    )
    if not conflicts:
        return
    first = conflicts[0][: len(KEY_COLUMNS)]
    condition = " AND ".join(f"{_quote(c)} IS NOT DISTINCT FROM ?" for c in KEY_COLUMNS)
    result = con.execute(
        f"SELECT * FROM read_parquet(?, filename=true) WHERE {condition}", [files, *first]
    )
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    differing = sorted(
        {
            name
            for name in names
            if name != "filename" and len({repr(row[name]) for row in rows}) > 1
        }
    )
    sources = sorted({Path(row["filename"]).name for row in rows})
    raise QAError(
        f"{len(conflicts)} segment(s) have conflicting rows, e.g. "
        f"{dict(zip(KEY_COLUMNS, first, strict=True))} differs in {differing} between "
        f"{sources}. A retried shard writes identical rows; different ones mean two runs "
        "with different inputs or settings wrote into one release: remove the stale tables",
        series_instance_uid=str(first[0]),
        reason="conflicting-rows",
    )


def merge_release_tables(
    inputs: Iterable[str | Path],
    output: str | Path,
    *,
    allow_missing_shards: bool = False,
) -> MergeReport:
    """Merge per-shard release tables into one parquet file (written atomically).

    Parameters
    ----------
    inputs
        Release tables, or run output folders (see :func:`find_release_tables`).
    output
        The merged table to write; it must not be one of the inputs.
    allow_missing_shards
        Merge even where some ``shard-i-of-n`` tables of a shard count are absent.

    Returns
    -------
    MergeReport
        Rows read and written, series, the release identity.

    Raises
    ------
    ConfigurationError
        If inputs are missing, shards are missing, or the tables mix releases.
    QAError
        If the schemas differ or one segment has two different rows.
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = find_release_tables(inputs)
    if not paths:
        raise ConfigurationError("no release tables to merge", reason="missing")
    target = Path(output)
    if target.resolve() in {p.resolve() for p in paths}:
        raise ConfigurationError(
            f"the output {target} is also an input: write the merged table elsewhere",
            reason="invalid-setting",
        )
    counts = _check_shards(paths, allow_missing_shards)
    schema = _check_schemas(paths)
    missing = [c for c in (*KEY_COLUMNS, *IDENTITY_COLUMNS) if c not in schema.names]
    if missing:
        raise QAError(f"{paths[0]} is not a release table: no columns {missing}", reason="schema")
    files = [str(p) for p in paths]
    con = duckdb.connect()
    try:
        counted = con.execute("SELECT count(*) FROM read_parquet($files)", {"files": files})
        rows_read = int((counted.fetchone() or (0,))[0])
        distinct = con.execute(
            f"SELECT count(DISTINCT {_quote(KEY_COLUMNS[0])}) FROM read_parquet($files)",
            {"files": files},
        )
        series = int((distinct.fetchone() or (0,))[0])
        identity = _check_identity(con, files)
        _check_conflicts(con, files)
        order = ", ".join(_quote(c) for c in KEY_COLUMNS)
        result = con.execute(
            f"SELECT DISTINCT * FROM read_parquet($files) ORDER BY {order}", {"files": files}
        )
        reader = (
            result.to_arrow_reader(_BATCH_ROWS)
            if hasattr(result, "to_arrow_reader")
            else result.fetch_record_batch(_BATCH_ROWS)
        )
        rows_written = 0

        def write(temporary: Path) -> None:
            nonlocal rows_written
            with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
                for batch in reader:
                    table = pa.Table.from_batches([batch]).cast(schema)
                    writer.write_table(table)
                    rows_written += table.num_rows

        atomic_write_with(target, write)
    finally:
        con.close()
    report = MergeReport(
        output=target,
        inputs=tuple(paths),
        rows_read=rows_read,
        rows_written=rows_written,
        series=series,
        identity=identity,
        shard_counts=counts,
    )
    logger.info(
        "merged %d tables (%d rows, %d duplicates dropped) into %s",
        len(paths),
        rows_read,
        report.duplicates_dropped,
        target,
    )
    return report
