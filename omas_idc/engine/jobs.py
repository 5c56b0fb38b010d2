"""The segmenter's units of work: a series in flight and its jobs (one group of tasks each).

A :class:`SeriesInFlight` is a submitted volume once reoriented (and resampled to the wrapper's
grid); it has one :class:`Job` per group of tasks sharing plans (per part along S where the
card splits large images). A job holds its model-grid input, its window grid and the logits
accumulators of its tasks until its labels are made. Both are internal to
:class:`~omas_idc.engine.segmenter.Segmenter` and its workers.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from omas_idc.engine.model import LoadedTask
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.sliding_window import WindowGrid
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = ["Job", "SeriesInFlight"]


@dataclass(eq=False)
class SeriesInFlight:
    """A submitted series between its preparation and its result."""

    volume: CTVolume
    future: Future[list[TaskLabelMap]]
    orientation: CanonicalOrientation
    # canonical (S, A, R) HU: int16, or float32 where a wrapper resampled it; dropped once
    # every job has its model-grid input
    working: torch.Tensor | None
    working_spacing: tuple[float, float, float]
    working_shape: tuple[int, int, int]
    canonical_shape: tuple[int, int, int]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    pending_jobs: int = 0
    unprepared_jobs: int = 0
    failed: bool = False


@dataclass(eq=False)
class Job:
    """One group of tasks (sharing plans) on one series, or on one part of it along S."""

    series: SeriesInFlight
    tasks: list[LoadedTask]
    key: tuple[object, ...]
    data: torch.Tensor | None = None
    grid: WindowGrid | None = None
    starts: list[tuple[int, int, int]] = field(default_factory=list)
    next_window: int = 0
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bbox: tuple[slice, slice, slice] | None = None
    crop_shape: tuple[int, int, int] = (0, 0, 0)
    crop_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    undo_pad: tuple[slice, ...] = ()
    # memory estimate reserved against memory_limit_gb while the job holds its buffers
    nbytes: int = 0
    # a part along S of the working grid (TotalSegmentator's split): input slices [lo, hi),
    # filling slices [keep_lo, keep_hi) of the whole map
    part: tuple[int, int, int, int] | None = None

    def working_shape(self) -> tuple[int, int, int]:
        """The canonical shape of this job's input (its part of the working grid)."""
        s, a, r = self.series.working_shape
        return (s, a, r) if self.part is None else (self.part[1] - self.part[0], a, r)
