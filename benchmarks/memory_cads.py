"""Peak host memory of one 512x512x800 CT series through all 9 CADS tasks (167 classes).

    python benchmarks/memory_cads.py [--quick] [--slices 800] [--tasks 551,552,...]

Writes 9 nnU-Net folders with CADS's task ids, trainer and plans names and label names (from
the cads card's label table) but tiny random networks (ResEnc, 2 features, 3 stages) at CADS's
1.5 mm, each with its own CT normalisation (so each task is its own group, as CADS's datasets
are); loads them through the cads card (its 1.5 mm wrapper, its post-processing rules) and
segments one synthetic CT volume of 512x512 x ``--slices`` at 0.7 x 0.7 x 0.625 mm with the
run's engine settings (``SegmenterConfig`` defaults: ``memory_limit_gb`` 8, logits resampled to
the source grid before the argmax). The windows are tiled without overlap (tile step 1), which
changes the time, not the memory: the accumulators are allocated per task whatever the step.

The work runs in a child process; its ``ru_maxrss`` (resident set, torch's CPU tensors
included) is the number printed, against the 8 GB goal of issue 20. Nothing is asserted.
``--quick`` (CI): 40 slices, 2 tasks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

GOAL_GB = 8.0
PIXEL_MM = 0.7
SLICE_MM = 0.625
PATCH = (64, 64, 64)


def _label_names() -> dict[str, list[str]]:
    """Task id -> its label names in label order, from the cads card's label table."""
    from omas_idc.engine.card import load_card

    rows: dict[str, list[tuple[int, str]]] = {}
    for row in load_card("cads").labels:
        rows.setdefault(row.task, []).append((row.label, row.label_name))
    return {task: [name for _, name in sorted(labels)] for task, labels in rows.items()}


def _folders(root: Path, tasks: list[str]) -> None:
    from omas_idc.engine.card import load_card
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    card = load_card("cads")
    names = _label_names()
    for i, task_id in enumerate(tasks):
        task = card.task(task_id)
        make_model_folder(
            root,
            SyntheticModel(
                dataset_id=int(task_id),
                dataset_name=task.dataset.split("_", 1)[1],
                labels=tuple(names[task_id]),
                architecture="resenc",
                trainer_name=task.trainer,
                plans_name=task.plans,
                patch_size=PATCH,
                spacing=(1.5, 1.5, 1.5),
                features=2,
                n_stages=3,
                mirror_axes=None,
                intensity=(40.0 + i, 250.0, -1000.0, 1500.0),
                seed=i,
            ),
        )


def _volume(slices: int) -> Any:
    """A body-like CT volume (air, soft tissue, lungs, a spine), int16, built in seconds."""
    import numpy as np

    from omas_idc.geometry import VolumeGeometry
    from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    plane = np.full((512, 512), -1000, dtype=np.int16)
    plane[((y - 256) / 180) ** 2 + ((x - 256) / 230) ** 2 < 1] = 40
    for cx in (170, 342):
        plane[((y - 230) / 90) ** 2 + ((x - cx) / 60) ** 2 < 1] = -800
    plane[((y - 380) / 25) ** 2 + ((x - 256) / 25) ** 2 < 1] = 700
    hu = np.empty((slices, 512, 512), dtype=np.int16)
    for k in range(slices):
        hu[k] = plane + np.int16(k % 50)
    geometry = VolumeGeometry.from_slices(
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        (PIXEL_MM, PIXEL_MM),
        [np.array([-179.0, -179.0, SLICE_MM * k]) for k in range(slices)],
        512,
        512,
    )
    refs = tuple(
        SourceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.4.{k + 1}") for k in range(slices)
    )
    header = SeriesHeader(
        series_instance_uid="1.2.3.4", study_instance_uid="1.2.3", frame_of_reference_uid="1.2.5"
    )
    return CTVolume(hu=hu, geometry=geometry, source_refs=refs, header=header)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def _child(slices: int, tasks: list[str], weights: Path) -> None:
    """Segment one volume; print a JSON line of peaks and timings."""
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    model = load_model("cads", weights_dir=weights, tasks=tasks)
    after_model = _rss_gb()
    volume = _volume(slices)
    after_volume = _rss_gb()
    start = time.perf_counter()
    with Segmenter(model, SegmenterConfig(device="cpu", tile_step_size=1.0)) as engine:
        maps = engine.segment(volume)
    seconds = time.perf_counter() - start
    labels = sum(m.array.nbytes for m in maps)
    print(
        json.dumps(
            {
                "peak_gb": _rss_gb(),
                "after_model_gb": after_model,
                "after_volume_gb": after_volume,
                "volume_gb": volume.hu.nbytes / 1e9,
                "label_maps_gb": labels / 1e9,
                "tasks": [m.task for m in maps],
                "classes": sum(len(m.labels) - ("0" in m.labels or 0 in m.labels) for m in maps),
                "seconds": seconds,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 slices, 2 tasks (CI)")
    parser.add_argument("--slices", type=int, default=None, help="slices (default 800)")
    parser.add_argument("--tasks", default=None, help="comma-separated CADS task ids (all 9)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    slices = args.slices or (40 if args.quick else 800)
    tasks = args.tasks.split(",") if args.tasks else (["551", "559"] if args.quick else None)
    if tasks is None:
        tasks = sorted(_label_names())
    if args.child:
        _child(slices, tasks, Path(args.child))
        return
    with tempfile.TemporaryDirectory(prefix="omas-memory-cads-") as folder:
        weights = Path(folder)
        _folders(weights, tasks)
        command = [sys.executable, __file__, "--slices", str(slices), "--tasks", ",".join(tasks)]
        result = subprocess.run(
            [*command, "--child", str(weights)], capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"the child failed ({result.returncode}):\n{result.stderr[-4000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    per_task = Counter(len(_label_names()[t]) for t in tasks)
    print(
        f"1 series of 512x512x{slices} ({PIXEL_MM} x {PIXEL_MM} x {SLICE_MM} mm), "
        f"{len(tasks)} CADS tasks, {data['classes']} classes "
        f"({', '.join(f'{n} tasks of {c}' for c, n in sorted(per_task.items()))}), "
        f"segmented in {data['seconds']:.1f} s"
    )
    print(
        f"host memory: after loading the networks {data['after_model_gb']:.2f} GB, with the "
        f"volume ({data['volume_gb']:.2f} GB) {data['after_volume_gb']:.2f} GB; label maps "
        f"{data['label_maps_gb']:.2f} GB"
    )
    verdict = "within" if data["peak_gb"] < GOAL_GB else "OVER"
    print(f"peak host memory {data['peak_gb']:.2f} GB ({verdict} the {GOAL_GB:.0f} GB goal)")


if __name__ == "__main__":
    main()
