"""Pipeline benchmark with an emulated accelerator: does the pipelined run keep the device busy?

On a CPU-only machine every stage competes for the same cores (benchmarks/pipeline.py measures
the pipeline at parity there). Here the model's networks are replaced by
:class:`omas_idc.engine.emulated.EmulatedNetwork`: each forward sleeps a set time per batch of
windows (releasing the GIL, as a thread waiting on a GPU does), so the device, not the CPU, can
be the slow part. Phantom series are served from a loopback S3 server (moto_server) in IDC's
bucket layout, as in benchmarks/pipeline.py.

1. calibration: the sequential run (fetch, read, segment, encode, QA, publish, one series after
   another) with no device time gives the seconds per series of the CPU stages ``S0``; the
   pipelined run (``omas_idc.run.runner.execute_run``) gives the CPU-seconds per series ``C``
   of the run's process;
2. for device times ``D`` of 0.5, 1, 2 and 4 x ``S0`` per series (0.5 and 2 with ``--quick``),
   both runs again: series/hour, the device busy fraction (time inside the emulated forwards /
   wall time; *steady*: over the device's own window, from its first forward to its last, so
   without the pipeline's fill and drain, the first series' fetch and the last one's
   publishing, which no schedule overlaps and which a cohort of thousands of series amortises),
   the measured ratio of the rates and the expected one, ``(S0 + D) / max(S0, D)`` (the stages
   overlapping perfectly over a long run) and ``n (S0 + D) / (n max(S0, D) + min(S0, D))`` for
   these ``n`` series (the first series' CPU stages before the device and the last one's after
   it overlap nothing), and the CPU cores per accelerator below which the CPU stages become the
   limit, ``C / D``;
3. where the device idles inside its window: the device thread's time around the forwards per
   batch (tiles, accumulating the logits) and the time with no batch running.

Usage: ``python benchmarks/pipeline_device.py [--quick] [--series N] [--multiples 2,4]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from omas_idc.testing.s3server import moto_server

FULL: dict[str, Any] = {
    "series": 4,
    "shape": (48, 160, 160),
    "spacing": (2.5, 2.5),
    "slice": 5.0,
    "patch": (24, 96, 96),
    "multiples": (0.5, 1.0, 2.0, 4.0),
}
QUICK: dict[str, Any] = {
    "series": 3,
    "shape": (10, 40, 40),
    "spacing": (9.0, 9.0),
    "slice": 20.0,
    "patch": (8, 16, 16),
    "multiples": (0.5, 2.0),
}


@functools.cache
def _base() -> Any:
    """benchmarks/pipeline.py as a module (its phantom upload to the loopback S3 server)."""
    spec = importlib.util.spec_from_file_location(
        "omas_pipeline_benchmark", Path(__file__).with_name("pipeline.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(root: Path, size: dict[str, Any]) -> Any:
    """A 2-label nnU-Net folder (its networks are replaced by emulated ones) loaded on the CPU."""
    from omas_idc.engine.model import load_model
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    spacing = size["spacing"]
    folder = make_model_folder(
        root,
        SyntheticModel(
            labels=("liver", "vertebrae_L1"),
            weights="threshold",
            thresholds_hu=(-200.0, 250.0),
            spacing=(float(size["slice"]), float(spacing[0]), float(spacing[1])),
            patch_size=size["patch"],
            features=4,
            folds=("all",),
            mirror_axes=None,
        ),
    )
    return folder, load_model(folder)


def _engine(model: Any) -> Any:
    """The run's engine as ``build_engine`` configures it on this machine's CPUs, with its CPU
    work overlapped with the device's batches as on an accelerator (the emulated networks
    "run" on the CPU device, where the engine would not overlap by default)."""
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
    from omas_idc.run.engine_setup import cpu_engine_threads

    class TimedSegmenter(Segmenter):
        def _step_windows(self, active: list[Any]) -> None:
            start = time.perf_counter()
            super()._step_windows(active)
            STEPS.add(time.perf_counter() - start)

    threads = cpu_engine_threads(os.cpu_count() or 1)
    config = SegmenterConfig(device="cpu", threads=threads, overlap_cpu_work=True)
    return TimedSegmenter(model, config)


class _StepTimes:
    """Wall time of the device thread's batches (forwards plus their accumulation)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.batches = 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.batches += 1

    def reset(self) -> None:
        self.seconds, self.batches = 0.0, 0


STEPS = _StepTimes()


def _sequential(refs: list[Any], model: Any, endpoint: str, work: Path) -> dict[str, float]:
    """Every stage of each series, one after another; seconds per stage."""
    with _engine(model) as engine:
        return _base().sequential_stages(refs, model, engine, endpoint, work)


