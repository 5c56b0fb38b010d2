"""``omas-idc run`` and ``omas-idc demo`` as functions: configuration in, outputs and report out.

:func:`execute_run` wires the stages together: the selection (a saved selection file, or the
IDC index), the local run state (rebuilt from the output's ``DONE.json`` markers on a fresh
machine), the engine, the pipeline (:func:`omas_idc.run.pipeline.run_series`), the shard's
release table and the JSON run report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from omas_idc import __version__
from omas_idc.atomic import atomic_write_text
from omas_idc.encode import SegLayout
from omas_idc.errors import ConfigurationError
from omas_idc.publish.locations import open_store
from omas_idc.publish.store import OutputStore
from omas_idc.run.config import RunConfig
from omas_idc.run.pipeline import (
    Engine,
    ModelInfo,
    RunOptions,
    RunSummary,
    run_series,
)
from omas_idc.run.state import RunState
from omas_idc.series_ref import SeriesRef
from omas_idc.volume import CTVolume

__all__ = [
    "RunRequest",
    "RunResult",
    "check_work_dir",
    "default_work_dir",
    "execute_run",
    "filesystem_type",
    "release_table_name",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """One invocation of the run.

    Attributes
    ----------
    config
        The run configuration.
    out
        Output folder or bucket URL.
    work_dir
        Local work folder: the state database, downloads, staging. Never a FUSE mount.
    shard
        ``(index, count)``; ``(0, 1)`` for the whole selection.
    limit
        Process at most this many series of the (sharded) selection.
    selection_file
        A saved selection (parquet of SeriesRefs, from ``omas-idc select --out``) to use
        instead of querying the index.
    endpoint_url
        S3 endpoint for fetching (tests: a loopback server) and for a bucket output.
    timestamp
        Content date/time of the outputs; default: the run's first start (kept in the state).
    local_series
        Series UID -> a local DICOM folder (no fetch), e.g. the demo's phantom.
    """

    config: RunConfig
    out: str
    work_dir: Path
    shard: tuple[int, int] = (0, 1)
    limit: int | None = None
    selection_file: Path | None = None
    endpoint_url: str | None = None
    timestamp: datetime | None = None
    local_series: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """What a run did: the summary, the report's path and the shard's release table."""

    summary: RunSummary
    report_path: Path
    release_table: str | None
    counts: dict[str, int]


def filesystem_type(path: str | Path, mounts: str | None = None) -> str:
    """The type of the file system holding ``path`` (``ext4``, ``fuse.gcsfuse`` ...).

    Read from ``mounts`` (the text of ``/proc/self/mounts``; read from there by default) by
    the longest mount point that contains ``path``; ``""`` where that cannot be told.
    """
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return ""
    target = Path(path).absolute()
    best, kind = -1, ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/self/mounts escapes blanks in mount points as octal (\040).
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def check_work_dir(work_dir: Path, mounts: str | None = None) -> Path:
    """``work_dir``, refused where it lies on a FUSE mount (a gcsfuse-mounted bucket).

    Raises
    ------
    ConfigurationError
        If ``work_dir`` is on a FUSE file system: SQLite's locking and atomic renames, which
        the run state and the staging of outputs rely on, do not hold there.
    """
    kind = filesystem_type(work_dir, mounts)
    if kind == "fuse" or kind.startswith("fuse."):
        raise ConfigurationError(
            f"the work folder {work_dir} is on a FUSE mount ({kind}): the run state (SQLite) "
            "and the staging of outputs need a local disk; pass --work on local disk "
            "(the outputs may stay on the mount)",
            reason="work-on-fuse",
        )
    return work_dir


def default_work_dir(out: str, mounts: str | None = None) -> Path:
    """The work folder when none is given: ``OUT/.omas-idc-work`` for a local output folder,
    else (a bucket URL, or a folder on a FUSE mount) ``omas-idc-work/<hash of OUT>`` in the
    current folder, one per output so that two releases never share a state."""
    if "://" not in out and not filesystem_type(out, mounts).startswith("fuse"):
        return Path(out) / ".omas-idc-work"
    digest = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return Path("omas-idc-work") / digest


def release_table_name(shard: tuple[int, int]) -> PurePosixPath:
    """The shard's release table below the output root."""
    return PurePosixPath("release", f"shard-{shard[0]}-of-{shard[1]}.parquet")


def _select(request: RunRequest) -> list[SeriesRef]:
    from omas_idc.select import SelectionFilters, Shard, select_series
    from omas_idc.series_ref import read_selection

    index, count = request.shard
    if request.selection_file is not None:
        refs = sorted(read_selection(request.selection_file), key=lambda r: r.series_instance_uid)
        refs = refs[index::count]
    else:
        s = request.config.selection
        if not s.collections and not s.series_uids:
            raise ConfigurationError(
                "nothing to select: give --collection, a configuration with "
                "[selection] collections, or --selection FILE",
                reason="empty-selection",
            )
        selection = select_series(
            SelectionFilters(
                collections=s.collections,
                modality=s.modality,
                min_slices=s.min_slices,
                body_parts=s.body_parts,
                licenses=s.licenses,
                series_uids=s.series_uids,
            ),
            source=s.source,
            per_study=s.per_study,
            shard=Shard(index, count),
            drop_irregular=s.drop_irregular,
        )
        refs = list(selection.refs)
    if request.limit is not None:
        refs = refs[: request.limit]
    return refs


