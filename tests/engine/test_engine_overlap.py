"""The overlapped worker (issue 20): the engine's CPU work runs beside the device's batches,
with the same labels, memory bound, failure isolation and threads joined on close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nnunet_reference import two_group_model, volume_from_phantom

from omas_idc.engine.emulated import DeviceClock, emulate_model
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig, torch_threads
from omas_idc.errors import InferenceError
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")


def _volume(seed: int, slices: int = 12) -> Any:
    options = PhantomOptions(
        seed=seed, shape=(slices, 16, 16), pixel_spacing=(6.0, 6.0), slice_spacing=6.0
    )
    return volume_from_phantom(options)


class _Recording(Segmenter):
    """Records when jobs are prepared, stepped and finished, and what memory they hold."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, tuple[object, ...], float]] = []
        self.groups_at_once: list[int] = []
        self.holding = 0  # jobs between their preparation and their labels
        self.most_holding = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def _prepare_job(self, job: Any) -> None:
        with self._lock:
            self.holding += 1
            self.most_holding = max(self.most_holding, self.holding)
        super()._prepare_job(job)
        self._record("prepared", job.key)

    def _step_windows(self, active: list[Any]) -> None:
        self.groups_at_once.append(len({job.key for job in active}))
        super()._step_windows(active)
        self._record("stepped", active[0].key)

    def _finish_job(self, job: Any) -> None:
        super()._finish_job(job)
        with self._lock:
            self.holding -= 1
        self._record("finished", job.key)

    def _record(self, what: str, key: tuple[object, ...]) -> None:
        with self._lock:
            self.events.append((what, key, time.perf_counter()))
            self.threads.add(threading.current_thread().name)

    def last(self, what: str, key: tuple[object, ...]) -> float:
        return max(t for w, k, t in self.events if w == what and k == key)


def _segment_all(engine: Segmenter, volumes: list[Any]) -> list[list[Any]]:
    with engine:
        futures = [engine.submit(volume) for volume in volumes]
        return [future.result() for future in futures]


def test_overlapped_labels_equal_the_serial_worker_and_groups_stay_apart(tmp_path: Path) -> None:
    model = two_group_model(tmp_path)
    volumes = [_volume(seed) for seed in (0, 1, 2)]
    serial = _segment_all(
        Segmenter(model, SegmenterConfig(postprocessing=False, overlap_cpu_work=False)), volumes
    )
    engine = _Recording(model, SegmenterConfig(postprocessing=False, overlap_cpu_work=True))
    overlapped = _segment_all(engine, volumes)
    for ours, theirs in zip(overlapped, serial, strict=True):
        assert [m.task for m in ours] == ["551", "559"]
        for a, b in zip(ours, theirs, strict=True):
            assert np.array_equal(a.array, b.array)
    assert max(engine.groups_at_once) == 1  # a batch, and the accumulators, of one group
    # preparation, windows and finishing ran on three threads, none on the caller's
    assert engine.threads == {f"omas-idc-segment-{n}" for n in ("prepare", "device", "finish")}


def test_the_next_job_is_prepared_and_the_last_finished_while_the_device_runs(
    tmp_path: Path,
) -> None:
    clock = DeviceClock()
    model = emulate_model(two_group_model(tmp_path), 0.6, clock)
    first, second = (task.group_key() for task in model.tasks)
    engine = _Recording(
        model, SegmenterConfig(postprocessing=False, batch_size=4, overlap_cpu_work=True)
    )
    _segment_all(engine, [_volume(0)])
    assert clock.calls == 2 * 5  # per group: 2 x 3 x 3 windows of 8 voxels, 4 per batch
    # the second group's input was ready before the first group's windows were done, and the
    # first group's labels were made before the second group's windows were done: the device
    # never waited for either (the serial worker does both between the groups' windows)
    assert engine.last("prepared", second) < engine.last("stepped", first)
    assert engine.last("finished", first) < engine.last("stepped", second)


def test_waiting_and_finishing_jobs_count_against_the_memory_limit(tmp_path: Path) -> None:
    model = two_group_model(tmp_path)
    volumes = [_volume(seed) for seed in (0, 1)]
    probe = Segmenter(model, SegmenterConfig(overlap_cpu_work=False))
    series = probe._start_series(volumes[0], Future())
    one_job = max(probe._estimate(job) for job in series)
    # room for one job and a half: no job prepared ahead while another one holds its buffers
    limit_gb = 1.5 * one_job / 2**30
    engine = _Recording(
        model,
        SegmenterConfig(postprocessing=False, memory_limit_gb=limit_gb, overlap_cpu_work=True),
    )
    limited = _segment_all(engine, volumes)
    assert engine.most_holding == 1
    roomy = _Recording(model, SegmenterConfig(postprocessing=False, overlap_cpu_work=True))
    unlimited = _segment_all(roomy, volumes)
    assert roomy.most_holding >= 2  # with room, the next job is prepared ahead
    for ours, theirs in zip(limited, unlimited, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert np.array_equal(a.array, b.array)


class _FailingFinish(Segmenter):
    def _finish_series(self, series: Any) -> Any:
        if series.volume.hu.shape[0] == 13:
            raise ValueError("post-processing failed on this series")
        return super()._finish_series(series)


def test_a_failing_series_fails_its_future_only(tmp_path: Path) -> None:
    model = two_group_model(tmp_path)
    small = Segmenter(model, SegmenterConfig(resample_slab_mb=1.0, overlap_cpu_work=False))
    one_job = max(small._estimate(job) for job in small._start_series(_volume(0), Future()))
    # a 400-slice series needs more than the limit; a 13-slice one fails in post-processing
    volumes = [_volume(0), _volume(1, slices=400), _volume(2, slices=13), _volume(3)]
    config = SegmenterConfig(
        memory_limit_gb=2.5 * one_job / 2**30, resample_slab_mb=1.0, overlap_cpu_work=True
    )
    with _FailingFinish(model, config) as engine:
        futures = [engine.submit(volume) for volume in volumes]
        with pytest.raises(InferenceError, match="memory_limit_gb"):
            futures[1].result()
        with pytest.raises(ValueError, match="post-processing failed"):
            futures[2].result()
        results = [futures[0].result(), futures[3].result()]
    with Segmenter(model, SegmenterConfig(overlap_cpu_work=False)) as serial:
        for volume, maps in zip((volumes[0], volumes[3]), results, strict=True):
            for ours, theirs in zip(maps, serial.segment(volume), strict=True):
                assert np.array_equal(ours.array, theirs.array)


def _engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("omas-idc-segment")}


def test_the_threads_are_joined_on_close(tmp_path: Path) -> None:
    model = two_group_model(tmp_path)
    engine = Segmenter(model, SegmenterConfig(overlap_cpu_work=True))
    assert SegmenterConfig(device="cuda").overlapped
    assert not SegmenterConfig(device="cpu").overlapped
    before = _engine_threads()  # other tests' engines left open
    future = engine.submit(_volume(0))
    ours = _engine_threads() - before
    assert len(ours) == 3
    engine.close()
    assert future.done()
    assert not any(thread.is_alive() for thread in ours)
    with pytest.raises(InferenceError, match="closed"):
        engine.submit(_volume(0))


def test_torch_threads_blocks_overlapping_on_threads_restore_the_setting() -> None:
    def fresh_thread_setting() -> int:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    before = fresh_thread_setting()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with torch_threads(before + 1):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with torch_threads(before + 1):
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fresh_thread_setting() == before
