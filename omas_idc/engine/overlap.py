"""The segmenter's overlapped worker: the engine's CPU work beside the device's batches.

The serial worker of :class:`~omas_idc.engine.segmenter.Segmenter` prepares series and jobs,
steps windows and turns logits into labels on one thread, so an accelerator waits while the
CPU works (issue 20: 71-88 % busy with the emulated device at twice the CPU stages' time). The
:class:`OverlapWorker` gives that work threads of its own:

- a preparation thread takes the submitted series in order and prepares them (reorientation,
  the wrapper's resampling) and their jobs (nonzero crop, normalisation, resampling to the
  model grid), at most :data:`PREPARE_AHEAD` job waiting for the device beyond those it runs;
- the device thread only steps windows, in batches of the active group's jobs, as the serial
  worker does (several series of one group per batch; jobs of another group wait until the
  active group is done);
- a finishing thread turns finished jobs' logits into labels on the working grid and completes
  the series (post-processing, labels back to the source grid).

Memory stays bounded as in the serial worker: a job reserves its estimate against
``memory_limit_gb`` before it is prepared and holds it while it waits, runs and is finished;
a job that cannot fit alone fails its series. At most ``max_series_in_flight`` series are
started and not yet resolved. A failing series fails its future only; the others go on.

With the emulated device at twice the CPU stages' time the device is busy 98 % of its window
(benchmarks/pipeline_device.py, RESULTS.md "pipeline with an emulated accelerator").
"""

from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import Future
from typing import Protocol, TypeAlias

import torch

from omas_idc.engine.jobs import Job, SeriesInFlight
from omas_idc.errors import InferenceError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = ["PREPARE_AHEAD", "OverlapWorker", "Request", "WorkSteps"]

#: Prepared jobs that wait for the device beyond the ones it runs: the next group's job is
#: ready when the active group ends; more would hold memory without keeping the device busier.
PREPARE_AHEAD = 1

Request: TypeAlias = tuple[CTVolume, Future[list[TaskLabelMap]]] | None


class WorkSteps(Protocol):
    """The steps of the segmenter that the worker's threads run (its private methods)."""

    def _start_series(
        self, volume: CTVolume, future: Future[list[TaskLabelMap]]
    ) -> list[Job]: ...  # pragma: no cover

    def _estimate(self, job: Job) -> int: ...  # pragma: no cover

    def _memory_error(self, job: Job, estimate: int) -> InferenceError: ...  # pragma: no cover

    def _prepare_job(self, job: Job) -> None: ...  # pragma: no cover

    def _step_windows(self, active: list[Job]) -> None: ...  # pragma: no cover

    def _finish_job(self, job: Job) -> None: ...  # pragma: no cover

    def _fail(self, series: SeriesInFlight, err: BaseException) -> None: ...  # pragma: no cover

    def _torch_threads(self) -> contextlib.AbstractContextManager[None]: ...  # pragma: no cover


