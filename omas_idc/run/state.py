"""Run state: one SQLite database on local disk, one row per series (DESIGN.md).

Each row holds the series' status (``pending``, ``running``, ``done``, ``failed``, or
``refused`` for a failure that a retry cannot change, such as a gap in the slices), the stage it
reached, the number of attempts, the error class, reason and message of the last failure,
per-stage timings, the output paths and the selection its last attempt ran with (``""`` for the
whole model; see :meth:`RunState.reopen_other_selections`). A series is marked ``done`` only
after every output exists (and, for object storage, after its ``DONE.json`` marker is
uploaded). The database must live on a local disk: SQLite's locking is unsafe on network or
FUSE file systems such as a gcsfuse-mounted bucket; where a machine starts fresh,
:meth:`RunState.mark_done_from_markers` rebuilds the finished part from the outputs' markers.
A database that cannot be opened (not SQLite, truncated, damaged) is moved aside by
:func:`open_state` and rebuilt the same way.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunState", "SeriesState", "open_state"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    ref TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    stage TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    error_class TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    timings TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '[]',
    updated TEXT NOT NULL DEFAULT '',
    selection TEXT NOT NULL DEFAULT ''
);
"""
#: Columns added after the first release, with their definition: a state written before them
#: gets them (their default) when it is opened.
_ADDED_COLUMNS = {"selection": "TEXT NOT NULL DEFAULT ''"}
STATUSES = ("pending", "running", "done", "failed", "refused")


@dataclass(frozen=True)
class SeriesState:
    """One row of the run state."""

    series_uid: str
    position: int
    ref: dict[str, Any]
    status: str
    stage: str
    attempts: int
    error_class: str
    reason: str
    message: str
    timings: dict[str, float]
    outputs: list[str]
    selection: str = ""


