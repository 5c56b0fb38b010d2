"""Export a trained network as an nnU-Net v2 result folder plus our model card.

Layout (what :func:`omas_idc.engine.model.load_model` reads from a card, and what
``nnUNetPredictor.initialize_from_trained_model_folder`` reads from the result folder)::

    {output}/card.json
    {output}/Dataset{id:03d}_{name}/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres/
        dataset.json      labels (catalog structure names), channel_names, file_ending
        plans.json
        fold_all/checkpoint_final.pth

The checkpoint holds what nnU-Net's ``save_checkpoint`` writes and inference reads:
``network_weights``, ``trainer_name`` (``nnUNetTrainerNoMirroring``, an existing nnU-Net
trainer class), ``init_args`` (plans, configuration, fold, dataset_json, device),
``inference_allowed_mirroring_axes`` (``None``: mirroring would swap left and right),
``logging``, ``_best_ema`` and ``current_epoch``. The optimiser state is left out: the
folder is for inference, and stays small.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omas_idc.atomic import atomic_write_text, atomic_write_with
from omas_idc.catalog.tables import LABEL_COLUMNS
from omas_idc.train.trainer import TRAINER_NAME, PreparedData, Trainer

__all__ = ["LABELS_FILE", "export_model", "result_folder_name"]

#: The exported family's label table, beside its ``card.json``.
LABELS_FILE = "labels.csv"

logger = logging.getLogger(__name__)


def result_folder_name(plans: Mapping[str, Any], configuration: str = "3d_fullres") -> str:
    """``{trainer}__{plans_name}__{configuration}``."""
    return f"{TRAINER_NAME}__{plans.get('plans_name', 'nnUNetPlans')}__{configuration}"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _label_table(name: str, task_id: str, labels: Sequence[str]) -> str:
    """The family's label table (``labels.csv``): a model trained with omas-idc names its
    labels by catalog structure, so each label's name is its structure's."""
    lines = [",".join(LABEL_COLUMNS)]
    lines += [f"{name},{task_id},{value},{label},{label}" for value, label in enumerate(labels, 1)]
    return "\n".join(lines) + "\n"


def export_model(
    trainer: Trainer,
    output: str | Path,
    *,
    name: str,
    task_id: str,
    version: str = "1.0.0",
    description: str = "",
    licence: str = "",
    extra_card: Mapping[str, Any] | None = None,
) -> Path:
    """Write the result folder and ``card.json``; returns the result folder.

    Parameters
    ----------
    trainer
        The trained network and its data.
    output
        Folder for ``card.json`` and ``Dataset.../``.
    name, task_id, version, description, licence
        Model card fields.
    extra_card
        More (informational) card fields: the structures, the training recipe, measured Dice.
    """
    data: PreparedData = trainer.data
    output = Path(output)
    dataset_folder = str(data.plans["dataset_name"])
    folder = output / dataset_folder / result_folder_name(data.plans, data.configuration_name)
    (folder / "fold_all").mkdir(parents=True, exist_ok=True)
    dataset_json = data.dataset_json
    _write_json(folder / "dataset.json", dataset_json)
    _write_json(folder / "plans.json", data.plans)
    losses = [float(v) for v in trainer.losses]
    checkpoint = {
        "network_weights": {
            k: v.detach().cpu().clone() for k, v in trainer.network.state_dict().items()
        },
        "grad_scaler_state": None,
        "logging": {
            "train_losses": losses,
            "mean_fg_dice": [],
            "ema_fg_dice": [],
            "dice_per_class_or_region": [],
            "val_losses": [],
            "lrs": [],
            "epoch_start_timestamps": [],
            "epoch_end_timestamps": [],
        },
        "_best_ema": np.float64(0.0),
        "current_epoch": trainer.iteration,
        "init_args": {
            "plans": data.plans,
            "configuration": data.configuration_name,
            "fold": "all",
            "dataset_json": dataset_json,
            "device": torch.device("cpu"),
        },
        "trainer_name": TRAINER_NAME,
        "inference_allowed_mirroring_axes": None,
    }
    atomic_write_with(
        folder / "fold_all" / "checkpoint_final.pth", lambda path: torch.save(checkpoint, path)
    )
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description,
        "recipe": "nnunet-native",
        "labels": LABELS_FILE,
        "tile_step_size": 0.5,
        "mirroring": False,
        "default_variant": "local",
        "variants": {"local": {"licence": licence}},
        "tasks": [
            {
                "id": task_id,
                "dataset": dataset_folder,
                "trainer": TRAINER_NAME,
                "plans": str(data.plans.get("plans_name", "nnUNetPlans")),
                "configuration": data.configuration_name,
                "folds": ["all"],
                "depends_on": [],
                "weights": {},
            }
        ],
        "structures": list(data.labels),
        "training_datasets": {k: list(v) for k, v in data.datasets.items()},
    }
    card.update(extra_card or {})
    atomic_write_text(output / LABELS_FILE, _label_table(name, task_id, data.labels))
    _write_json(output / "card.json", card)
    logger.info("exported %s to %s", name, folder)
    return folder