class OverlapWorker:
    """Three threads (preparation, device, finishing) serving a segmenter's request queue.

    Parameters
    ----------
    segmenter
        The segmenter whose preparation, window and finishing steps the threads run.
    requests
        ``(volume, future)`` pairs in submission order; ``None`` ends the work once every
        request before it is resolved.
    memory_limit_bytes
        Bound on the memory estimates of the jobs prepared and not yet finished.
    max_series_in_flight
        Series started and not yet resolved.
    """

    def __init__(
        self,
        segmenter: WorkSteps,
        requests: queue.Queue[Request],
        memory_limit_bytes: int,
        max_series_in_flight: int,
    ) -> None:
        self._segmenter = segmenter
        self._requests = requests
        self._limit = memory_limit_bytes
        self._cond = threading.Condition()
        self._ready: list[Job] = []
        self._used = 0
        self._prepared_all = False
        self._finishing: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._series_slots = threading.Semaphore(max_series_in_flight)
        self._threads = [
            threading.Thread(target=target, name=f"omas-idc-segment-{name}", daemon=True)
            for name, target in (
                ("prepare", self._prepare_loop),
                ("device", self._device_loop),
                ("finish", self._finish_loop),
            )
        ]

    @property
    def reserved_bytes(self) -> int:
        """Memory estimates of the jobs prepared and not yet finished."""
        with self._cond:
            return self._used

    def start(self) -> None:
        """Start the three threads."""
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        """Wait for the threads to end (after the ``None`` request)."""
        for thread in self._threads:
            thread.join()

    # -- preparation -------------------------------------------------------------------------

    def _prepare_loop(self) -> None:
        try:
            while True:
                self._series_slots.acquire()
                item = self._requests.get()
                if item is None:
                    return
                volume, future = item
                if not future.set_running_or_notify_cancel():
                    self._series_slots.release()  # cancelled while queued
                    continue
                # the slot is free again once the series is resolved, with labels or an error
                future.add_done_callback(lambda _: self._series_slots.release())
                for job in self._segmenter._start_series(volume, future):
                    self._prepare(job)
        finally:
            with self._cond:
                self._prepared_all = True
                self._cond.notify_all()

    def _prepare(self, job: Job) -> None:
        segmenter = self._segmenter
        if job.series.failed:
            return
        try:
            estimate = segmenter._estimate(job)
        except Exception as err:  # noqa: BLE001 - isolate the failing series
            segmenter._fail(job.series, err)
            return
        if estimate > self._limit:
            segmenter._fail(job.series, segmenter._memory_error(job, estimate))
            return
        with self._cond:
            self._cond.wait_for(lambda: self._fits(estimate))
            self._used += estimate
        job.nbytes = estimate
        if job.series.failed:  # another job of the series failed while this one waited
            self._release(job)
            return
        try:
            with segmenter._torch_threads(), torch.inference_mode():
                segmenter._prepare_job(job)
        except Exception as err:  # noqa: BLE001 - isolate the failing series
            segmenter._fail(job.series, err)
            self._release(job)
            return
        if job.data is None:  # nothing inside the crop: labels are background
            self._finishing.put(job)
            return
        with self._cond:
            self._ready.append(job)
            self._cond.notify_all()

    def _fits(self, estimate: int) -> bool:
        waiting = len(self._ready) < PREPARE_AHEAD
        return waiting and (self._used == 0 or self._used + estimate <= self._limit)

    def _release(self, job: Job) -> None:
        with self._cond:
            self._used -= job.nbytes
            job.nbytes = 0
            self._cond.notify_all()

    # -- device ------------------------------------------------------------------------------

    def _device_loop(self) -> None:
        segmenter = self._segmenter
        active: list[Job] = []
        try:
            while True:
                self._take_ready(active)
                if not active:
                    return
                for job in [j for j in active if j.series.failed]:
                    active.remove(job)
                    self._finishing.put(job)
                if not active:
                    continue
                try:
                    with segmenter._torch_threads(), torch.inference_mode():
                        segmenter._step_windows(active)
                except Exception as err:  # noqa: BLE001 - isolate the series of these jobs
                    for job in active:
                        segmenter._fail(job.series, err)
                for job in [j for j in active if j.series.failed or j.next_window >= len(j.starts)]:
                    active.remove(job)
                    self._finishing.put(job)
        finally:
            self._finishing.put(None)

    def _take_ready(self, active: list[Job]) -> None:
        """Move prepared jobs of the active group (or the next group, when none is active) to
        ``active``; wait while there is nothing to run and more may come."""
        with self._cond:
            while True:
                while self._ready and (not active or self._ready[0].key == active[0].key):
                    active.append(self._ready.pop(0))
                if active or self._prepared_all:
                    break
                self._cond.wait()
            self._cond.notify_all()  # room for the next prepared job

    # -- finishing ---------------------------------------------------------------------------

    def _finish_loop(self) -> None:
        while True:
            job = self._finishing.get()
            if job is None:
                return
            try:
                self._segmenter._finish_job(job)
            except Exception as err:  # noqa: BLE001 - isolate the failing series
                self._segmenter._fail(job.series, err)
            finally:
                self._release(job)