def _pipelined(
    refs: list[Any], model: Any, model_dir: Path, endpoint: str, work: Path
) -> tuple[float, float]:
    """``execute_run`` over ``refs``: its wall seconds and the process' CPU-seconds."""
    from omas_idc.run.config import RunConfig
    from omas_idc.run.pipeline import ModelInfo
    from omas_idc.run.runner import RunRequest, execute_run

    config = RunConfig(name="bench").with_overrides(
        model={"name": str(model_dir), "device": "cpu"}, output={"delete_downloads": False}
    )
    info = ModelInfo(name=model.card.name, version="bench", task_order=(), device="cpu")
    request = RunRequest(
        config=config,
        out=str(work / "out"),
        work_dir=work / "work",
        endpoint_url=endpoint,
        timestamp=datetime(2026, 1, 1),
    )
    engine = _engine(model)
    cpu = time.process_time()
    try:
        result = execute_run(request, engine, info, refs=refs)
    finally:
        engine.close()
    cpu = time.process_time() - cpu
    report = json.loads(result.report_path.read_text())
    if report["done"] != len(refs):
        raise SystemExit(f"pipelined run finished {report['done']} of {len(refs)} series: {report}")
    return float(report["seconds"]), cpu


def _set_device_seconds(model: Any, seconds_per_batch: float) -> None:
    for task in model.tasks:
        for network in task.networks:
            network.seconds_per_batch = seconds_per_batch


def main() -> None:
    from omas_idc.engine.emulated import DeviceClock, emulate_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 tiny series, 2 device times")
    parser.add_argument("--series", type=int, default=None, help="series per run (default 4)")
    parser.add_argument(
        "--multiples",
        default=None,
        help="device times as multiples of the CPU stages' time, comma-separated "
        "(default 0.5,1,2,4; --quick 0.5,2)",
    )
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    n = args.series or int(size["series"])
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    base = _base()
    clock = DeviceClock()
    rows = []
    idle = []
    with (
        moto_server() as endpoint,
        tempfile.TemporaryDirectory(prefix="omas-pipeline-device-") as folder,
    ):
        root = Path(folder)
        refs = base._upload(endpoint, root / "phantoms", {**size, "series": n})
        model_dir, loaded = _model(root / "model", size)
        model = emulate_model(loaded, 0.0, clock)
        _sequential(refs[:1], model, endpoint, root / "warmup")  # load code paths once
        clock.reset()
        times = _sequential(refs, model, endpoint, root / "calibration-sequential")
        calls_per_series = clock.calls / n
        cpu_stages = sum(times.values()) / n  # S0: no device time
        _, cpu = _pipelined(refs, model, model_dir, endpoint, root / "calibration-pipelined")
        cpu_per_series = cpu / n  # C
        multiples = size["multiples"]
        if args.multiples:
            multiples = tuple(float(m) for m in args.multiples.split(","))
        for r, multiple in enumerate(multiples):
            device = multiple * cpu_stages
            _set_device_seconds(model, device / calls_per_series)
            clock.reset()
            sequential = sum(_sequential(refs, model, endpoint, root / f"sequential{r}").values())
            sequential_busy = clock.busy_seconds
            clock.reset()
            STEPS.reset()
            wall, _ = _pipelined(refs, model, model_dir, endpoint, root / f"pipelined{r}")
            steady = clock.busy_seconds / clock.window_seconds
            rows.append((device, sequential, sequential_busy, wall, clock.busy_seconds, steady))
            # where the device idles inside its window: the device thread's own work around
            # the forwards (tiles, accumulation), and time with no batch running at all
            idle.append(
                (
                    device,
                    (STEPS.seconds - clock.busy_seconds) / max(1, STEPS.batches),
                    clock.window_seconds - STEPS.seconds,
                    clock.window_seconds - clock.busy_seconds,
                )
            )
    shape = size["shape"]
    print(
        f"{n} series of {shape[2]}x{shape[1]}x{shape[0]} from a loopback S3 server; "
        f"emulated device: {calls_per_series:.1f} forwards per series"
    )
    total = sum(times.values())
    print(
        f"CPU stages {cpu_stages:.3f} s per series sequential without device time ("
        + ", ".join(f"{stage} {100 * seconds / total:.0f}%" for stage, seconds in times.items())
        + f"); run CPU {cpu_per_series:.3f} CPU-s per series"
    )
    print(
        "device s/series | sequential s  series/h  busy | pipelined s  series/h  busy | "
        "steady busy | ratio  expected (long run, these n) | CPU-limit cores"
    )
    for device, sequential, sequential_busy, wall, busy, steady in rows:
        expected = (cpu_stages + device) / max(cpu_stages, device)
        slower, faster = max(cpu_stages, device), min(cpu_stages, device)
        expected_n = n * (cpu_stages + device) / (n * slower + faster)
        print(
            f"device {device:8.3f} | sequential {sequential:8.2f} {3600 * n / sequential:9.1f} "
            f"{100 * sequential_busy / sequential:5.1f}% | pipelined {wall:8.2f} "
            f"{3600 * n / wall:9.1f} {100 * busy / wall:5.1f}% | steady {100 * steady:5.1f}% | "
            f"x{sequential / wall:.2f} x{expected:.2f} x{expected_n:.2f} | "
            f"{cpu_per_series / device:.2f}"
        )
    print("device idle within its window (pipelined):")
    for device, per_batch, between, total_idle in idle:
        print(
            f"  device {device:8.3f}: {total_idle:6.2f} s idle = {1000 * per_batch:6.1f} ms per "
            f"batch on the device thread around the forwards + {between:6.2f} s between batches"
        )


if __name__ == "__main__":
    main()
