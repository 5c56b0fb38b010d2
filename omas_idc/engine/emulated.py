"""An emulated accelerator: networks that take a set time per batch without using the CPU.

For benchmarks and tests of the run's scheduling (issue 20): on a CPU-only machine every stage
competes for the same cores, so the pipeline's overlap cannot be seen. An
:class:`EmulatedNetwork` stands in for a task's network: its forward builds a cheap output of
the right shape (background everywhere except where the normalised intensity is above a
threshold, where class 1 wins) and then sleeps the rest of the configured time per batch.
``time.sleep`` releases the GIL, as a thread waiting on a GPU does, so the other stages run
meanwhile. A :class:`DeviceClock` adds up the time spent inside the forwards, the device's
busy time.

:func:`emulate_model` swaps the networks of a loaded model; the engine runs it unchanged
(``Segmenter(emulate_model(load_model(...), 0.2, clock))``). Nothing in the normal path uses it.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import torch
from torch import nn

from omas_idc.engine.model import SegmentationModel
from omas_idc.errors import ConfigurationError

__all__ = ["DeviceClock", "EmulatedNetwork", "emulate_model"]


class DeviceClock:
    """Busy time, forward calls and windows of the emulated device (thread-safe).

    ``first_start`` and ``last_end`` (``time.perf_counter`` values, ``None`` before the first
    forward) bound the device's working window: busy time over that window is the busy
    fraction without the pipeline's fill (the first series' fetch and read) and drain (the
    last series' encoding and publishing), which no schedule can overlap.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.busy_seconds = 0.0
        self.calls = 0
        self.windows = 0
        self.first_start: float | None = None
        self.last_end: float | None = None

    def add(self, seconds: float, windows: int, end: float | None = None) -> None:
        """Record one forward of ``windows`` windows that took ``seconds`` and ended at ``end``
        (``time.perf_counter()``; now when ``None``)."""
        end = time.perf_counter() if end is None else end
        with self._lock:
            self.busy_seconds += seconds
            self.calls += 1
            self.windows += windows
            if self.first_start is None:
                self.first_start = end - seconds
            self.last_end = end

    @property
    def window_seconds(self) -> float:
        """Seconds from the start of the first forward to the end of the last (0 before any)."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start

    def reset(self) -> None:
        """Start counting again from zero."""
        with self._lock:
            self.busy_seconds = 0.0
            self.calls = 0
            self.windows = 0
            self.first_start = self.last_end = None


class EmulatedNetwork(nn.Module):
    """A network stand-in whose forward takes ``seconds_per_batch`` of wall time, mostly asleep.

    Parameters
    ----------
    num_classes
        Output channels (labels plus background), as the replaced network's.
    seconds_per_batch
        Wall time of one forward, whatever the batch size (building the output counts in it).
    clock
        Where the time inside each forward is added.
    threshold
        Normalised intensity above which class 1 wins (background elsewhere).
    """

    def __init__(
        self,
        num_classes: int,
        seconds_per_batch: float,
        clock: DeviceClock,
        threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigurationError(f"an emulated network needs >= 2 classes, got {num_classes}")
        if seconds_per_batch < 0:
            raise ConfigurationError(
                f"seconds_per_batch must be >= 0, got {seconds_per_batch}; use 0 for no delay"
            )
        self.num_classes = num_classes
        self.seconds_per_batch = float(seconds_per_batch)
        self.clock = clock
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes, *x.shape[2:])`` after the configured time."""
        start = time.perf_counter()
        out = torch.zeros((x.shape[0], self.num_classes, *x.shape[2:]), dtype=torch.float32)
        out[:, 1] = (x[:, 0] > self.threshold).to(torch.float32)
        remaining = self.seconds_per_batch - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)  # releases the GIL, as waiting on a device does
        end = time.perf_counter()
        self.clock.add(end - start, int(x.shape[0]), end)
        return out.to(x.device)


def emulate_model(
    model: SegmentationModel, seconds_per_batch: float, clock: DeviceClock
) -> SegmentationModel:
    """``model`` with every network replaced by an :class:`EmulatedNetwork`.

    Test-time mirroring is switched off, so that one batch of windows is one forward per
    network (a task with several folds still runs each fold).

    Parameters
    ----------
    model
        A loaded model (its folders give the class counts).
    seconds_per_batch
        Wall time of each forward.
    clock
        Shared by all the networks: the device's busy time.
    """
    tasks = [
        dataclasses.replace(
            task,
            networks=[
                EmulatedNetwork(task.folder.num_classes, seconds_per_batch, clock)
                for _ in task.networks
            ],
            mirror_axes=None,
        )
        for task in model.tasks
    ]
    return dataclasses.replace(model, tasks=tasks)
