"""The training loop: a U-Net built exactly from the plans, trained on partially labelled data.

Deterministic by construction: the network is initialised (He, as nnU-Net) under a forked
torch RNG seeded with the training seed, all data sampling and augmentation draws from one
``numpy.random.Generator``, and the data order is sequential in the calling thread. A
checkpoint (``fold_all/checkpoint_latest.pth``, every ``checkpoint_every`` iterations) holds
the network, optimiser and grad-scaler states, the iteration counter, the generator state and
torch's RNG states; a run resumed from it ends with the weights a straight run ends with.

The learning rate follows nnU-Net's polynomial schedule ``lr0 * (1 - it / iterations) ** 0.9``
(a function of the iteration counter, so restoring the counter restores the schedule);
gradients are clipped to norm 12; on CUDA, float16 autocast with a gradient scaler.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omas_idc.engine.modelfolder import IntensityProperties, ModelConfiguration
from omas_idc.engine.network import build_network
from omas_idc.engine.segmenter import torch_threads
from omas_idc.errors import ConfigurationError, TrainingError
from omas_idc.train.augment import AugmentationParams
from omas_idc.train.config import TrainConfig, TrainingConfig
from omas_idc.train.data import SourceCase, TrainingCase, load_dataset, prepare_case, to_raw_case
from omas_idc.train.intensity import NNUNET_FOREGROUND_SAMPLES, foreground_intensity_properties
from omas_idc.train.losses import partial_label_loss
from omas_idc.train.planner import configuration_from_plans, load_plans, make_plans
from omas_idc.train.sampling import PatchSampler

__all__ = ["PreparedData", "Trainer", "prepare_data", "prepare_from_cases"]

logger = logging.getLogger(__name__)

#: The nnU-Net trainer class our checkpoints name: ours never mirror (left/right anatomy).
TRAINER_NAME = "nnUNetTrainerNoMirroring"


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Everything training needs: labels, plans, the parsed configuration and the cases."""

    labels: tuple[str, ...]
    plans: dict[str, Any]
    configuration: ModelConfiguration
    cases: list[TrainingCase]
    configuration_name: str = "3d_fullres"
    datasets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Network outputs: background plus the labels."""
        return len(self.labels) + 1

    @property
    def dataset_json(self) -> dict[str, Any]:
        """nnU-Net's ``dataset.json`` for these labels."""
        labels = {"background": 0, **{name: i + 1 for i, name in enumerate(self.labels)}}
        return {
            "channel_names": {"0": "CT"},
            "labels": labels,
            "numTraining": len(self.cases),
            "file_ending": ".nii.gz",
        }


def prepare_from_cases(
    cases: Sequence[SourceCase],
    labels: Sequence[str],
    *,
    plans_config: Any,
    dataset_name: str,
    intensity_samples: int = NNUNET_FOREGROUND_SAMPLES,
    datasets: dict[str, tuple[str, ...]] | None = None,
) -> PreparedData:
    """Plan and preprocess source cases (see :func:`prepare_data`)."""
    if not cases:
        raise TrainingError("no training cases")
    user_plans: dict[str, Any] | None = None
    tf: Sequence[int] = (0, 1, 2)
    if plans_config.file is not None:
        user_plans = load_plans(plans_config.file, {}, dataset_name)
        tf = tuple(int(v) for v in user_plans.get("transpose_forward", (0, 1, 2)))
    raws = [to_raw_case(c, tf) for c in cases]
    intensity = foreground_intensity_properties(
        [(r.image, r.labels) for r in raws], total_samples=intensity_samples
    )
    if user_plans is not None:
        plans = load_plans(plans_config.file, intensity, dataset_name)
    else:
        plans = make_plans(
            plans_config,
            dataset_name=dataset_name,
            spacings=[r.spacing for r in raws],
            shapes=[r.image.shape for r in raws],
            intensity=intensity,
        )
    name = plans_config.configuration
    configuration = configuration_from_plans(plans, name)
    properties = IntensityProperties(
        mean=intensity["mean"],
        std=intensity["std"],
        percentile_00_5=intensity["percentile_00_5"],
        percentile_99_5=intensity["percentile_99_5"],
    )
    prepared = [prepare_case(r, properties, configuration.spacing, len(labels) + 1) for r in raws]
    return PreparedData(
        labels=tuple(labels),
        plans=plans,
        configuration=configuration,
        cases=prepared,
        configuration_name=name,
        datasets=dict(datasets or {}),
    )


def prepare_data(
    config: TrainConfig, *, intensity_samples: int = NNUNET_FOREGROUND_SAMPLES
) -> PreparedData:
    """Load every dataset, compute intensity properties and plans, and preprocess the cases.

    Parameters
    ----------
    config
        The training configuration.
    intensity_samples
        Foreground voxels sampled for the intensity properties (nnU-Net's 1e8 by default).
    """
    labels = config.labels
    cases: list[SourceCase] = []
    for dataset in config.datasets:
        cases.extend(load_dataset(dataset, labels))
    return prepare_from_cases(
        cases,
        labels,
        plans_config=config.plans,
        dataset_name=f"Dataset{config.model.dataset_id:03d}_{config.model.dataset_name}",
        intensity_samples=intensity_samples,
        datasets={d.name: d.annotated for d in config.datasets},
    )


def _he_init(module: nn.Module) -> None:
    """nnU-Net's ``InitWeights_He(1e-2)``."""
    if isinstance(module, nn.Conv3d | nn.ConvTranspose3d | nn.Conv2d | nn.ConvTranspose2d):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)


