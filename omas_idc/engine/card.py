"""Model cards: which nnU-Net result folders make a model, how to run them, where the weights are.

A card is JSON (package data under ``omas_idc/engine/cards/``, or any file): tasks, the recipe,
task dependencies, folds, licence variants and weight URLs with sha256 (``null`` until measured
by the ``network`` script, never guessed). Label -> structure lives in the catalog, not here.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omas_idc.errors import ConfigurationError, ModelError

__all__ = [
    "RECIPES",
    "MergeSpec",
    "ModelCard",
    "TaskCard",
    "WeightFile",
    "builtin_cards",
    "did_you_mean",
    "load_card",
]

logger = logging.getLogger(__name__)

#: Recipes a card may declare (see :mod:`omas_idc.engine.recipes`).
RECIPES = ("nnunet-native", "cads", "totalseg")


def did_you_mean(value: str, choices: Any, what: str) -> ConfigurationError:
    """A ConfigurationError for an unknown option value, suggesting the closest choice."""
    options = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigurationError(f"unknown {what} {value!r}; choose one of {options}.{hint}")


@dataclass(frozen=True)
class WeightFile:
    """One downloadable zip of an nnU-Net result folder."""

    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class TaskCard:
    """One task (one nnU-Net dataset) of a model."""

    id: str
    dataset: str
    trainer: str
    plans: str
    configuration: str = "3d_fullres"
    folds: tuple[str, ...] = ("all",)
    depends_on: tuple[str, ...] = ()
    weights: Mapping[str, WeightFile] = field(default_factory=dict)

    @property
    def result_folder(self) -> str:
        """Relative path of the result folder: ``Dataset.../{trainer}__{plans}__{config}``."""
        return f"{self.dataset}/{self.trainer}__{self.plans}__{self.configuration}"


@dataclass(frozen=True)
class MergeSpec:
    """Tasks whose label maps are combined into one (TotalSegmentator's 5 parts -> ``total``).

    Attributes
    ----------
    task
        Id of the combined task (``"total"``).
    offsets
        Part task id -> value added to its labels; parts are written in card order, a later
        part's voxels overwriting an earlier part's (as TotalSegmentator combines them).
    """

    task: str
    offsets: Mapping[str, int]


@dataclass(frozen=True)
class ModelCard:
    """A model: its tasks, recipe and weights.

    Attributes
    ----------
    name
        ``"cads"``, ``"totalseg"`` or a user's name.
    recipe
        One of :data:`RECIPES`.
    spacing_mm
        The wrapper's resampling spacing (CADS, TotalSegmentator); ``None`` for nnunet-native.
    mirroring
        Whether test-time mirroring is wanted (only where the checkpoint allows it).
    variants
        Licence variant -> licence text.
    merge
        Tasks combined into one label map after inference, or ``None``.
    keep_largest_component
        Keep only the largest 26-connected component of each label (for models whose
        structures are single objects, e.g. the demo model; CADS has its own clean-up).
    """

    name: str
    version: str
    recipe: str
    tasks: tuple[TaskCard, ...]
    description: str = ""
    homepage: str = ""
    spacing_mm: float | None = None
    tile_step_size: float = 0.5
    mirroring: bool = False
    default_variant: str = ""
    variants: Mapping[str, str] = field(default_factory=dict)
    merge: MergeSpec | None = None
    keep_largest_component: bool = False
    source: Path | None = None

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise did_you_mean(self.recipe, RECIPES, "recipe")
        ids = [t.id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ModelError(f"model card {self.name!r} lists a task twice: {ids}")
        for task in self.tasks:
            for dep in task.depends_on:
                if dep not in ids:
                    raise ModelError(
                        f"model card {self.name!r}: task {task.id} depends on unknown task {dep}"
                    )
        if self.merge is not None:
            unknown = sorted(set(self.merge.offsets) - set(ids))
            if unknown:
                raise ModelError(f"model card {self.name!r} merges unknown tasks {unknown}")

    def task(self, task_id: str) -> TaskCard:
        """The task with this id."""
        for task in self.tasks:
            if task.id == str(task_id):
                return task
        raise did_you_mean(str(task_id), [t.id for t in self.tasks], f"{self.name} task")

    def resolve_tasks(self, wanted: list[str] | None = None) -> list[TaskCard]:
        """The wanted tasks plus the tasks they depend on, in dependency order."""
        order: list[TaskCard] = []

        def visit(task_id: str) -> None:
            task = self.task(task_id)
            for dep in task.depends_on:
                visit(dep)
            if task not in order:
                order.append(task)

        for task_id in wanted or [t.id for t in self.tasks]:
            visit(task_id)
        return order

    def variant(self, name: str | None) -> str:
        """Validate a licence variant name (the default where ``None``)."""
        chosen = name or self.default_variant
        if chosen not in self.variants:
            raise did_you_mean(chosen, self.variants, f"{self.name} weights variant")
        return chosen


def _parse(data: Mapping[str, Any], source: Path | None) -> ModelCard:
    try:
        tasks = tuple(
            TaskCard(
                id=str(t["id"]),
                dataset=str(t["dataset"]),
                trainer=str(t["trainer"]),
                plans=str(t["plans"]),
                configuration=str(t.get("configuration", "3d_fullres")),
                folds=tuple(str(f) for f in t.get("folds", ["all"])),
                depends_on=tuple(str(d) for d in t.get("depends_on", [])),
                weights={
                    str(k): WeightFile(url=str(v["url"]), sha256=v.get("sha256"))
                    for k, v in t.get("weights", {}).items()
                },
            )
            for t in data["tasks"]
        )
        variants = {str(k): str(v.get("licence", "")) for k, v in data.get("variants", {}).items()}
        spacing = data.get("spacing_mm")
        merge_data = data.get("merge")
        merge = (
            MergeSpec(
                task=str(merge_data["task"]),
                offsets={str(k): int(v) for k, v in merge_data["offsets"].items()},
            )
            if merge_data
            else None
        )
        return ModelCard(
            name=str(data["name"]),
            version=str(data.get("version", "")),
            recipe=str(data.get("recipe", "nnunet-native")),
            tasks=tasks,
            description=str(data.get("description", "")),
            homepage=str(data.get("homepage", "")),
            spacing_mm=float(spacing) if spacing is not None else None,
            tile_step_size=float(data.get("tile_step_size", 0.5)),
            mirroring=bool(data.get("mirroring", False)),
            default_variant=str(data.get("default_variant", next(iter(variants), ""))),
            variants=variants,
            merge=merge,
            keep_largest_component=bool(data.get("keep_largest_component", False)),
            source=source,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"model card {source or '<dict>'} is malformed: {err!r}") from err


def builtin_cards() -> dict[str, ModelCard]:
    """The cards shipped with omas-idc, by name."""
    cards = {}
    for entry in resources.files("omas_idc.engine").joinpath("cards").iterdir():
        if entry.name.endswith(".json"):
            card = _parse(json.loads(entry.read_text()), None)
            cards[card.name] = card
    return cards


def load_card(name_or_path: str | Path | Mapping[str, Any]) -> ModelCard:
    """A built-in card by name (``"cads"``, ``"totalseg"``), a card file, or a card dict."""
    if isinstance(name_or_path, Mapping):
        return _parse(name_or_path, None)
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ModelError(f"model card {path} is not valid JSON: {err}") from err
        return _parse(data, path)
    cards = builtin_cards()
    if str(name_or_path) in cards:
        return cards[str(name_or_path)]
    raise did_you_mean(str(name_or_path), cards, "model")
