"""The batched segmenter: CTVolumes in, one TaskLabelMap per task out, on the source grid.

Producer/consumer: :meth:`Segmenter.submit` queues a volume and returns a future; a worker
thread owns the compute device, preprocesses each series (reorientation, wrapper resampling,
nnU-Net preprocessing per group of tasks sharing plans), and fills batches with tiles from the
series in flight, several series and several tasks per batch: the tiles of a group go through
every network (task x fold) of that group. The caller reads series n+1 and encodes series n-1
meanwhile. Accumulators of the series in flight are bounded by ``memory_limit_gb``; a series
that cannot fit alone fails with :class:`~omas_idc.errors.InferenceError`. On an accelerator
the preparation and the finishing (logits to labels, post-processing) run on threads of their
own beside the device's (:mod:`omas_idc.engine.overlap`), so that the device does not wait for
them; on the CPU one thread does it all (``overlap_cpu_work``).

Logits exist only at the model resolution, per task. They are resampled back to the source grid
slab by slab, all classes of a task at once, and each slab is reduced to labels straight away
(nnU-Net's resample-then-argmax without any class at full resolution), or, with
``resample_logits=False``, the argmax is taken at model resolution and labels are resampled with
nearest neighbour (faster, slightly coarser borders). The way in works the same: the HU volume
stays int16 and is normalised and resampled to the model grid slab by slab
(``resample_slab_mb`` bounds a slab's temporaries), and the canonical copy is dropped once every
group of tasks has its input.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from omas_idc.choices import StrEnum
from omas_idc.engine.jobs import Job, SeriesInFlight
from omas_idc.engine.model import LoadedTask, SegmentationModel
from omas_idc.engine.modelfolder import ResamplingSpec
from omas_idc.engine.overlap import OverlapWorker, Request
from omas_idc.engine.preprocessing import (
    CanonicalOrientation,
    body_bbox,
    ct_normalize,
    nonzero_bbox,
)
from omas_idc.engine.recipes import merge_labelmaps, postprocess
from omas_idc.engine.resampling import compute_new_shape, resample_slabs
from omas_idc.engine.sliding_window import WindowGrid, gaussian_importance, patch_padding
from omas_idc.engine.speed import WrapperGrid
from omas_idc.engine.structures import keep_structures
from omas_idc.engine.zoom import zoom_input, zoom_labels
from omas_idc.errors import ConfigurationError, InferenceError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = [
    "DeviceKind",
    "Precision",
    "Segmenter",
    "SegmenterConfig",
    "ZSplitMode",
    "torch_threads",
]

logger = logging.getLogger(__name__)


class DeviceKind(StrEnum):
    """The kinds of compute device the engine runs on (a CUDA device may add ``:index``)."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Precision(StrEnum):
    """Arithmetic of the networks: float16 autocast on CUDA and float32 elsewhere (``auto``),
    or one for all."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class ZSplitMode(StrEnum):
    """Whether large images are cut into 3 overlapping parts along S (TotalSegmentator).

    ``auto``: where the card's ``z_split`` rule says (TotalSegmentator: more than 512*512*900
    voxels and 200 slices at 1.5 mm); ``always``: every image of a card with the rule
    (TotalSegmentator's ``force_split``); ``never``.
    """

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class SegmenterConfig:
    """How to run a model.

    Attributes
    ----------
    device
        Compute device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    output_device
        Where accumulators live and logits are resampled back (``None``: the compute device).
    batch_size
        Tiles per forward pass.
    tile_step_size
        Tile overlap step as a fraction of the patch (``None``: the card's, 0.5); larger is
        faster on CPU.
    precision
        ``"auto"`` (float16 autocast on CUDA, float32 elsewhere), ``"fp32"``, ``"fp16"``,
        ``"bf16"``.
    memory_limit_gb
        Bound on the accumulators, tiles and resampling buffers of the series in flight.
    threads
        CPU threads for torch while the worker runs (restored after each batch); ``None``
        leaves torch's setting.
    body_crop
        Run the sliding window only inside the body's bounding box (HU > -500 plus 10 mm).
    resample_logits
        Resample logits to the source grid before the argmax (nnU-Net); ``False``: argmax at
        model resolution, nearest-neighbour labels.
    resample_slab_mb
        Approximate memory (MiB) of one slab's temporaries while volumes are resampled to the
        model grid and logits back to the source grid (all classes of a task per slab). Smaller
        lowers the peak a little and costs some speed; the result does not depend on it.
    max_series_in_flight
        Series preprocessed ahead and mixed in batches.
    postprocessing
        Apply the recipe's post-processing (CADS's rules, a card's largest-component clean-up);
        ``False`` is CADS's ``--no-postprocessing``: the networks' labels as they are.
    wrapper_grid
        ``"reference"`` (the tool's zoom) or ``"centred"`` (see
        :class:`~omas_idc.engine.speed.WrapperGrid`); only
        cards with a ``wrapper_zoom`` block have a reference zoom.
    z_split
        ``"auto"``, ``"always"`` or ``"never"`` (see :class:`ZSplitMode`); only cards with a
        ``z_split`` rule split.
    logit_sums
        ``"float16"`` or ``"float32"``: the dtype the sliding window sums the Gaussian-weighted
        logits and weights in and divides them in; ``None``: the card's (``float16`` for the
        CADS and TotalSegmentator cards, as nnU-Net's predictor does: its rounding decides
        voxels where logits nearly tie; multi-fold models sum the folds of a tile in float32
        first, where nnU-Net sums whole-image float16 maps). Accumulators take half the memory
        in float16.
    overlap_cpu_work
        Prepare series and jobs, and turn logits into labels, on threads beside the device's,
        while it runs the windows (:mod:`omas_idc.engine.overlap`); ``False``: one worker
        thread does it all, between batches; ``None``: overlapped where the compute device is
        not the CPU (on the CPU both compete for the same cores). The labels are the same.
    """

    device: str = "cpu"
    output_device: str | None = None
    batch_size: int = 2
    tile_step_size: float | None = None
    precision: str = "auto"
    memory_limit_gb: float = 8.0
    threads: int | None = None
    body_crop: bool = False
    resample_logits: bool = True
    resample_slab_mb: float = 256.0
    max_series_in_flight: int = 2
    postprocessing: bool = True
    wrapper_grid: str = "reference"
    z_split: str = "auto"
    overlap_cpu_work: bool | None = None
    logit_sums: str | None = None

    def __post_init__(self) -> None:
        Precision.parse(self.precision, "precision")
        WrapperGrid.parse(self.wrapper_grid, "wrapper grid")
        ZSplitMode.parse(self.z_split, "z split")
        if self.logit_sums not in (None, "float16", "float32"):
            raise ConfigurationError(
                f"logit_sums must be 'float16' (nnU-Net's predictor) or 'float32', "
                f"got {self.logit_sums!r}"
            )
        DeviceKind.parse(self.device.split(":")[0], "device")
        if self.batch_size < 1 or self.max_series_in_flight < 1:
            raise ConfigurationError("batch_size and max_series_in_flight must be >= 1")
        if self.tile_step_size is not None and not 0 < self.tile_step_size <= 1:
            raise ConfigurationError(f"tile_step_size must be in (0, 1], got {self.tile_step_size}")
        if self.memory_limit_gb <= 0:
            raise ConfigurationError("memory_limit_gb must be positive")
        if not self.resample_slab_mb > 0:
            raise ConfigurationError(
                f"resample_slab_mb must be a positive number of MiB, got {self.resample_slab_mb}"
            )

    @property
    def overlapped(self) -> bool:
        """Whether the CPU work runs beside the device's (``overlap_cpu_work`` resolved)."""
        if self.overlap_cpu_work is None:
            return self.device.split(":")[0] != DeviceKind.CPU
        return self.overlap_cpu_work

    @property
    def slab_elements(self) -> int:
        """Elements of the largest intermediate of one resampling slab (float32, about 4 live)."""
        return max(1, int(self.resample_slab_mb * 2**20 / (4 * 4)))


_threads_lock = threading.Lock()
_threads_depth = 0
_threads_before = 0


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block and restore them after (no lasting change).

    Thread-safe: blocks may overlap on several threads (the overlapped worker's); the setting
    from before the first of them is restored when the last one ends.
    """
    global _threads_depth, _threads_before
    if threads is None:
        yield
        return
    with _threads_lock:
        if _threads_depth == 0:
            _threads_before = torch.get_num_threads()
        _threads_depth += 1
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0:
                torch.set_num_threads(_threads_before)


class Segmenter:
    """Runs a :class:`~omas_idc.engine.model.SegmentationModel` on CT volumes.

    Parameters
    ----------
    model
        The loaded model (its networks on ``config.device``).
    config
        Run settings.

    Examples
    --------
    >>> with Segmenter(model, SegmenterConfig(device="cuda")) as segmenter:  # doctest: +SKIP
    ...     futures = [segmenter.submit(read_series(d)) for d in folders]
    ...     for future in futures:
    ...         encode(future.result())
    """

    def __init__(self, model: SegmentationModel, config: SegmenterConfig | None = None) -> None:
        self.model = model
        self.config = config or SegmenterConfig(device=str(model.device))
        self.device = torch.device(self.config.device)
        self.output_device = torch.device(self.config.output_device or self.config.device)
        if self.device != model.device and self.device.type != model.device.type:
            raise ConfigurationError(
                f"model is on {model.device} but the segmenter computes on {self.device}"
            )
        self.tile_step_size = self.config.tile_step_size or model.card.tile_step_size
        grid = WrapperGrid.parse(self.config.wrapper_grid, "wrapper grid")
        card = model.card
        # the wrapper's spacing (CADS, TotalSegmentator resample before nnU-Net), or None
        self._wrapper = card.spacing_mm if card.recipe != "nnunet-native" else None
        self._reference_zoom = (
            self._wrapper is not None
            and grid is WrapperGrid.REFERENCE
            and card.wrapper_zoom is not None
        )
        # nnU-Net's predictor sums Gaussian-weighted logits and weights in float16 and divides
        # them in float16: the reference cards ask for the same rounding (card.logit_sums)
        sums = self.config.logit_sums or model.card.logit_sums
        self._sum_dtype = torch.float16 if sums == "float16" else torch.float32
        groups: dict[tuple[object, ...], list[LoadedTask]] = {}
        for task in model.tasks:
            groups.setdefault(task.group_key(), []).append(task)
        self._groups = groups
        self._queue: queue.Queue[Request] = queue.Queue(maxsize=self.config.max_series_in_flight)
        self._worker: threading.Thread | OverlapWorker | None = None
        self._futures_lock = threading.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    def submit(self, volume: CTVolume) -> Future[list[TaskLabelMap]]:
        """Queue a volume; the future resolves to one label map per task (card order).

        Tasks the card merges (TotalSegmentator's parts) come back as one combined map.

        Blocks while ``max_series_in_flight`` volumes are already waiting (back-pressure).
        """
        if self._closed:
            raise InferenceError("segmenter is closed")
        if self._worker is None:
            if self.config.overlapped:
                self._worker = OverlapWorker(
                    self,
                    self._queue,
                    int(self.config.memory_limit_gb * 2**30),
                    self.config.max_series_in_flight,
                )
            else:
                self._worker = threading.Thread(
                    target=self._run, name="omas-idc-segment", daemon=True
                )
            self._worker.start()
        future: Future[list[TaskLabelMap]] = Future()
        self._queue.put((volume, future))
        return future

    def segment(self, volume: CTVolume) -> list[TaskLabelMap]:
        """Segment one volume (waits for the result)."""
        return self.submit(volume).result()

    def map(self, volumes: Iterable[CTVolume]) -> Iterator[list[TaskLabelMap]]:
        """Segment volumes in order, keeping the device busy while results are consumed."""
        pending: list[Future[list[TaskLabelMap]]] = []
        for volume in volumes:
            pending.append(self.submit(volume))
            while pending and pending[0].done():
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

    def predict_logits(self, volume: CTVolume) -> dict[str, torch.Tensor]:
        """Fold-averaged logits at model resolution (transposed, cropped), per task.

        For inspection and parity tests; runs synchronously on the calling thread and holds
        all classes of all tasks at model resolution.
        """
        future: Future[list[TaskLabelMap]] = Future()
        with torch_threads(self.config.threads), torch.inference_mode():
            series = self._prepare_series(volume, future)
            series.unprepared_jobs = len(self._groups)
            out: dict[str, torch.Tensor] = {}
            for key, tasks in self._groups.items():
                job = Job(series=series, tasks=tasks, key=key)
                self._prepare_job(job)
                active = [job]
                while job.next_window < len(job.starts):
                    self._step_windows(active)
                if series.failed:
                    future.result()
                for task in tasks:
                    undo = (slice(None), *job.undo_pad)
                    weight = job.weight[job.undo_pad] * len(task.networks)  # type: ignore[index]
                    out[task.id] = job.logits[task.id][undo] / weight
        return out

    def close(self) -> None:
        """Finish queued work and stop the worker's threads."""
        if self._worker is not None and not self._closed:
            self._queue.put(None)
            self._worker.join()
        self._closed = True

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        waiting: list[Job] = []
        active: list[Job] = []
        stop = False
        while True:
            in_flight = {id(j.series) for j in waiting + active}
            while not stop and len(in_flight) < self.config.max_series_in_flight:
                try:
                    item = self._queue.get(block=not (waiting or active))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                jobs = self._start_series(*item)
                waiting.extend(jobs)
                in_flight = {id(j.series) for j in waiting + active}
            if stop and not waiting and not active:
                return
            self._admit(waiting, active)
            if not active:
                continue
            with torch_threads(self.config.threads):
                self._step(active)

    def _start_series(self, volume: CTVolume, future: Future[list[TaskLabelMap]]) -> list[Job]:
        try:
            with torch_threads(self.config.threads), torch.inference_mode():
                series = self._prepare_series(volume, future)
        except Exception as err:  # noqa: BLE001 - isolate the failing series; it gets the error
            future.set_exception(err)
            return []
        parts: list[tuple[int, int, int, int] | None] = [None]
        split = self.model.card.z_split
        mode = ZSplitMode.parse(self.config.z_split, "z split")
        if split is not None and mode is not ZSplitMode.NEVER:
            if split.applies(series.working_shape, force=mode is ZSplitMode.ALWAYS):
                parts = list(split.parts(series.working_shape[0]))
        jobs = [
            Job(series=series, tasks=tasks, key=key, part=part)
            for key, tasks in self._groups.items()
            for part in parts
        ]
        series.pending_jobs = series.unprepared_jobs = len(jobs)
        return jobs

    def _prepare_series(
        self, volume: CTVolume, future: Future[list[TaskLabelMap]]
    ) -> SeriesInFlight:
        orientation = CanonicalOrientation.of(volume.geometry)
        # int16 as read: converted to float32 slab by slab where it is normalised
        hu = torch.from_numpy(np.ascontiguousarray(volume.hu)).to(self.output_device)
        canonical = orientation.to_canonical(hu)
        spacing = orientation.spacing
        working, working_spacing = canonical, spacing
        wrapper = self._wrapper
        if wrapper is not None and self._reference_zoom:
            zoom = self.model.card.wrapper_zoom
            assert zoom is not None
            # the tools take the voxel size from the NIfTI affine's column norms
            steps = orientation.step_lengths or spacing
            working = zoom_input(canonical, steps, wrapper, zoom)
            working_spacing = (wrapper, wrapper, wrapper)
        elif wrapper is not None:
            target = (wrapper, wrapper, wrapper)
            shape = compute_new_shape(canonical.shape, spacing, target)
            working = torch.empty(shape, device=self.output_device)
            for region, slab in resample_slabs(
                lambda region: canonical[region].float()[None],
                canonical.shape,
                shape,
                spacing,
                target,
                ResamplingSpec(3, 3, False),
                max_elements=self.config.slab_elements,
            ):
                working[region] = slab[0]
            working_spacing = target
        return SeriesInFlight(
            volume=volume,
            future=future,
            orientation=orientation,
            working=working,
            working_spacing=working_spacing,
            working_shape=(working.shape[0], working.shape[1], working.shape[2]),
            canonical_shape=(canonical.shape[0], canonical.shape[1], canonical.shape[2]),
        )

    def _job_bytes(self, job: Job, padded: tuple[int, ...], crop: tuple[int, ...]) -> int:
        # model-grid input, weights and logits of every task of the group; labels on the
        # working grid (at most int16); one resampling slab in flight
        n_model = math.prod(padded)
        classes = sum(t.folder.num_classes for t in job.tasks)
        labels = 2 * math.prod(crop) * len(job.tasks)
        sums = self._sum_dtype.itemsize * n_model * (classes + 1)
        return 4 * n_model + sums + labels + int(self.config.resample_slab_mb * 2**20)

    def _prepare_job(self, job: Job) -> None:
        task = job.tasks[0]
        folder = task.folder
        config = folder.configuration
        tf = folder.transpose_forward
        series = job.series
        assert series.working is not None, "every job of a series is prepared once"
        working = series.working if job.part is None else series.working[job.part[0] : job.part[1]]
        x = working.permute(tf)
        spacing = tuple(series.working_spacing[i] for i in tf)
        series.unprepared_jobs -= 1
        if series.unprepared_jobs <= 0:
            series.working = None  # x (and the crop below) keep it alive for this job only
        box = nonzero_bbox(x)
        if self.config.body_crop:
            body = body_bbox(x, (spacing[0], spacing[1], spacing[2]))
            box = tuple(  # type: ignore[assignment]
                slice(max(a.start, b.start), max(max(a.start, b.start), min(a.stop, b.stop)))
                for a, b in zip(box, body, strict=True)
            )
        cropped = x[box]
        crop_shape = (cropped.shape[0], cropped.shape[1], cropped.shape[2])
        job.bbox, job.crop_shape = box, crop_shape
        job.crop_spacing = (spacing[0], spacing[1], spacing[2])
        if 0 in crop_shape:
            job.data = None
            return
        new_shape = compute_new_shape(crop_shape, spacing, config.spacing)
        shape, undo = patch_padding(new_shape, config.patch_size)
        # zero padding where the image is smaller than a patch, as nnU-Net's pad_nd_image
        data = torch.zeros((1, *shape), device=self.output_device)
        inner = data[(slice(None), *undo)]
        for region, slab in resample_slabs(
            lambda region: ct_normalize(cropped[region], folder.intensity)[None],
            crop_shape,
            new_shape,
            spacing,
            config.spacing,
            config.data_resampling,
            max_elements=self.config.slab_elements,
        ):
            inner[(slice(None), *region)] = slab
        job.undo_pad = undo
        job.grid = WindowGrid(shape, config.patch_size, self.tile_step_size)
        job.starts = job.grid.starts()
        job.data = data
        sums = self._sum_dtype
        job.weight = torch.zeros(shape, dtype=sums, device=self.output_device)
        job.logits = {
            t.id: torch.zeros((t.folder.num_classes, *shape), dtype=sums, device=self.output_device)
            for t in job.tasks
        }

    def _admit(self, waiting: list[Job], active: list[Job]) -> None:
        limit = int(self.config.memory_limit_gb * 2**30)
        used = sum(j.nbytes for j in active)
        while waiting:
            job = waiting[0]
            if job.series.failed:
                waiting.pop(0)
                continue
            if active and job.key not in {j.key for j in active}:
                # A batch takes the windows of one group only (the first active job's), so a
                # job of another group would hold its accumulators idle until that group is
                # done: CADS's 9 groups on a 512x512x800 series held 4 at once (7.7 GiB).
                return
            estimate = self._estimate(job)
            if used + estimate > limit and active:
                return
            waiting.pop(0)
            if estimate > limit:
                self._fail(job.series, self._memory_error(job, estimate))
                continue
            try:
                with torch_threads(self.config.threads), torch.inference_mode():
                    self._prepare_job(job)
            except Exception as err:  # noqa: BLE001 - isolate the failing series
                self._fail(job.series, err)
                continue
            job.nbytes = estimate
            used += estimate
            if job.data is None:
                self._finish_job(job)
            else:
                active.append(job)

    def _estimate(self, job: Job) -> int:
        folder = job.tasks[0].folder
        tf = folder.transpose_forward
        working_shape = job.working_shape()
        shape = tuple(working_shape[i] for i in tf)
        spacing = tuple(job.series.working_spacing[i] for i in tf)
        new = compute_new_shape(shape, spacing, folder.configuration.spacing)
        padded = tuple(max(n, p) for n, p in zip(new, folder.configuration.patch_size, strict=True))
        return self._job_bytes(job, padded, shape)

    def _fail(self, series: SeriesInFlight, err: BaseException) -> None:
        with self._futures_lock:  # the overlapped worker's threads may fail one series at once
            if not series.failed:
                series.failed = True
                if not series.future.done():
                    series.future.set_exception(err)

    def _resolve(self, series: SeriesInFlight, labelmaps: list[TaskLabelMap]) -> None:
        with self._futures_lock:
            if not series.failed and not series.future.done():
                series.future.set_result(labelmaps)

    def _torch_threads(self) -> contextlib.AbstractContextManager[None]:
        return torch_threads(self.config.threads)

    def _memory_error(self, job: Job, estimate: int) -> InferenceError:
        return InferenceError(
            f"needs about {estimate / 2**30:.1f} GiB for tasks "
            f"{[t.id for t in job.tasks]} at model resolution but memory_limit_gb is "
            f"{self.config.memory_limit_gb}; raise the limit, use body_crop, or "
            "segment fewer tasks at once",
            series_instance_uid=job.series.volume.series_instance_uid,
            reason="memory",
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        precision = Precision.parse(self.config.precision, "precision")
        if precision is Precision.AUTO:
            cuda = self.device.type == DeviceKind.CUDA
            precision = Precision.FP16 if cuda else Precision.FP32
        if precision is Precision.FP32:
            return contextlib.nullcontext()
        dtype = torch.float16 if precision is Precision.FP16 else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def _step(self, active: list[Job]) -> None:
        self._step_windows(active)
        for job in [j for j in active if j.next_window >= len(j.starts)]:
            active.remove(job)
            self._finish_job(job)

    def _step_windows(self, active: list[Job]) -> None:
        key = active[0].key
        batch: list[tuple[Job, tuple[int, int, int]]] = []
        for job in active:
            if job.key != key:
                continue
            while job.next_window < len(job.starts) and len(batch) < self.config.batch_size:
                batch.append((job, job.starts[job.next_window]))
                job.next_window += 1
            if len(batch) >= self.config.batch_size:
                break
        tiles = torch.stack(
            [
                job.data[(slice(None), *job.grid.slices(start))]  # type: ignore[index,union-attr]
                for job, start in batch
            ]
        ).to(self.device)
        tasks = active[0].tasks
        gaussian = gaussian_importance(tasks[0].folder.configuration.patch_size, self.output_device)
        try:
            for task in tasks:
                total: torch.Tensor | None = None
                for network in task.networks:
                    out = self._predict(network, tiles, task.mirror_axes)
                    total = out if total is None else total + out
                assert total is not None
                total = total.to(self.output_device)
                for i, (job, start) in enumerate(batch):
                    region = job.grid.slices(start)  # type: ignore[union-attr]
                    job.logits[task.id][(slice(None), *region)] += total[i] * gaussian
            for job, start in batch:
                job.weight[job.grid.slices(start)] += gaussian  # type: ignore[index,union-attr]
        except Exception as err:  # noqa: BLE001 - isolate the series of this batch
            for job, _ in batch:
                self._fail(job.series, err)
                job.next_window = len(job.starts)

    def _predict(
        self, network: torch.nn.Module, tiles: torch.Tensor, axes: tuple[int, ...] | None
    ) -> torch.Tensor:
        with self._autocast():
            prediction = network(tiles).float()
            if axes:
                dims = [a + 2 for a in axes]
                combos = [c for n in range(1, len(dims) + 1) for c in _combinations(dims, n)]
                for combo in combos:
                    prediction += torch.flip(network(torch.flip(tiles, combo)), combo).float()
                prediction /= len(combos) + 1
        return prediction

    def _finish_job(self, job: Job) -> None:
        series = job.series
        try:
            if not series.failed:
                with torch_threads(self.config.threads), torch.inference_mode():
                    for task in job.tasks:
                        labels = self._labels_on_working_grid(job, task)
                        job.logits.pop(task.id, None)
                        if job.part is None:
                            series.labels[task.id] = labels
                            continue
                        lo, _, keep_lo, keep_hi = job.part
                        whole = series.labels.get(task.id)
                        if whole is None:
                            whole = torch.zeros(
                                series.working_shape, dtype=labels.dtype, device=labels.device
                            )
                            series.labels[task.id] = whole
                        whole[keep_lo:keep_hi] = labels[keep_lo - lo : keep_hi - lo]
        except Exception as err:  # noqa: BLE001 - isolate the failing series
            self._fail(series, err)
        job.logits.clear()
        job.data = job.weight = None
        series.pending_jobs -= 1
        if series.pending_jobs == 0 and not series.failed:
            try:
                with torch_threads(self.config.threads), torch.inference_mode():
                    self._resolve(series, self._finish_series(series))
            except Exception as err:  # noqa: BLE001 - isolate the failing series
                self._fail(series, err)

    def _labels_on_working_grid(self, job: Job, task: LoadedTask) -> torch.Tensor:
        folder = task.folder
        tf = folder.transpose_forward
        working_shape = job.working_shape()
        shape_t = tuple(working_shape[i] for i in tf)
        dtype = _label_dtype(folder.num_classes)
        full = torch.zeros(shape_t, dtype=dtype, device=self.output_device)
        if job.data is not None and job.weight is not None:
            assert job.bbox is not None
            target = full[job.bbox]
            logits = job.logits[task.id][(slice(None), *job.undo_pad)]
            weight = job.weight[job.undo_pad] * len(task.networks)
            model_shape = tuple(logits.shape[1:])
            model_spacing = folder.configuration.spacing
            if self.config.resample_logits:
                slabs = resample_slabs(
                    # divided in the sums' dtype (nnU-Net: float16), resampled in float32
                    lambda region: (logits[(slice(None), *region)] / weight[region]).float(),
                    model_shape,
                    job.crop_shape,
                    model_spacing,
                    job.crop_spacing,
                    folder.configuration.probability_resampling,
                    clip=False,
                    max_elements=self.config.slab_elements,
                    channels=folder.num_classes,
                )
                for region, slab in slabs:
                    # max(dim=0) returns the first maximum, as argmax does, several times faster
                    target[region] = slab.max(dim=0).indices.to(dtype)
            else:
                labels = (logits / weight).max(dim=0).indices.to(dtype)[None]
                slabs = resample_slabs(
                    lambda region: labels[(slice(None), *region)],
                    model_shape,
                    job.crop_shape,
                    model_spacing,
                    job.crop_spacing,
                    ResamplingSpec(0, 0, False),
                    clip=False,
                    max_elements=self.config.slab_elements,
                )
                for region, slab in slabs:
                    target[region] = slab[0]
        return full.permute(folder.transpose_backward)

    def _finish_series(self, series: SeriesInFlight) -> list[TaskLabelMap]:
        labels = postprocess(
            self.model,
            series.labels,
            series.working_spacing,
            enabled=self.config.postprocessing,
        )
        series.labels.clear()
        out = []
        for task in self.model.tasks:
            array = labels.pop(task.id)
            if tuple(array.shape) != series.canonical_shape and self._reference_zoom:
                assert self.model.card.wrapper_zoom is not None
                mode = self.model.card.wrapper_zoom.mode
                array = zoom_labels(array, series.canonical_shape, mode)
            elif tuple(array.shape) != series.canonical_shape:
                array = _nearest(array, series.canonical_shape, self.config.slab_elements)
            numpy_labels = array.to("cpu").numpy()
            dtype = np.uint8 if task.folder.num_classes <= 256 else np.uint16
            source = series.orientation.to_source(numpy_labels.astype(dtype, copy=False))
            del array, numpy_labels
            out.append(
                TaskLabelMap(
                    model=self.model.card.name,
                    task=task.id,
                    array=source,  # type: ignore[arg-type]
                    labels=dict(task.folder.labels),
                    model_version=f"{self.model.card.version}:{self.model.variant}".strip(":"),
                )
            )
        if self.model.card.merge is not None:
            out = merge_labelmaps(out, self.model.card.merge)
        if self.model.keep is not None:
            out = keep_structures(out, self.model.keep)
        return out


def _label_dtype(num_classes: int) -> torch.dtype:
    """The smallest torch dtype that holds labels 0 .. num_classes - 1."""
    return torch.uint8 if num_classes <= 256 else torch.int16


def _nearest(labels: torch.Tensor, shape: tuple[int, int, int], max_elements: int) -> torch.Tensor:
    """Labels resampled to ``shape`` with nearest neighbour, slab by slab, in their dtype."""
    out = torch.empty(shape, dtype=labels.dtype, device=labels.device)
    ones = (1.0, 1.0, 1.0)
    slabs = resample_slabs(
        lambda region: labels[region][None],
        labels.shape,
        shape,
        ones,
        ones,
        ResamplingSpec(0, 0, False),
        clip=False,
        max_elements=max_elements,
    )
    for region, slab in slabs:
        out[region] = slab[0]
    return out


def _combinations(items: list[int], n: int) -> list[list[int]]:
    import itertools

    return [list(c) for c in itertools.combinations(items, n)]
