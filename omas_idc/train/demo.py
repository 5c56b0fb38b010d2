"""The demo model: a small U-Net trained on phantoms whose labels are deliberately partial.

Three training sets of phantom series (axial, 6 mm voxels) each annotate a different subset
of eight structures, as public datasets do (one labels abdominal organs, another the heart
and the pelvis, ...); every structure is annotated in at least one set and missing from at
least one other. The marginal loss (:mod:`omas_idc.train.losses`) lets one network learn all
eight. The packaged model (``omas_idc/models/demo``) was trained with::

    python -m omas_idc.train.demo --out omas_idc/models/demo

(the defaults: seed 0, 1500 iterations, one torch thread; 22 minutes on a two-core machine
shared with other work, torch 2.13 on the CPU). The seed fixes the result on a given torch
build and thread count; another ``--threads`` gives slightly different weights. The script
keeps only what the package ships (``checkpoint_final.pth``, not the resumable state).
Measured on fresh phantoms in every orientation option of the demo model's tests: Dice
>= 0.986 per structure and centroids within 0.09 voxel.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from omas_idc.atomic import atomic_write_text
from omas_idc.train.config import (
    DatasetConfig,
    ModelSpec,
    PlansConfig,
    TrainConfig,
    TrainingConfig,
)

__all__ = ["DEMO_DATASETS", "DEMO_STRUCTURES", "demo_config", "main", "train_demo_model"]

logger = logging.getLogger(__name__)

#: The demo model's structures (catalog names), in label order.
DEMO_STRUCTURES = (
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "heart",
    "urinary_bladder",
    "hip_left",
    "hip_right",
)

#: Training set name -> (phantom seeds, structures it annotates).
DEMO_DATASETS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "abdomen": (
        (101, 102, 103, 104, 105, 106),
        ("liver", "spleen", "kidney_left", "kidney_right"),
    ),
    "thorax_pelvis": (
        (201, 202, 203, 204, 205, 206),
        ("heart", "urinary_bladder", "hip_left", "hip_right", "liver"),
    ),
    "kidneys_pelvis": (
        (301, 302, 303, 304, 305, 306),
        ("kidney_left", "kidney_right", "urinary_bladder", "spleen", "hip_left", "hip_right"),
    ),
}
#: Spacing of the demo model and its training phantoms (mm).
DEMO_SPACING = 6.0
#: Optimiser steps and torch threads of the packaged model.
DEMO_ITERATIONS = 1500
DEMO_THREADS = 1


def demo_config(
    out: str | Path,
    *,
    seed: int = 0,
    iterations: int = 4000,
    loss: str = "marginal",
    spacing: float = DEMO_SPACING,
    shape: tuple[int, int, int] = (64, 48, 64),
    patch_size: tuple[int, int, int] = (32, 32, 32),
    datasets: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] | None = None,
    structures: Sequence[str] = DEMO_STRUCTURES,
    threads: int | None = 1,
    learning_rate: float = 5e-3,
) -> TrainConfig:
    """The demo model's training configuration (also used, smaller, by the tests).

    Parameters
    ----------
    out
        Output folder of the model.
    seed
        Training seed.
    iterations
        Optimiser steps.
    loss
        ``"marginal"`` or ``"plain"``.
    spacing, shape
        Isotropic voxel size (mm) and grid of the phantoms; also the model's spacing.
    patch_size
        Network patch.
    datasets
        Training sets (name -> (seeds, annotated structures)); :data:`DEMO_DATASETS` by default.
    structures
        The model's labels.
    threads
        torch threads while training (1 is fastest on a busy two-core machine).
    learning_rate
        Initial AdamW learning rate (polynomial decay).
    """
    chosen = datasets or DEMO_DATASETS
    return TrainConfig(
        model=ModelSpec(
            name="omas-demo",
            dataset_id=900,
            dataset_name="OmasDemo",
            labels=tuple(structures),
            output=Path(out),
            version="1.0.0",
            description=(
                "Demo model of omas-idc: a small U-Net trained on synthetic phantoms with "
                f"partial labels ({len(structures)} structures, {spacing:g} mm). Not for "
                "clinical or research use on real CT."
            ),
            licence="Apache-2.0",
            # Each demo structure is one object: stray blobs are removed after inference.
            keep_largest_component=True,
        ),
        datasets=tuple(
            DatasetConfig(
                name=name,
                format="phantom",
                structures=tuple(annotated),
                phantom_seeds=tuple(seeds),
                phantom_spacing=spacing,
                phantom_shape=shape,
            )
            for name, (seeds, annotated) in chosen.items()
        ),
        plans=PlansConfig(
            spacing=(spacing, spacing, spacing),
            patch_size=patch_size,
            architecture="plain",
            features=8,
            max_features=64,
            max_stages=4,
            batch_size=2,
        ),
        training=TrainingConfig(
            iterations=iterations,
            loss=loss,
            optimizer="adamw",
            learning_rate=learning_rate,
            weight_decay=1e-4,
            foreground_oversampling=0.5,
            augment=True,
            seed=seed,
            device="cpu",
            threads=threads,
            checkpoint_every=max(1, iterations // 4),
        ),
    )


def train_demo_model(
    out: str | Path,
    *,
    seed: int = 0,
    iterations: int = DEMO_ITERATIONS,
    threads: int = DEMO_THREADS,
) -> Path:
    """Train and export the demo model into ``out``; returns the nnU-Net result folder.

    48^3 patches (288 mm, enough context to tell the left from the right hip). The defaults
    are the packaged model's recipe; another thread count gives (slightly) other weights.
    """
    from omas_idc.train.run import train

    config = demo_config(
        out, seed=seed, iterations=iterations, patch_size=(48, 48, 48), threads=threads
    )
    folder = train(config, resume=False, intensity_samples=1_000_000)
    # The resumable state (optimiser included) is no part of the packaged model.
    (folder / "fold_all" / "checkpoint_latest.pth").unlink(missing_ok=True)
    # The packaged demo answers to `--model demo` as well as to its card name.
    card_file = Path(out) / "card.json"
    card = json.loads(card_file.read_text())
    atomic_write_text(card_file, json.dumps({**card, "aliases": ["demo"]}, indent=2) + "\n")
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m omas_idc.train.demo --out FOLDER``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Output folder of the model.")
    parser.add_argument("--seed", type=int, default=0, help="Training seed (default: 0).")
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEMO_ITERATIONS,
        help=f"Optimiser steps (default: {DEMO_ITERATIONS}).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEMO_THREADS,
        help=f"torch threads; the result depends on it (default: {DEMO_THREADS}).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.monotonic()
    folder = train_demo_model(
        args.out, seed=args.seed, iterations=args.iterations, threads=args.threads
    )
    logger.info("demo model written to %s in %.0f s", folder, time.monotonic() - start)


if __name__ == "__main__":
    main()
