"""GPU throughput of the segment engine with a CADS-sized model (prepared; run on a GPU machine).

    python benchmarks/engine_gpu.py [--series 4] [--budget-s 420] [--device cuda]

What it does, within about 7 minutes on one large GPU:

1. writes 9 nnU-Net ResEnc-L result folders with random weights (1.5 mm, patch 160x192x192,
   167 classes over the 9 tasks, like CADS) and a card naming them (nnunet-native recipe on
   1.5 mm series: the wrapper's resampling is part of the series' preparation);
2. renders a 512x512x300 CT phantom (0.8 x 0.8 x 1.5 mm) and makes 4 series of it (shifted);
3. runs omas-idc's Segmenter on the 4 series (all 9 tasks, fp16 autocast, batched tiles from
   several series and tasks) and prints series/hour, the device busy share (sampled with
   nvidia-smi) and the peak GPU memory;
4. runs nnU-Net's nnUNetPredictor on 1 series x 1 task (its preprocessing, sliding window on
   the device and export) and prints its time and the series/hour it would reach for 9 tasks.

Nothing here has run on a GPU yet (none was available when it was written): where a step
fails, the output says which.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CLASSES = (19, 19, 19, 19, 19, 18, 18, 18, 18)  # 167 foreground classes over 9 tasks
PATCH = (160, 192, 192)
SPACING = (1.5, 1.5, 1.5)
#: ``--quick`` (CI, on the CPU): the same code paths with 2 small tasks and a small series, so
#: that the script cannot rot while no GPU is at hand.
QUICK_CLASSES = (3, 2)
QUICK_PATCH = (64, 64, 64)  # ResEnc-L downsamples 5 times: 2^3 voxels at the bottom
QUICK_SPACING = (6.0, 6.0, 6.0)


def _resenc_l_folder(
    root: Path,
    dataset_id: int,
    n_labels: int,
    patch: tuple[int, int, int] = PATCH,
    spacing: tuple[float, float, float] = SPACING,
) -> Path:
    """An nnU-Net ResEnc-L result folder with random weights (nnU-Net's file format)."""
    import torch

    from omas_idc.engine.network import build_network
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    spec = SyntheticModel(
        dataset_id=dataset_id,
        dataset_name=f"CadsSized{dataset_id}",
        labels=tuple(f"class{i}" for i in range(1, n_labels + 1)),
        architecture="resenc",
        patch_size=patch,
        spacing=spacing,
        n_stages=6,
        features=32,
        folds=(),  # the checkpoint is written below, with ResEnc-L's architecture
        mirror_axes=None,
        trainer_name="nnUNetTrainerNoMirroring",
        plans_name="nnUNetResEncUNetLPlans",
    )
    folder = make_model_folder(root, spec)
    plans = json.loads((folder / "plans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch.update(
        {
            "n_stages": 6,
            "features_per_stage": [32, 64, 128, 256, 320, 320],
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
            "kernel_sizes": [[3, 3, 3]] * 6,
            "n_blocks_per_stage": [1, 3, 4, 6, 6, 6],
            "n_conv_per_stage_decoder": [1] * 5,
        }
    )
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    config = _configuration(folder)
    network = build_network(config, n_labels + 1)
    (folder / "fold_all").mkdir(exist_ok=True)
    torch.save(
        {
            "network_weights": network.state_dict(),
            "trainer_name": spec.trainer_name,
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": None,
        },
        folder / "fold_all" / "checkpoint_final.pth",
    )
    return folder


def _configuration(folder: Path) -> Any:
    from omas_idc.engine.synthetic import _config_for_build

    plans = json.loads((folder / "plans.json").read_text())
    return _config_for_build(plans, plans["configurations"]["3d_fullres"]["architecture"])


def _volumes(n: int, quick: bool = False) -> list[Any]:
    """n series of a 512x512x300 phantom at 0.8 x 0.8 x 1.5 mm (rendered at half resolution
    and interpolated: rendering the full grid analytically takes minutes); 40x64x64 at 6 mm
    with ``quick``."""
    import numpy as np
    from scipy.ndimage import zoom

    from omas_idc.geometry import VolumeGeometry
    from omas_idc.phantom import PhantomOptions, render_phantom
    from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

    if quick:
        geometry, hu, _, _ = render_phantom(
            PhantomOptions(shape=(40, 64, 64), pixel_spacing=(6.0, 6.0), slice_spacing=6.0)
        )
        fine = np.round(hu).astype(np.int16)
    else:
        coarse, hu, _, _ = render_phantom(
            PhantomOptions(shape=(150, 256, 256), pixel_spacing=(1.6, 1.6), slice_spacing=3.0)
        )
        fine = np.round(zoom(hu.astype(np.float32), (2, 2, 2), order=1)).astype(np.int16)
        first = coarse.slice_positions[0]
        geometry = VolumeGeometry.from_slices(
            (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            (0.8, 0.8),
            [first + np.array([0.0, 0.0, 1.5 * k]) for k in range(fine.shape[0])],
            fine.shape[1],
            fine.shape[2],
        )
    volumes = []
    for i in range(n):
        refs = tuple(
            SourceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i}.{k + 1}")
            for k in range(fine.shape[0])
        )
        header = SeriesHeader(
            series_instance_uid=f"1.2.3.{i}",
            study_instance_uid="1.2.3",
            frame_of_reference_uid="1.2.5",
        )
        volumes.append(
            CTVolume(
                hu=np.roll(fine, 7 * i, axis=2), geometry=geometry, source_refs=refs, header=header
            )
        )
    return volumes


class _BusySampler:
    """Samples the GPU's utilisation with nvidia-smi every 0.5 s in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(command, capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(0.5)

    def __enter__(self) -> _BusySampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def busy_share(self) -> float | None:
        return sum(self.samples) / (100 * len(self.samples)) if self.samples else None


def main() -> int:
    """Run the GPU benchmark and print its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new work")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip-nnunet", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="2 small tasks, a small series, on the CPU (CI)"
    )
    args = parser.parse_args()
    if args.quick:
        args.device, args.series = "cpu", 2
    classes = QUICK_CLASSES if args.quick else CLASSES
    cuda = str(args.device).startswith("cuda")
    start = time.perf_counter()

    import torch

    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    def stamp(what: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {what}", flush=True)

    with tempfile.TemporaryDirectory(prefix="omas-gpu-bench-") as tmp:
        root = Path(tmp)
        tasks = []
        for i, n in enumerate(classes):
            folder = (
                _resenc_l_folder(root, 551 + i, n, QUICK_PATCH, QUICK_SPACING)
                if args.quick
                else _resenc_l_folder(root, 551 + i, n)
            )
            tasks.append(
                {
                    "id": str(551 + i),
                    "dataset": folder.parent.name,
                    "trainer": "nnUNetTrainerNoMirroring",
                    "plans": "nnUNetResEncUNetLPlans",
                }
            )
        card = {
            "name": "cads-sized",
            "recipe": "nnunet-native",
            "variants": {"local": {}},
            "tasks": tasks,
        }
        (root / "card.json").write_text(json.dumps(card))
        stamp(f"wrote {len(classes)} ResEnc-L folders ({sum(classes)} classes)")
        volumes = _volumes(args.series, quick=args.quick)
        stamp(f"{len(volumes)} series of {volumes[0].shape} (z, y, x)")

        model = load_model(root / "card.json", device=args.device)
        config = SegmenterConfig(
            device=args.device,
            batch_size=args.batch_size,
            memory_limit_gb=80.0,
            max_series_in_flight=2,
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with Segmenter(model, config) as segmenter:
            # warm-up: cuDNN autotuning and allocator growth are not throughput
            segmenter.segment(volumes[0])
            stamp("warm-up series done")
            t0 = time.perf_counter()
            with _BusySampler() as sampler:
                done = 0
                for maps in segmenter.map(volumes):
                    done += 1
                    assert len(maps) == len(classes)
                    if time.perf_counter() - start > args.budget_s:
                        break
            ours = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else float("nan")
        busy = sampler.busy_share
        print(
            f"omas-idc: {done} series x {len(classes)} tasks in {ours:.1f} s -> "
            f"{3600 * done / ours:.1f} series/hour; device busy "
            f"{'n/a' if busy is None else f'{100 * busy:.0f} %'}; peak GPU memory "
            f"{peak:.1f} GiB allocated, {reserved:.1f} GiB reserved",
            flush=True,
        )
        del model, segmenter
        if cuda:
            torch.cuda.empty_cache()

        if args.skip_nnunet or time.perf_counter() - start > args.budget_s:
            stamp("nnU-Net skipped")
            return 0
        import numpy as np

        from omas_idc.engine.nnunet_reference import nnunet_predictor
        from omas_idc.engine.preprocessing import CanonicalOrientation

        folder = (
            root
            / tasks[0]["dataset"]
            / "nnUNetTrainerNoMirroring__nnUNetResEncUNetLPlans__3d_fullres"
        )
        predictor = nnunet_predictor(folder, device=args.device)
        orientation = CanonicalOrientation.of(volumes[0].geometry)
        canonical = orientation.to_canonical(torch.from_numpy(volumes[0].hu)).numpy()[None]
        properties = {"spacing": list(orientation.spacing)}
        t0 = time.perf_counter()
        predictor.predict_single_npy_array(canonical.astype(np.float32), properties)
        theirs = time.perf_counter() - t0
        print(
            f"nnU-Net: 1 series x 1 task in {theirs:.1f} s -> "
            f"{3600 / (len(classes) * theirs):.1f} series/hour for {len(classes)} tasks; "
            f"omas-idc is {len(classes) * theirs / (ours / done):.1f}x faster per series",
            flush=True,
        )
    stamp("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