def _loader(request: RunRequest) -> Callable[[SeriesRef, Path], Path]:
    from omas_idc.fetch import FetchOptions, fetch_series

    options = FetchOptions(
        source=request.config.run.fetch_source,
        endpoint_url=request.endpoint_url,
        workers=request.config.run.fetch_workers,
        attempts=request.config.run.max_attempts,
        # The read stage parses every file next: one parse per series.
        check_contents=False,
    )

    def load(ref: SeriesRef, work_dir: Path) -> Path:
        local = request.local_series.get(ref.series_instance_uid)
        if local is not None:
            return local
        return fetch_series(ref, work_dir / "dicom", options).path

    return load


def _read(folder: Path, ref: SeriesRef) -> CTVolume:
    from omas_idc.read import read_series

    return read_series(folder, series_instance_uid=ref.series_instance_uid)


def _collect_rows(store: OutputStore, refs: Sequence[SeriesRef], state: RunState) -> Any:
    """The release rows of the shard's finished series, from their ``qa.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omas_idc.publish.release_table import release_schema

    tables = []
    done = {s.series_uid for s in state.all_series() if s.status == "done"}
    with tempfile.TemporaryDirectory() as folder:
        for ref in refs:
            if ref.series_instance_uid not in done:
                continue
            local = Path(folder) / f"{ref.series_instance_uid}.parquet"
            store.get_side_file(ref, "qa.parquet", local)
            tables.append(pq.read_table(local))
    if not tables:
        return pa.Table.from_pylist([], schema=release_schema())
    return pa.concat_tables(tables)


#: The packages whose versions decide what a run writes (recorded in the run report).
REPORTED_PACKAGES = ("torch", "numpy", "pydicom", "highdicom", "nnunetv2")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in REPORTED_PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def execute_run(
    request: RunRequest,
    engine: Engine,
    model: ModelInfo,
    *,
    on_progress: Callable[[str, SeriesRef, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    refs: Sequence[SeriesRef] | None = None,
) -> RunResult:
    """Run the pipeline for ``request`` with ``engine``; write the shard table and the report.

    ``on_progress`` and ``on_start`` are passed to :func:`~omas_idc.run.pipeline.run_series`.
    """
    import pyarrow.parquet as pq

    from omas_idc.run.engine_setup import model_catalog

    request.work_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(request.out, endpoint_url=request.endpoint_url)
    selected = list(refs) if refs is not None else _select(request)
    with RunState(request.work_dir / "state.sqlite") as state:
        started = (request.timestamp or datetime.now(timezone.utc)).replace(microsecond=0)
        stamp = datetime.fromisoformat(state.set_meta_once("timestamp", started.isoformat()))
        state.add_series((r.series_instance_uid, r.to_record()) for r in selected)
        rebuilt = state.mark_done_from_markers(store.done_series())
        if rebuilt:
            logger.info("%d series already have DONE markers in %s", rebuilt, request.out)
        options = RunOptions(
            work_dir=request.work_dir,
            seg_layout=SegLayout.parse(request.config.output.seg_layout, "SEG layout"),
            previews=request.config.qa.previews,
            max_attempts=request.config.run.max_attempts,
            queue_size=request.config.run.queue_size,
            delete_downloads=request.config.output.delete_downloads,
            min_volume_ml=request.config.qa.min_volume_ml,
        )
        summary = run_series(
            list(selected),
            state=state,
            store=store,
            engine=engine,
            model=model,
            catalog=model_catalog(request.config.model),
            options=options,
            load_series=_loader(request),
            read_volume=_read,
            timestamp=stamp,
            on_progress=on_progress,
            on_start=on_start,
        )
        table = _collect_rows(store, selected, state)
        local_table = request.work_dir / release_table_name(request.shard).name
        pq.write_table(table, local_table)
        table_url = store.put_side_file(None, str(release_table_name(request.shard)), local_table)
        counts = state.counts()
    report = {
        "omas_idc_version": __version__,
        "versions": _versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "release": request.config.name,
        "model": {"name": model.name, "version": model.version, "variant": model.variant},
        "device": model.device,
        "shard": list(request.shard),
        "selected": len(selected),
        "state": counts,
        "release_table": table_url,
        **summary.as_dict(),
    }
    report_path = request.work_dir / f"run-report-{request.shard[0]}-of-{request.shard[1]}.json"
    atomic_write_text(report_path, json.dumps(report, indent=1, sort_keys=True) + "\n")
    store.put_side_file(None, f"reports/{report_path.name}", report_path)
    return RunResult(
        summary=summary, report_path=report_path, release_table=table_url, counts=counts
    )
