"""``train(config)``: prepare, train (resuming where a checkpoint exists) and export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omas_idc.train.config import TrainConfig
from omas_idc.train.export import export_model, result_folder_name
from omas_idc.train.intensity import NNUNET_FOREGROUND_SAMPLES
from omas_idc.train.trainer import Trainer, prepare_data

__all__ = ["train"]

logger = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    *,
    resume: bool = True,
    intensity_samples: int = NNUNET_FOREGROUND_SAMPLES,
    progress: Callable[[int, float], None] | None = None,
) -> Path:
    """Train the configured model and export it; returns the nnU-Net result folder.

    Parameters
    ----------
    config
        The training configuration.
    resume
        Continue from ``fold_all/checkpoint_latest.pth`` in the output folder if it exists.
    intensity_samples
        Foreground voxels sampled for the CT normalisation's statistics.
    progress
        Called with (iteration, loss) after each step.
    """
    data = prepare_data(config, intensity_samples=intensity_samples)
    folder = (
        config.model.output
        / str(data.plans["dataset_name"])
        / result_folder_name(data.plans, data.configuration_name)
    )
    trainer = Trainer(data, config.training, folder / "fold_all")
    if resume:
        trainer.load_state()
    trainer.fit(progress=progress)
    return export_model(
        trainer,
        config.model.output,
        name=config.model.name,
        task_id=str(config.model.dataset_id),
        version=config.model.version,
        description=config.model.description,
        licence=config.model.licence,
        extra_card={"keep_largest_component": True}
        if config.model.keep_largest_component
        else None,
    )
