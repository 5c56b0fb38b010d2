"""A model ready to run: its card, its nnU-Net folders and one network per fold."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from omas_idc.engine.card import ModelCard, TaskCard, load_card
from omas_idc.engine.checkpoint import load_checkpoint
from omas_idc.engine.modelfolder import ModelFolder, load_model_folder
from omas_idc.engine.network import build_network, load_weights
from omas_idc.engine.structures import select_structures
from omas_idc.errors import ConfigurationError, ModelError

__all__ = ["LoadedTask", "SegmentationModel", "load_model"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedTask:
    """One task: its card, folder, networks (one per fold, on the compute device)."""

    card: TaskCard
    folder: ModelFolder
    networks: list[nn.Module]
    mirror_axes: tuple[int, ...] | None

    @property
    def id(self) -> str:
        """The task id (``"551"``)."""
        return self.card.id

    def group_key(self) -> tuple[object, ...]:
        """Tasks with equal keys share preprocessing and sliding-window tiles."""
        f = self.folder
        c = f.configuration
        return (c.patch_size, c.spacing, f.transpose_forward, f.intensity, c.data_resampling)


@dataclass(eq=False)
class SegmentationModel:
    """A card with its tasks loaded.

    ``keep`` (from ``structures``): output task id -> the label values to write; tasks not in
    it are run for their dependants only. ``None``: every label of every task.
    """

    card: ModelCard
    tasks: list[LoadedTask]
    variant: str
    device: torch.device
    keep: Mapping[str, frozenset[int]] | None = None


def _folder_for(card: ModelCard, task: TaskCard, root: Path, variant: str) -> Path:
    candidates = [root / card.name / variant / task.result_folder, root / task.result_folder]
    for path in candidates:
        if (path / "plans.json").is_file():
            return path
    raise ModelError(
        f"weights of {card.name} task {task.id} ({variant}) not found under {root}; run "
        f"`omas-idc models download {card.name} --variant {variant}` or pass the folder"
    )


def load_model(
    model: str | Path | ModelCard,
    *,
    weights_dir: str | Path | None = None,
    variant: str | None = None,
    tasks: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    mirroring: bool | None = None,
    structures: Sequence[str] | None = None,
) -> SegmentationModel:
    """Load a model's networks onto ``device``.

    Parameters
    ----------
    model
        A built-in card name (``"cads"``, ``"totalseg"``), a card (or card ``.json``, whose
        folders lie beside it), or an nnU-Net result folder (run with ``nnunet-native``).
    weights_dir
        Cache folder holding ``{model}/{variant}/{Dataset...}/{trainer}__{plans}__{config}``.
    variant
        Licence variant of the weights (the card's default when ``None``).
    tasks
        Task ids to run (their dependencies are added); all when ``None``.
    device
        The compute device.
    mirroring
        Override the card's test-time mirroring wish (applied only on axes the checkpoint
        allows).
    structures
        Catalog structure names: only the tasks that label them (and their dependencies) are
        loaded, and the segmenter writes only these structures (TotalSegmentator's
        ``roi_subset``). Not together with ``tasks``.

    Raises
    ------
    ConfigurationError
        For an unknown variant or structure (with the closest names), or ``tasks`` and
        ``structures`` together.
    ModelError
        For weights that are missing or cannot be loaded.
    """
    device = torch.device(device)
    root: Path | None = Path(weights_dir) if weights_dir is not None else None
    if isinstance(model, ModelCard):
        card = model
        if card.source is not None and root is None:
            root = card.source.parent
    elif Path(model).is_dir() and (Path(model) / "plans.json").is_file():
        result_folder = Path(model)
        card = ModelCard(
            name=result_folder.parent.name,
            version="",
            recipe="nnunet-native",
            tasks=(
                TaskCard(
                    id=result_folder.parent.name,
                    dataset=result_folder.parent.name,
                    trainer="",
                    plans="",
                    folds=(),
                ),
            ),
            variants={"local": ""},
            default_variant="local",
        )
        root = result_folder
    else:
        card = load_card(model)
        if card.source is not None and root is None:
            root = card.source.parent
    if root is None:
        raise ModelError(f"no weights folder given for model {card.name!r}")
    chosen_variant = card.variant(variant)
    want_mirror = card.mirroring if mirroring is None else mirroring

    def folder_of(task: TaskCard) -> ModelFolder:
        assert root is not None
        path = root if not task.trainer else _folder_for(card, task, root, chosen_variant)
        return load_model_folder(path, task.configuration, task.folds or None)

    wanted = list(tasks) if tasks else None
    keep = None
    if structures:
        if tasks:
            raise ConfigurationError(
                "tasks and structures were both given; give one: structures run the tasks "
                "that label them (and the tasks those depend on)",
                reason="option",
            )
        # a card without label rows names its labels by structure in its folders
        folder_labels = None if card.labels else {t.id: folder_of(t).labels for t in card.tasks}
        selection = select_structures(card, list(structures), folder_labels)
        wanted, keep = list(selection.tasks), selection.keep
    loaded = []
    for task in card.resolve_tasks(wanted):
        folder = folder_of(task)
        networks = []
        axes: tuple[int, ...] | None = None
        for fold in folder.folds:
            checkpoint = load_checkpoint(folder.checkpoint_path(fold))
            network = build_network(folder.configuration, folder.num_classes)
            load_weights(network, checkpoint)
            networks.append(network.to(device).eval())
            axes = checkpoint.inference_allowed_mirroring_axes
        loaded.append(
            LoadedTask(
                card=task,
                folder=folder,
                networks=networks,
                mirror_axes=axes if want_mirror else None,
            )
        )
        logger.info("loaded %s task %s (%d folds)", card.name, task.id, len(networks))
    return SegmentationModel(
        card=card, tasks=loaded, variant=chosen_variant, device=device, keep=keep
    )
