"""``omas-idc run`` and ``omas-idc demo`` as functions: configuration in, outputs and report out.

:func:`execute_run` wires the stages together: the selection (a saved selection file, or the
IDC index), the local run state (rebuilt from the output's ``DONE.json`` markers on a fresh
machine), the engine, the pipeline (:func:`omas_idc.run.pipeline.run_series`), the shard's
release table and the JSON run report.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from omas_idc.encode import SegLayout
from omas_idc.errors import ConfigurationError, OmasIdcError
from omas_idc.publish.locations import open_store
from omas_idc.publish.store import OutputStore
from omas_idc.run.config import RunConfig
from omas_idc.run.folders import (
    check_output_location,
    check_work_dir,
    load_selection_file,
    required_free_bytes,
)
from omas_idc.run.lock import work_lock
from omas_idc.run.pipeline import (
    Engine,
    ModelInfo,
    RunOptions,
    RunSummary,
    run_series,
)
from omas_idc.run.report import base_report, report_path, write_refusal, write_report
from omas_idc.run.resume import markers_of_selection
from omas_idc.run.state import RunState, open_state
from omas_idc.series_ref import SeriesRef
from omas_idc.volume import CTVolume

__all__ = [
    "RunRequest",
    "RunResult",
    "check_run",
    "execute_run",
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
    source
        Read the series from this DICOMweb service (``dicomweb+https://host/path``) instead
        of IDC's buckets.
    side_out
        For a DICOMweb output: the folder of the release rows, previews, reports and markers
        (default: ``outputs`` in the work folder).
    dicomweb_token
        Bearer token of the DICOMweb services (input and output); never shown.
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
    source: str | None = None
    side_out: Path | None = None
    dicomweb_token: str | None = field(default=None, repr=False)

    @property
    def side_folder(self) -> Path:
        """Where a DICOMweb output's side files and markers go."""
        return self.side_out if self.side_out is not None else self.work_dir / "outputs"


@dataclass(frozen=True)
class RunResult:
    """What a run did: the summary, the report's path, the shard's release table and any
    run-level errors."""

    summary: RunSummary
    report_path: Path
    release_table: str | None
    counts: dict[str, int]
    #: Run-level failures after the series (the release table could not be published).
    errors: tuple[str, ...] = ()


def release_table_name(shard: tuple[int, int]) -> PurePosixPath:
    """The shard's release table below the output root."""
    return PurePosixPath("release", f"shard-{shard[0]}-of-{shard[1]}.parquet")


def _select(request: RunRequest) -> list[SeriesRef]:
    from omas_idc.select import SelectionFilters, Shard, select_series

    index, count = request.shard
    if request.selection_file is not None:
        refs = sorted(
            load_selection_file(request.selection_file), key=lambda r: r.series_instance_uid
        )
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
        if request.source is not None:
            from omas_idc.fetch.dicomweb import DicomwebService, fetch_series_dicomweb

            service = DicomwebService.parse(request.source, token=request.dicomweb_token)
            return fetch_series_dicomweb(
                ref,
                work_dir / "dicom",
                service,
                attempts=request.config.run.max_attempts,
                check_contents=False,
            ).path
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


