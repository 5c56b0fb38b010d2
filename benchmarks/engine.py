"""Segment engine vs nnU-Net's nnUNetPredictor: same weights, same volume, CPU.

    python benchmarks/engine.py            # full: 512x512x300 phantom, 3-task model
    python benchmarks/engine.py --quick    # seconds (run by tests/test_benchmarks_engine.py)

Each contender runs in its own subprocess; the parent measures its wall time and its peak
resident memory (``ru_maxrss`` through ``os.wait4``). The parent imports neither numpy nor torch
before the children have run: ``ru_maxrss`` survives fork+exec, so a child spawned from a big
parent would inherit the parent's peak. Contenders:

- ``omas-idc``: :class:`omas_idc.engine.segmenter.Segmenter` on all tasks at once, nnU-Net's
  settings (tile step 0.5, Gaussian weighting, logits resampled before the argmax, fp32);
- ``nnU-Net``: one ``nnUNetPredictor`` per task, ``predict_single_npy_array`` (its
  preprocessing, sliding window and export to the original geometry);
- ``omas-idc fast``: body crop and tile step 0.75 (logits still resampled before the argmax).

The model is synthetic (``omas_idc.engine.synthetic``, "threshold" weights: smooth outputs, so
Dice between settings means something): three tasks of eight classes sharing one plans file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
TASKS = {  # dataset id -> live thresholds (HU); five more classes that never win
    911: (-500.0, 200.0),
    912: (-200.0, 100.0),
    913: (0.0, 300.0),
}
DEAD = (3000.0, 3100.0, 3200.0, 3300.0, 3400.0)


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "render": (40, 64, 64),
            "shape": (40, 64, 64),
            "pixel_spacing": 6.0,
            "slice_spacing": 6.0,
            "model_spacing": (7.0, 7.0, 7.0),
            "patch": (16, 32, 32),
            "features": 4,
            "stages": 3,
        }
    return {
        "render": (150, 256, 256),
        "shape": (300, 512, 512),
        "pixel_spacing": 0.8,
        "slice_spacing": 1.5,
        "model_spacing": (2.0, 2.0, 2.0),
        "patch": (64, 64, 64),
        "features": 8,
        "stages": 4,
    }


# -- children --------------------------------------------------------------------------------


def _prepare(work: Path, quick: bool) -> None:
    """Write the model folders, a card naming them, and the volume (npy + pickled geometry)."""
    import pickle

    import numpy as np
    from scipy.ndimage import zoom

    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
    from omas_idc.geometry import VolumeGeometry
    from omas_idc.phantom import PhantomOptions, render_phantom

    size = _sizes(quick)
    models = work / "models"
    tasks = []
    for dataset_id, live in TASKS.items():
        spec = SyntheticModel(
            dataset_id=dataset_id,
            dataset_name=f"Bench{dataset_id}",
            labels=tuple(f"class{i}" for i in range(1, 8)),
            weights="threshold",
            thresholds_hu=(*live, *DEAD),
            spacing=size["model_spacing"],
            patch_size=size["patch"],
            features=size["features"],
            n_stages=size["stages"],
            mirror_axes=None,
        )
        make_model_folder(models, spec)
        tasks.append(
            {
                "id": str(dataset_id),
                "dataset": f"Dataset{dataset_id}_Bench{dataset_id}",
                "trainer": spec.trainer_name,
                "plans": spec.plans_name,
            }
        )
    card = {
        "name": "bench",
        "recipe": "nnunet-native",
        "variants": {"local": {"licence": ""}},
        "tasks": tasks,
    }
    (models / "bench.json").write_text(json.dumps(card))

    # Rendering 512x512x300 analytically takes minutes; render at half resolution and
    # interpolate up (the result is a 512x512x300 CT at 0.8 x 0.8 x 1.5 mm all the same).
    render = size["render"]
    factor = size["shape"][1] / render[1]
    options = PhantomOptions(
        shape=render,
        pixel_spacing=(size["pixel_spacing"] * factor,) * 2,
        slice_spacing=size["slice_spacing"] * size["shape"][0] / render[0],
        seed=4,
    )
    coarse_geometry, hu, _labels, _ = render_phantom(options)
    if tuple(render) != tuple(size["shape"]):
        factors = [s / r for s, r in zip(size["shape"], render, strict=True)]
        hu = zoom(hu.astype(np.float32), factors, order=1)
    # the same field of view, sampled at the fine spacing (axial, head first supine)
    first = coarse_geometry.slice_positions[0]
    step = np.array([0.0, 0.0, size["slice_spacing"]])
    positions = [first + k * step for k in range(hu.shape[0])]
    geometry = VolumeGeometry.from_slices(
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        (size["pixel_spacing"],) * 2,
        positions,
        hu.shape[1],
        hu.shape[2],
    )
    np.save(work / "hu.npy", np.round(hu).astype(np.int16))
    (work / "geometry.pkl").write_bytes(pickle.dumps(geometry))


def _load_volume(work: Path) -> Any:
    import pickle

    import numpy as np

    from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

    hu = np.load(work / "hu.npy")
    geometry = pickle.loads((work / "geometry.pkl").read_bytes())
    refs = tuple(
        SourceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i + 1}") for i in range(hu.shape[0])
    )
    header = SeriesHeader(
        series_instance_uid="1.2.3.4", study_instance_uid="1.2.3", frame_of_reference_uid="1.2.5"
    )
    return CTVolume(hu=hu, geometry=geometry, source_refs=refs, header=header)


def _ours(work: Path, fast: bool) -> None:
    import numpy as np

    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    volume = _load_volume(work)
    start = time.perf_counter()
    model = load_model(work / "models" / "bench.json")
    config = SegmenterConfig(
        batch_size=2,
        memory_limit_gb=16.0,
        body_crop=fast,
        tile_step_size=0.75 if fast else None,
    )
    with Segmenter(model, config) as segmenter:
        maps = segmenter.segment(volume)
    elapsed = time.perf_counter() - start
    tag = "fast" if fast else "ours"
    for labelmap in maps:
        np.save(work / f"{tag}_{labelmap.task}.npy", labelmap.array)
    (work / f"{tag}.json").write_text(json.dumps({"compute_s": elapsed}))


def _nnunet(work: Path) -> None:
    import contextlib
    import io

    import numpy as np
    import torch

    from omas_idc.engine.nnunet_reference import nnunet_predictor
    from omas_idc.engine.preprocessing import CanonicalOrientation

    volume = _load_volume(work)
    start = time.perf_counter()
    orientation = CanonicalOrientation.of(volume.geometry)
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu)).numpy()[None]
    canonical = canonical.astype(np.float32)
    properties = {"spacing": list(orientation.spacing)}
    card = json.loads((work / "models" / "bench.json").read_text())
    for task in card["tasks"]:
        folder = (
            work / "models" / task["dataset"] / f"{task['trainer']}__{task['plans']}__3d_fullres"
        )
        predictor = nnunet_predictor(folder)
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints
            labels = predictor.predict_single_npy_array(canonical, properties)
        np.save(work / f"nnunet_{task['id']}.npy", orientation.to_source(labels))
    elapsed = time.perf_counter() - start
    (work / "nnunet.json").write_text(json.dumps({"compute_s": elapsed}))


# -- parent ----------------------------------------------------------------------------------


def _child(work: Path, role: str, quick: bool) -> tuple[float, float, float]:
    """Run one role in a fresh interpreter; its wall time (s), peak RSS (GiB), CPU time (s)."""
    command = [sys.executable, str(HERE), "--role", role, "--workdir", str(work)]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{role} failed with exit code {process.returncode}")
    # CPU time as well: on a shared machine wall time varies with the neighbours' load
    return wall, usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime  # kB -> GiB


def _dice(a: Any, b: Any) -> float:
    """Mean Dice over the labels present in either map (background excluded)."""
    import numpy as np

    labels = [int(v) for v in np.union1d(np.unique(a), np.unique(b)) if v]
    scores = []
    for label in labels:
        x, y = a == label, b == label
        scores.append(2.0 * float((x & y).sum()) / float(x.sum() + y.sum()))
    return float(np.mean(scores)) if scores else 1.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or one of its roles); print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small volume and model (seconds)")
    parser.add_argument("--workdir", type=Path, help="keep the inputs and outputs here")
    parser.add_argument(
        "--role", choices=["prepare", "ours", "fast", "nnunet"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.role is not None:
        if args.role == "prepare":
            _prepare(args.workdir, args.quick)
        elif args.role == "nnunet":
            _nnunet(args.workdir)
        else:
            _ours(args.workdir, fast=args.role == "fast")
        return 0

    with tempfile.TemporaryDirectory(prefix="omas-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (args.workdir and (work / "hu.npy").is_file()):  # inputs of an earlier run kept
            _child(work, "prepare", args.quick)
        results = {}
        for role in ("ours", "nnunet", "fast"):
            wall, rss, cpu = _child(work, role, args.quick)
            compute = json.loads((work / f"{role}.json").read_text())["compute_s"]
            results[role] = (wall, rss, compute, cpu)
            print(
                f"{role:7s} wall {wall:8.2f} s  compute {compute:8.2f} s  CPU {cpu:8.2f} s  "
                f"peak RSS {rss:6.2f} GiB",
                flush=True,
            )

        import numpy as np  # only now: the children have run

        size = _sizes(args.quick)
        print(
            f"volume {size['shape']} (z, y, x); {len(TASKS)} tasks x 8 classes; "
            f"{os.cpu_count()} CPUs"
        )
        dice_default, dice_fast = [], []
        for task in TASKS:
            theirs = np.load(work / f"nnunet_{task}.npy")
            dice_default.append(_dice(np.load(work / f"ours_{task}.npy"), theirs))
            dice_fast.append(_dice(np.load(work / f"fast_{task}.npy"), theirs))
        ours, theirs_r, fast = results["ours"], results["nnunet"], results["fast"]
        print(
            f"ratio nnU-Net/omas-idc (identical settings): time {theirs_r[0] / ours[0]:.2f}x "
            f"(compute {theirs_r[2] / ours[2]:.2f}x, CPU {theirs_r[3] / ours[3]:.2f}x), "
            f"peak memory {theirs_r[1] / ours[1]:.2f}x; "
            f"Dice min {min(dice_default):.4f}"
        )
        print(
            f"ratio nnU-Net/omas-idc fast (body crop, step 0.75): time "
            f"{theirs_r[0] / fast[0]:.2f}x (compute {theirs_r[2] / fast[2]:.2f}x, "
            f"CPU {theirs_r[3] / fast[3]:.2f}x), peak memory "
            f"{theirs_r[1] / fast[1]:.2f}x; Dice min {min(dice_fast):.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