class Trainer:
    """Trains one network on prepared data; checkpoints into ``fold_dir``.

    Parameters
    ----------
    data
        Prepared labels, plans and cases.
    training
        The recipe.
    fold_dir
        Where ``checkpoint_latest.pth`` is written (``.../fold_all``).
    """

    def __init__(self, data: PreparedData, training: TrainingConfig, fold_dir: str | Path) -> None:
        self.data = data
        self.training = training
        self.fold_dir = Path(fold_dir)
        self.device = torch.device(training.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigurationError("training.device is cuda but no CUDA device is available")
        precision = training.precision
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(training.seed)
            network = build_network(data.configuration, data.num_classes)
            network.apply(_he_init)
        self.network = network.to(self.device).train()
        params = self.network.parameters()
        self.optimizer: torch.optim.Optimizer
        if training.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=training.learning_rate,
                momentum=0.99,
                nesterov=True,
                weight_decay=training.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=training.learning_rate, weight_decay=training.weight_decay
            )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.device.type == "cuda" and precision == "fp16"
        )
        self.rng = np.random.default_rng(training.seed)
        self.sampler = PatchSampler(
            data.cases,
            data.configuration.patch_size,
            int(data.plans["configurations"][data.configuration_name].get("batch_size", 2)),
            training.foreground_oversampling,
            self.rng,
            AugmentationParams() if training.augment else None,
        )
        self.iteration = 0
        self.losses: list[float] = []

    @property
    def checkpoint_path(self) -> Path:
        """``fold_dir/checkpoint_latest.pth``."""
        return self.fold_dir / "checkpoint_latest.pth"

    def _lr(self, iteration: int) -> float:
        total = self.training.iterations
        return float(self.training.learning_rate * (1 - iteration / total) ** 0.9)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def step(self) -> float:
        """One optimiser step on the next batch; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.iteration)
        batch = self.sampler.sample()
        data = batch.data.to(self.device, non_blocking=True)
        target = batch.target.to(self.device, non_blocking=True)
        annotated = batch.annotated.to(self.device)
        absent = batch.absent.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.network(data)
        loss = partial_label_loss(
            logits,
            target,
            annotated,
            absent,
            kind=self.training.loss,
            dice_weight=self.training.dice_weight,
            exclusion_weight=self.training.exclusion_weight,
        )
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {float(loss)} at iteration {self.iteration}; lower the "
                "learning rate or check the labels"
            )
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.network.parameters(), 12.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def fit(
        self,
        *,
        stop_after: int | None = None,
        progress: Callable[[int, float], None] | None = None,
    ) -> None:
        """Train up to ``training.iterations`` (or ``stop_after``), checkpointing on the way.

        Parameters
        ----------
        stop_after
            Stop once this many iterations are done (simulates an interruption).
        progress
            Called with (iteration, loss) after each step.
        """
        end = (
            self.training.iterations
            if stop_after is None
            else min(stop_after, self.training.iterations)
        )
        start_time = time.monotonic()
        with torch_threads(self.training.threads):
            self.network.train()
            while self.iteration < end:
                loss = self.step()
                if progress is not None:
                    progress(self.iteration, loss)
                if self.iteration % 50 == 0:
                    logger.info("iteration %d: loss %.4f", self.iteration, loss)
                if (
                    self.iteration % self.training.checkpoint_every == 0
                    or self.iteration == self.training.iterations
                ):
                    self.save_checkpoint()
        logger.info(
            "trained %d iterations in %.1f s", self.iteration, time.monotonic() - start_time
        )

    # -- checkpoints -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The resumable state (everything :meth:`load_state` restores)."""
        rng: dict[str, Any] = {
            "numpy": self.rng.bit_generator.state,
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "network_weights": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "iteration": self.iteration,
            "rng_state": rng,
            "logging": {"train_losses": list(self.losses)},
            "omas_training": {
                "seed": self.training.seed,
                "iterations": self.training.iterations,
                "loss": self.training.loss,
            },
            "trainer_name": TRAINER_NAME,
            "init_args": {"configuration": self.data.configuration_name, "fold": "all"},
            "inference_allowed_mirroring_axes": None,
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the resumable state atomically (``checkpoint_latest.pth`` by default)."""
        target = Path(path) if path is not None else self.checkpoint_path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        torch.save(self.state(), partial)
        partial.replace(target)
        return target

    def load_state(self, path: str | Path | None = None) -> bool:
        """Resume from a checkpoint; ``False`` where none exists.

        Raises
        ------
        TrainingError
            If the checkpoint belongs to another run (seed, iterations or loss differ).
        """
        source = Path(path) if path is not None else self.checkpoint_path
        if not source.is_file():
            return False
        state = torch.load(source, map_location="cpu", weights_only=True)
        recorded = state.get("omas_training", {})
        expected = {
            "seed": self.training.seed,
            "iterations": self.training.iterations,
            "loss": self.training.loss,
        }
        if recorded != expected:
            raise TrainingError(
                f"checkpoint {source} was written by another run ({recorded}, this run is "
                f"{expected}); remove it or train into another output folder"
            )
        self.network.load_state_dict(state["network_weights"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if state.get("grad_scaler_state") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["grad_scaler_state"])
        self.iteration = int(state["iteration"])
        self.losses = [float(v) for v in state["logging"]["train_losses"]]
        self.rng.bit_generator.state = state["rng_state"]["numpy"]
        torch.set_rng_state(state["rng_state"]["torch"])
        if "cuda" in state["rng_state"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_state"]["cuda"])
        logger.info("resumed from %s at iteration %d", source, self.iteration)
        return True
