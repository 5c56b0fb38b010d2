"""Made-up weights for every task of a built-in card, laid out as the card's weights cache.

The reference harnesses (TotalSegmentator from PyPI, the CADS pipeline in
``tests/reference``) and omas-idc run the same nnU-Net folders: :func:`card_folders` writes one
folder per task of a card, named as the card names it (``Dataset291_.../nnUNetTrainerNoMirroring
__nnUNetPlans__3d_fullres``), with the card's label names in ``dataset.json`` and plans at the
card's spacing, under ``root/<card>/<variant>/`` (the layout ``load_model(weights_dir=root)``
reads).

Threshold weights (the default) make every task a smooth function of the HU value: label ``k``
wins where the HU lies between its threshold and the next, the thresholds spread evenly over
soft tissue and bone. Outputs have few near-ties, so a voxel's label changes only where the two
pipelines' inputs or sums really differ (the issue's Dice and voxel-agreement criteria need
that; random weights put near-ties everywhere).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omas_idc.engine.card import ModelCard, TaskCard, load_card
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError

__all__ = ["card_folders", "task_folder", "threshold_spec"]

#: HU range the thresholds of one task spread over.
_LOW_HU, _HIGH_HU = -900.0, 1300.0


def _dataset(task: TaskCard) -> tuple[int, str]:
    match = re.fullmatch(r"Dataset(\d+)_(.+)", task.dataset)
    if match is None:
        raise ConfigurationError(f"task {task.id}: dataset {task.dataset!r} is no DatasetNNN_name")
    return int(match.group(1)), match.group(2)


def threshold_spec(
    card: ModelCard,
    task: TaskCard,
    *,
    weights: str = "threshold",
    patch_size: tuple[int, int, int] = (32, 64, 64),
    seed: int = 0,
) -> SyntheticModel:
    """The synthetic model of one task of ``card``: its folder name, labels and spacing.

    Parameters
    ----------
    card, task
        The card and one of its tasks (label names from the card's label rows).
    weights
        ``"threshold"`` (smooth, few near-ties) or ``"random"``.
    patch_size
        The configuration's patch size.
    seed
        Random seed (random weights only; thresholds are shifted by the task's position so
        that tasks differ).
    """
    dataset_id, dataset_name = _dataset(task)
    merge = card.merge
    if merge is not None and task.id in merge.offsets:
        # a part of a combined map: its rows are the combined task's, shifted by its offset
        offset = merge.offsets[task.id]
        rows = [
            r for r in card.labels if r.task == merge.task and merge.part_of(r.label) == task.id
        ]
        values = [r.label - offset for r in sorted(rows, key=lambda r: r.label)]
    else:
        rows = [r for r in card.labels if r.task == task.id]
        values = [r.label for r in sorted(rows, key=lambda r: r.label)]
    rows = sorted(rows, key=lambda r: r.label)
    if not rows:
        raise ConfigurationError(f"card {card.name} has no label rows for task {task.id}")
    names = tuple(r.label_name for r in rows)
    if values != list(range(1, len(rows) + 1)):
        raise ConfigurationError(f"card {card.name} task {task.id}: labels are not 1..n")
    index = [t.id for t in card.tasks].index(task.id)
    n = len(names)
    step = (_HIGH_HU - _LOW_HU) / n
    shift = step * ((index * 0.37) % 1.0)
    thresholds = tuple(float(v) for v in _LOW_HU + shift + step * np.arange(n))
    spacing = float(card.spacing_mm or 1.5)
    return SyntheticModel(
        dataset_id=dataset_id,
        dataset_name=dataset_name,
        labels=names,
        weights=weights,
        thresholds_hu=thresholds,
        patch_size=patch_size,
        spacing=(spacing, spacing, spacing),
        folds=tuple(task.folds) or ("all",),
        mirror_axes=None,
        trainer_name=task.trainer,
        plans_name=task.plans,
        checkpoint_trainer_name="nnUNetTrainer",
        # each task its own intensity statistics, as trained tasks have (their foregrounds
        # differ): tasks then share no preprocessing group, as with real weights
        intensity=(40.0 + index, 350.0, -1024.0, 1500.0),
        seed=seed + index,
    )


def card_folders(
    card_name: str | ModelCard,
    root: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    weights: str = "threshold",
    patch_size: tuple[int, int, int] = (32, 64, 64),
    variant: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a synthetic nnU-Net folder for every task of a card; returns ``root``.

    Parameters
    ----------
    card_name
        A built-in card's name (``"cads"``, ``"totalseg"``) or a card.
    root
        The weights folder: tasks land in ``root/<card>/<variant>/<result folder>``, which
        ``load_model(card, weights_dir=root)`` reads.
    tasks
        Task ids to write (all when ``None``).
    weights, patch_size, seed
        See :func:`threshold_spec`.
    variant
        The licence variant folder (the card's default when ``None``).
    """
    card = card_name if isinstance(card_name, ModelCard) else load_card(card_name)
    root = Path(root)
    base = root / card.name / card.variant(variant)
    for task in card.tasks:
        if tasks is not None and task.id not in tasks:
            continue
        spec = threshold_spec(card, task, weights=weights, patch_size=patch_size, seed=seed)
        make_model_folder(base, spec)
    return root


def task_folder(
    root: str | Path, card_name: str | ModelCard, task_id: str, variant: str | None = None
) -> Path:
    """The result folder :func:`card_folders` wrote for one task."""
    card = card_name if isinstance(card_name, ModelCard) else load_card(card_name)
    return Path(root) / card.name / card.variant(variant) / card.task(task_id).result_folder
