"""The run: fetch -> read -> segment -> encode -> qa -> publish, pipelined, resumable.

Three stages run at once over bounded queues, so that the compute device stays busy:

1. a loader thread fetches and reads series n+1 (and n+2, up to ``queue_size``),
2. the calling thread submits each volume to the segmentation engine (which batches on its
   own worker thread),
3. a finisher thread waits for each result and encodes, checks and publishes series n-1
   (each step timed on its own: ``encode``, ``qa``, ``publish``).

Every series is isolated: its failure (classified by the error's class and reason) is recorded
in the run state and never stops the others; it is retried on the next run while attempts
remain. A series is marked done only after all its outputs and its ``DONE.json`` marker are in
the output location, with the run's structure selection recorded in both the state and the
marker: a run with another selection processes the series again (:mod:`omas_idc.run.resume`).
Timestamps come from the run's first start (kept in the state), so a killed run restarted
with the same command writes byte-identical files.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from omas_idc import __version__
from omas_idc.catalog.model import Catalog
from omas_idc.encode import Provenance, SegLayout
from omas_idc.errors import OmasIdcError, PublishError
from omas_idc.identity import ModelIdentity
from omas_idc.labelmap import TaskLabelMap
from omas_idc.paths import inside, path_part
from omas_idc.publish.store import OutputStore, publish_series
from omas_idc.run.finish import EncodedSeries, QAOutputs, encode_step, preview_step, qa_step
from omas_idc.run.resume import selection_fields, selection_key
from omas_idc.run.state import RunState, SeriesState
from omas_idc.series_ref import SeriesRef, check_uid
from omas_idc.volume import CTVolume

__all__ = ["Engine", "ModelInfo", "RunOptions", "RunSummary", "run_series"]

logger = logging.getLogger(__name__)

STAGES = ("fetch", "read", "segment", "encode", "qa", "publish")

#: Failures that a retry cannot change: the series is refused, recorded, and not retried.
#: Everything else (network, memory, a killed worker, a full output disk) is retried by the
#: next run. A ``SelectionError`` is a selection row whose identifiers are not valid (a
#: SeriesInstanceUID that is not a DICOM UID): the same selection fails the same way.
PERMANENT_ERRORS = (
    "SeriesGeometryError",
    "UnsupportedSeriesError",
    "EncodingError",
    "QAError",
    "SelectionError",
)
#: Reasons that make any error permanent: data that names a path outside its folder.
PERMANENT_REASONS = ("unsafe-path", "unsafe-name")


class Engine(Protocol):
    """What the run needs from the segmentation engine."""

    def submit(self, volume: CTVolume) -> Future[list[TaskLabelMap]]:
        """Start segmenting ``volume``; the future yields one label map per task."""
        ...


@dataclass(frozen=True)
class ModelInfo(ModelIdentity):
    """The model behind a run's outputs (its identity, the provenance of every SEG and SR),
    with the order of its tasks, the device it runs on and the tasks asked for (``()``: all;
    a structure selection is the identity's ``structures``)."""

    task_order: tuple[str, ...] = ()
    device: str = ""
    tasks: tuple[str, ...] = ()

    @property
    def selection(self) -> str:
        """The run's selection as the state and the ``DONE.json`` markers record it (``""``
        for the whole model): outputs of another selection are not this run's."""
        return selection_key(self.structures, self.tasks)


@dataclass(frozen=True)
class RunOptions:
    """How one run behaves (from the configuration and the command line)."""

    work_dir: Path
    seg_layout: SegLayout = SegLayout.LABELMAP
    previews: bool = True
    max_attempts: int = 3
    queue_size: int = 2
    delete_downloads: bool = False
    min_volume_ml: float = 5.0


@dataclass
class RunSummary:
    """Counts and timings of one run, the body of the JSON run report."""

    started: str
    processed: int = 0
    done: int = 0
    failed: int = 0
    skipped_done: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def add_timings(self, timings: Mapping[str, float]) -> None:
        """Accumulate per-stage seconds."""
        for stage, seconds in timings.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data."""
        return {
            "started": self.started,
            "processed": self.processed,
            "done": self.done,
            "failed": self.failed,
            "skipped_done": self.skipped_done,
            "seconds": round(self.seconds, 3),
            "series_per_hour": round(3600.0 * self.done / self.seconds, 2) if self.seconds else 0,
            "stage_seconds": {k: round(v, 3) for k, v in sorted(self.stage_seconds.items())},
            "failures": self.failures,
        }


@dataclass
class _Item:
    state: SeriesState
    ref: SeriesRef
    timings: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None
    volume: CTVolume | None = None
    future: Future[list[TaskLabelMap]] | None = None
    started: float = 0.0


_DONE = object()


def _checked(ref: SeriesRef) -> SeriesRef:
    """``ref`` if its UIDs are DICOM UIDs; a ``SelectionError`` (``invalid-uid``) otherwise.

    Checked before anything is fetched or written, whatever loads the series (a fetch or a
    local folder), so that a selection row with a path-like UID is refused, not used.
    """
    check_uid(ref.series_instance_uid, "SeriesInstanceUID in the selection")
    check_uid(
        ref.study_instance_uid,
        f"StudyInstanceUID in the selection (series {ref.series_instance_uid})",
    )
    return ref


def _is_download(folder: Path | None, work_dir: Path) -> bool:
    """Whether ``folder`` is a download below the work folder (never a user's local series)."""
    if folder is None:
        return False
    base, target = (work_dir / "dicom").resolve(), folder.resolve()
    return target != base and target.is_relative_to(base)


def run_series(
    refs: list[SeriesRef],
    *,
    state: RunState,
    store: OutputStore,
    engine: Engine,
    model: ModelInfo,
    catalog: Catalog,
    options: RunOptions,
    load_series: Callable[[SeriesRef, Path], Path],
    read_volume: Callable[[Path, SeriesRef], CTVolume],
    timestamp: datetime,
    on_progress: Callable[[str, SeriesRef, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunSummary:
    """Run the pipeline over ``refs`` (those not yet done), updating ``state``.

    Parameters
    ----------
    refs
        The selection, in order.
    state, store
        The run state (local SQLite) and the output location.
    engine
        The segmentation engine (``omas_idc.engine.Segmenter``).
    model
        Provenance of the outputs.
    catalog
        Label -> structure.
    options
        Behaviour.
    load_series
        Puts a series' DICOM into a folder below the given work folder and returns it
        (fetch from IDC, or a local folder for the demo).
    read_volume
        Reads a folder into a CTVolume (``omas_idc.read.read_series``).
    timestamp
        Content date/time of every output (the run's first start).
    on_progress
        Called with (event, ref, detail): ``"done"``, ``"failed"``.
    on_start
        Called once with the number of series this run will process (progress totals).
    """
    summary = RunSummary(started=timestamp.isoformat())
    started = time.perf_counter()
    by_uid = {ref.series_instance_uid: ref for ref in refs}
    state.add_series((ref.series_instance_uid, ref.to_record()) for ref in refs)
    selection = model.selection
    reopened = state.reopen_other_selections(selection)
    if reopened:
        logger.info(
            "%d series were processed with another selection than this run's (%s): redone",
            reopened,
            selection or "every structure",
        )
    done_before = {s.series_uid for s in state.all_series() if s.status == "done"}
    summary.skipped_done = len(done_before & set(by_uid))
    todo = [s for s in state.to_do(options.max_attempts) if s.series_uid in by_uid]
    if on_start:
        on_start(len(todo))
    provenance = Provenance.for_model(model, timestamp)
    loaded: queue.Queue[Any] = queue.Queue(maxsize=max(1, options.queue_size))
    segmented: queue.Queue[Any] = queue.Queue(maxsize=max(1, options.queue_size))
    lock = threading.Lock()

    def fail(item: _Item, stage: str, err: BaseException) -> None:
        error_class = type(err).__name__
        reason = err.reason if isinstance(err, OmasIdcError) else "unexpected"
        message = str(err) or repr(err)
        permanent = error_class in PERMANENT_ERRORS or reason in PERMANENT_REASONS
        state.mark_failed(
            item.ref.series_instance_uid,
            stage,
            error_class,
            reason,
            message,
            permanent=permanent,
            selection=selection,
        )
        logger.warning("series %s failed in %s: %s", item.ref.series_instance_uid, stage, message)
        with lock:
            summary.processed += 1
            summary.failed += 1
            summary.failures.append(
                {
                    "series_instance_uid": item.ref.series_instance_uid,
                    "status": "refused" if permanent else "failed",
                    "stage": stage,
                    "error_class": error_class,
                    "reason": reason,
                    "message": message[:500],
                }
            )
        if on_progress:
            on_progress("failed", item.ref, f"{error_class} ({reason})")

    def timed(item: _Item, stage: str, action: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        state.mark_running(item.ref.series_instance_uid, stage, selection=selection)
        start = time.perf_counter()
        try:
            return action(*args, **kw)
        finally:
            item.timings[stage] = item.timings.get(stage, 0.0) + time.perf_counter() - start

    def loader() -> None:
        try:
            for series_state in todo:
                item = _Item(series_state, by_uid[series_state.series_uid])
                stage = "fetch"
                try:
                    _checked(item.ref)  # before the attempt counts: a refusal, not a try
                    folder = timed(
                        item, "fetch", lambda i=item: load_series(i.ref, options.work_dir)
                    )
                    item.folder = folder
                    stage = "read"
                    item.volume = timed(
                        item, "read", lambda f=folder, i=item: read_volume(f, i.ref)
                    )
                except Exception as err:  # noqa: BLE001 - the one place a failing series is isolated
                    fail(item, stage, err)
                    continue
                loaded.put(item)
        finally:
            loaded.put(_DONE)

    def publish(
        item: _Item,
        labelmaps: list[TaskLabelMap],
        encoded: EncodedSeries,
        checked: QAOutputs,
        staging: Path,
    ) -> list[str]:
        """The previews, then every output of the series into the store, its marker last."""
        outputs = [*encoded.outputs, *checked.outputs]
        if options.previews:
            assert item.volume is not None
            outputs += preview_step(item.volume, labelmaps, catalog, staging)
        marker = {
            "source_series_instance_uid": item.ref.series_instance_uid,
            "study_instance_uid": item.ref.study_instance_uid,
            "algorithm": model.name,
            "model_version": model.version,
            "weights_variant": model.variant,
            "omas_idc_version": __version__,
            "verdict": checked.qa.verdict.value,
            "content_timestamp": timestamp.isoformat(),
            **selection_fields(model.structures, model.tasks),
        }
        return publish_series(store, item.ref, outputs, marker)

    def finisher() -> None:
        while True:
            item = segmented.get()
            if item is _DONE:
                return
            stage = "segment"
            try:
                assert item.future is not None
                assert item.volume is not None
                labelmaps = item.future.result()
                item.timings["segment"] = time.perf_counter() - item.started
                stage = "encode"
                staging = inside(
                    options.work_dir / "staging",
                    options.work_dir / "staging" / path_part(item.ref.series_instance_uid),
                    what="the series' staging folder",
                    error=PublishError,
                    series_instance_uid=item.ref.series_instance_uid,
                )
                if staging.exists():
                    shutil.rmtree(staging)
                encoded = timed(
                    item,
                    "encode",
                    encode_step,
                    item.volume,
                    labelmaps,
                    catalog,
                    provenance,
                    staging,
                    seg_layout=options.seg_layout,
                    task_order=model.task_order or None,
                )
                stage = "qa"
                checked = timed(
                    item,
                    "qa",
                    qa_step,
                    item.volume,
                    labelmaps,
                    encoded,
                    catalog,
                    provenance,
                    staging,
                    min_volume_ml=options.min_volume_ml,
                )
                stage = "publish"
                urls = timed(item, "publish", publish, item, labelmaps, encoded, checked, staging)
                state.mark_done(
                    item.ref.series_instance_uid, urls, item.timings, selection=selection
                )
                shutil.rmtree(staging, ignore_errors=True)
                if options.delete_downloads and _is_download(item.folder, options.work_dir):
                    shutil.rmtree(item.folder, ignore_errors=True)
                with lock:
                    summary.processed += 1
                    summary.done += 1
                    summary.add_timings(item.timings)
                if on_progress:
                    on_progress("done", item.ref, checked.qa.verdict.value)
            except Exception as err:  # noqa: BLE001 - the one place a failing series is isolated
                fail(item, stage, err)

    loader_thread = threading.Thread(target=loader, name="omas-loader", daemon=True)
    finisher_thread = threading.Thread(target=finisher, name="omas-finisher", daemon=True)
    loader_thread.start()
    finisher_thread.start()
    try:
        while True:
            item = loaded.get()
            if item is _DONE:
                break
            state.mark_running(item.ref.series_instance_uid, "segment", selection=selection)
            item.started = time.perf_counter()
            try:
                item.future = engine.submit(item.volume)
            except Exception as err:  # noqa: BLE001 - the one place a failing series is isolated
                fail(item, "segment", err)
                continue
            segmented.put(item)
    finally:
        segmented.put(_DONE)
        loader_thread.join()
        finisher_thread.join()
    summary.seconds = time.perf_counter() - started
    return summary