def check_run(request: RunRequest) -> None:
    """The checks of a run that need neither the selection nor the model: the work folder, the
    selection file (readable, a selection) and the output location (a folder that exists or
    can be made, writable). Call with the work folder's lock held
    (:func:`omas_idc.run.lock.work_lock`); a refusal is also written as the run report.

    Raises
    ------
    ConfigurationError
        Saying which folder or file is wrong and how to fix it.
    """
    check_work_dir(request.work_dir)
    try:
        if request.selection_file is not None:
            load_selection_file(request.selection_file)
        check_output_location(request.out)
    except ConfigurationError as err:
        write_refusal(request.work_dir, request.config.name, request.shard, err)
        raise


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

    Before anything is fetched the work folder is locked (one run per work folder,
    :func:`omas_idc.run.lock.work_lock`) and the output location is checked
    (:func:`omas_idc.run.folders.check_output_location`). The run report is written to the
    work folder even where the output location fails while publishing; it is copied to the
    output's ``reports/`` where that still works. ``on_progress`` and ``on_start`` are passed
    to :func:`~omas_idc.run.pipeline.run_series`.

    Raises
    ------
    ConfigurationError
        If the work folder is in use by another run or is not a local folder, the selection
        file cannot be read, or the output location is not usable.
    """
    check_work_dir(request.work_dir)
    with work_lock(request.work_dir):
        try:
            store = open_store(
                request.out,
                endpoint_url=request.endpoint_url,
                side_out=request.side_folder,
                dicomweb_token=request.dicomweb_token,
            )
            selected = list(refs) if refs is not None else _select(request)
            check_output_location(request.out, required_free_bytes(selected))
            if request.out.startswith("dicomweb+"):  # side files and markers: a local folder
                check_output_location(str(request.side_folder), required_free_bytes(selected))
        except ConfigurationError as err:
            write_refusal(request.work_dir, request.config.name, request.shard, err)
            raise
        state, _ = open_state(request.work_dir / "state.sqlite")
        with state:
            return _run_locked(
                request, engine, model, store, selected, state, on_progress, on_start
            )


def _run_locked(
    request: RunRequest,
    engine: Engine,
    model: ModelInfo,
    store: OutputStore,
    selected: list[SeriesRef],
    state: RunState,
    on_progress: Callable[[str, SeriesRef, str], None] | None,
    on_start: Callable[[int], None] | None,
) -> RunResult:
    from omas_idc.run.engine_setup import model_catalog

    started = (request.timestamp or datetime.now(timezone.utc)).replace(microsecond=0)
    stamp = datetime.fromisoformat(state.set_meta_once("timestamp", started.isoformat()))
    state.add_series((r.series_instance_uid, r.to_record()) for r in selected)
    # Series finished with another structure selection are redone; the markers a fresh
    # machine finds count only where a run of this selection wrote them.
    state.reopen_other_selections(model.selection)
    unfinished = {s.series_uid for s in state.all_series() if s.status != "done"}
    markers = markers_of_selection(
        store,
        {r.series_instance_uid: r for r in selected if r.series_instance_uid in unfinished},
        store.done_series(),
        model.selection,
    )
    rebuilt = state.mark_done_from_markers(markers, selection=model.selection)
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
    errors: list[str] = []
    table_url = _publish_release_table(request, store, selected, state, errors)
    counts = state.counts()
    report = {
        **base_report(request.config.name, request.shard),
        "model": {
            "name": model.name,
            "version": model.version,
            "variant": model.variant,
            **({"selection": model.selection} if model.selection else {}),
        },
        "device": model.device,
        "selected": len(selected),
        "state": counts,
        "release_table": table_url,
        "errors": errors,
        **summary.as_dict(),
    }
    path = write_report(report_path(request.work_dir, request.shard), report)
    try:
        store.put_side_file(None, f"reports/{path.name}", path)
    except OmasIdcError as err:
        logger.warning("the run report stays in %s only: %s", path, err)
    return RunResult(
        summary=summary,
        report_path=path,
        release_table=table_url,
        counts=counts,
        errors=tuple(errors),
    )


def _publish_release_table(
    request: RunRequest,
    store: OutputStore,
    selected: Sequence[SeriesRef],
    state: RunState,
    errors: list[str],
) -> str | None:
    """Write the shard's release table to the work folder and put it into the store; where the
    store fails, the error is appended to ``errors`` (for the report) and ``None`` returned."""
    import pyarrow.parquet as pq

    try:
        table = _collect_rows(store, selected, state)
        local_table = request.work_dir / release_table_name(request.shard).name
        pq.write_table(table, local_table)
        return store.put_side_file(None, str(release_table_name(request.shard)), local_table)
    except (OmasIdcError, OSError) as err:
        message = f"the release table was not published: {err}"
        logger.warning("%s", message)
        errors.append(message)
        return None