class RunState:
    """The run's SQLite state (thread-safe: one connection guarded by a lock).

    Parameters
    ----------
    path
        The database file, on a local disk.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {str(r[1]) for r in self._db.execute("PRAGMA table_info(series)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE series ADD COLUMN {name} {definition}")
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    def check(self) -> None:
        """Raise :class:`sqlite3.DatabaseError` unless the database reads back whole.

        SQLite's ``quick_check`` (every page and row readable, no index check) plus a read of
        each table, so that a truncated or overwritten file shows here, not in the middle of
        a run.
        """
        with self._lock:
            problems = [str(r[0]) for r in self._db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:5]))
            self._db.execute("SELECT COUNT(*) FROM meta").fetchone()
            self._db.execute(
                "SELECT series_uid, position, ref, status, stage, attempts, error_class, "
                "reason, message, timings, outputs, updated, selection FROM series LIMIT 1"
            ).fetchall()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A stored run property, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is there already; return the stored one.

        The run's start time is kept this way, so a resumed run writes the same timestamps.
        """
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    # -- series ---------------------------------------------------------------------------
    def add_series(self, refs: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Register series (uid, reference record) in order; known series are left as they are.

        Returns the number of new rows.
        """
        with self._lock:
            start = self._db.execute("SELECT COALESCE(MAX(position), -1) FROM series").fetchone()
            position = int(start[0]) + 1
            added = 0
            self._db.execute("BEGIN")
            for uid, ref in refs:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO series (series_uid, position, ref) VALUES (?, ?, ?)",
                    (uid, position, json.dumps(dict(ref), sort_keys=True, default=str)),
                )
                if cursor.rowcount:
                    added += 1
                    position += 1
            self._db.execute("COMMIT")
        return added

    def _row(self, row: tuple[Any, ...]) -> SeriesState:
        return SeriesState(
            series_uid=row[0],
            position=int(row[1]),
            ref=json.loads(row[2]),
            status=row[3],
            stage=row[4],
            attempts=int(row[5]),
            error_class=row[6],
            reason=row[7],
            message=row[8],
            timings=json.loads(row[9]),
            outputs=json.loads(row[10]),
            selection=str(row[12]),
        )

    def series(self, uid: str) -> SeriesState:
        """The state of one series."""
        with self._lock:
            row = self._db.execute("SELECT * FROM series WHERE series_uid = ?", (uid,)).fetchone()
        if row is None:
            raise KeyError(f"series {uid} is not part of this run")
        return self._row(row)

    def all_series(self) -> list[SeriesState]:
        """Every series, in selection order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM series ORDER BY position").fetchall()
        return [self._row(r) for r in rows]

    def to_do(self, max_attempts: int) -> list[SeriesState]:
        """Series still to process: pending, interrupted while running, or failed with attempts
        left; in selection order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM series WHERE status IN ('pending', 'running') "
                "OR (status = 'failed' AND attempts < ?) ORDER BY position",
                (max_attempts,),
            ).fetchall()
        return [self._row(r) for r in rows]

    def _update(self, uid: str, **values: Any) -> None:
        values["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._lock:
            self._db.execute(
                f"UPDATE series SET {assignments} WHERE series_uid = ?", (*values.values(), uid)
            )

    def mark_running(self, uid: str, stage: str, *, selection: str = "") -> None:
        """The series entered ``stage`` in a run of ``selection``; a new attempt starts at the
        first stage."""
        if stage == "fetch":
            with self._lock:
                self._db.execute(
                    "UPDATE series SET attempts = attempts + 1 WHERE series_uid = ?", (uid,)
                )
        self._update(uid, status="running", stage=stage, selection=selection)

    def mark_done(
        self,
        uid: str,
        outputs: list[str],
        timings: Mapping[str, float],
        *,
        selection: str = "",
    ) -> None:
        """All outputs of the series, made with ``selection``, exist (call only after they
        do)."""
        self._update(
            uid,
            status="done",
            stage="publish",
            error_class="",
            reason="",
            message="",
            outputs=json.dumps(outputs),
            timings=json.dumps(dict(timings), sort_keys=True),
            selection=selection,
        )

    def reopen_other_selections(self, selection: str) -> int:
        """Make every series whose last attempt ran with another selection pending again.

        A series done (or failed, or refused) by a run restricted to other structures holds
        other outputs than this run makes, or failed for a reason that may not hold for this
        selection (no structure of the selection found): it is processed again, with its
        attempts counted from 0. Series of this selection keep their state, so a run resumed
        with the same selection still skips what it finished.

        Returns
        -------
        int
            The number of series made pending.
        """
        with self._lock:
            cursor = self._db.execute(
                "UPDATE series SET status = 'pending', stage = '', attempts = 0, "
                "error_class = '', reason = '', message = '' "
                "WHERE status != 'pending' AND selection != ?",
                (selection,),
            )
        return int(cursor.rowcount)

    def mark_failed(
        self,
        uid: str,
        stage: str,
        error_class: str,
        reason: str,
        message: str,
        *,
        permanent: bool = False,
        selection: str = "",
    ) -> None:
        """The series failed in ``stage`` in a run of ``selection``; it is retried while
        attempts remain, unless the failure is ``permanent`` (the series is then ``refused``
        and not retried by runs of the same selection)."""
        self._update(
            uid,
            status="refused" if permanent else "failed",
            stage=stage,
            error_class=error_class,
            reason=reason,
            message=message[:4000],
            selection=selection,
        )

    def mark_done_from_markers(self, done: Mapping[str, list[str]], *, selection: str = "") -> int:
        """Mark series done whose outputs carry a DONE marker (a run on a fresh machine).

        ``done`` must hold only markers written by runs of ``selection`` (see
        :func:`omas_idc.run.resume.markers_of_selection`).
        """
        count = 0
        for uid, outputs in done.items():
            with self._lock:
                row = self._db.execute(
                    "SELECT status FROM series WHERE series_uid = ?", (uid,)
                ).fetchone()
            if row is not None and row[0] != "done":
                self.mark_done(uid, outputs, {}, selection=selection)
                count += 1
        return count

    def counts(self) -> dict[str, int]:
        """Number of series per status."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM series GROUP BY status"
            ).fetchall()
        found = {status: int(n) for status, n in rows}
        return {status: found.get(status, 0) for status in STATUSES}


def open_state(path: str | Path) -> tuple[RunState, Path | None]:
    """Open the run state at ``path``; move a damaged one aside and start an empty one.

    A file that is not an SQLite database, is truncated or fails SQLite's ``quick_check`` is
    renamed to ``<name>.corrupt-<UTC time>`` in the same folder (with its ``-wal`` and ``-shm``
    files), a warning is logged, and a new, empty state is created; the caller then rebuilds
    the finished series from the outputs' ``DONE.json`` markers
    (:meth:`RunState.mark_done_from_markers`), so nothing that has a marker is redone.

    Returns
    -------
    tuple
        The state, and where the damaged file was moved (``None`` if it was sound).
    """
    path = Path(path)
    try:
        state = RunState(path)
    except sqlite3.DatabaseError as err:
        problem: sqlite3.DatabaseError = err
    else:
        try:
            state.check()
            return state, None
        except sqlite3.DatabaseError as err:
            state.close()
            problem = err
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
    logger.warning(
        "the run state %s cannot be read (%s): moved it aside to %s and started a new state; "
        "series with a DONE marker in the output are not redone, the others (and their "
        "attempt counts) start over",
        path,
        problem,
        aside.name,
    )
    return RunState(path), aside
