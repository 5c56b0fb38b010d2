"""Model cards: which nnU-Net result folders make a model, how to run them, where the weights are.

A card is JSON (package data under ``omas_idc/engine/cards/``, a packaged model's
``omas_idc/models/<name>/card.json``, or any file or family folder): tasks, the recipe, task
dependencies, folds, licence variants and weight URLs with sha256 (``null`` until measured by
the ``network`` script, never guessed), and the file name of its label table. The label ->
structure rows live in that table and join the catalog (:meth:`Catalog.with_labels`); the card
names the model, not the structures. A model family is a card, its label rows and its recipe:
data, never code (see :mod:`omas_idc.catalog.families`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omas_idc.catalog.families import (
    CARD_FILE,
    downloadable_card_files,
    label_table_path,
    packaged_card_files,
    plain_name,
)
from omas_idc.catalog.model import LabelRow
from omas_idc.catalog.tables import read_labels_csv
from omas_idc.choices import did_you_mean
from omas_idc.errors import ConfigurationError, ModelError

__all__ = [
    "RECIPES",
    "MergeSpec",
    "ModelCard",
    "TaskCard",
    "WeightFile",
    "WrapperZoom",
    "ZSplit",
    "builtin_card",
    "builtin_cards",
    "load_card",
]

logger = logging.getLogger(__name__)

#: Recipes a card may declare (see :mod:`omas_idc.engine.recipes`).
RECIPES = ("nnunet-native", "cads", "totalseg")


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

    def part_of(self, label: int) -> str:
        """The part task whose labels hold ``label`` of the combined map: the one with the
        largest offset below it (parts' labels are consecutive from their offset + 1)."""
        below = [(offset, task) for task, offset in self.offsets.items() if offset < label]
        if not below:
            raise ModelError(f"label {label} of the combined task {self.task!r} is in no part")
        return max(below)[1]


@dataclass(frozen=True)
class WrapperZoom:
    """How a card's tool resamples its input (the card's ``wrapper_zoom`` block).

    Attributes
    ----------
    order
        Spline order of ``scipy.ndimage.zoom`` (3: CADS, 1: TotalSegmentator).
    mode
        ``scipy.ndimage.zoom``'s ``mode`` (``"constant"``: CADS, scipy's default;
        ``"nearest"``: TotalSegmentator).
    cast
        The dtype the result is cast to (``"int32"`` for both), or ``""`` for none.
    identity_when_equal
        Skip the resampling (and the cast) where the header spacing equals the target exactly
        (TotalSegmentator's ``change_spacing``); CADS resamples whatever the spacing.
    """

    order: int = 3
    mode: str = "constant"
    cast: str = "int32"
    identity_when_equal: bool = False

    def __post_init__(self) -> None:
        if self.order not in range(6):
            raise ConfigurationError(f"wrapper_zoom order must be 0..5, got {self.order}")
        if self.mode not in ("constant", "nearest", "reflect", "mirror", "wrap", "grid-constant"):
            raise ConfigurationError(f"wrapper_zoom mode {self.mode!r} is no scipy zoom mode")
        if self.cast not in ("", "int32", "int16"):
            raise ConfigurationError(f"wrapper_zoom cast must be '', int32 or int16: {self.cast}")


@dataclass(frozen=True)
class ZSplit:
    """TotalSegmentator's split of large images into 3 overlapping parts along S.

    After resampling, an image of more than ``min_voxels`` voxels and more than
    ``min_slices`` slices along S is cut at ``third = n // 3`` into
    ``[0, third + margin)``, ``[third + 1 - margin, 2 * third + margin)`` and
    ``[2 * third + 1 - margin, n)``, each predicted on its own; the parts are put back without
    their margins (``[:-margin]``, ``[margin - 1:-margin]``, ``[margin - 1:]``).
    """

    min_voxels: int = 512 * 512 * 900
    min_slices: int = 200
    margin: int = 20

    def applies(self, shape: Sequence[int], force: bool = False) -> bool:
        """Whether an image of canonical ``(S, A, R)`` ``shape`` is split."""
        n = int(shape[0])
        if n // 3 < self.margin:  # a part would start before the first slice
            return False
        return force or (math.prod(int(s) for s in shape) > self.min_voxels and n > self.min_slices)

    def parts(self, n: int) -> list[tuple[int, int, int, int]]:
        """Per part: its input slices ``[lo, hi)`` and the slices ``[keep_lo, keep_hi)`` of
        the whole image it fills (from part row ``keep_lo - lo``)."""
        third, m = n // 3, self.margin
        return [
            (0, third + m, 0, third),
            (third + 1 - m, 2 * third + m, third, 2 * third),
            (2 * third + 1 - m, n, 2 * third, n),
        ]


@dataclass(frozen=True)
class ModelCard:
    """A model: its tasks, recipe and weights.

    Attributes
    ----------
    name
        ``"cads"``, ``"totalseg"``, ``"omas-demo"`` or a user's name (the ``model`` of its
        label rows and label maps).
    aliases
        Other names a built-in card is found by (``"demo"``).
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
    labels
        The family's label rows (label -> catalog structure), from the table the card names;
        empty for a card without one (its labels are then named by catalog structure).
    source
        The card file of a card whose result folders lie beside it (packaged models and
        users' families); ``None`` for built-in cards whose weights live in the cache.
    logit_sums
        The dtype the sliding window sums Gaussian-weighted logits in: ``"float16"`` as nnU-Net's
        predictor does (the reference pipelines, CADS and TotalSegmentator, run it), or
        ``"float32"`` (more precise, other labels where logits nearly tie).
    reference
        The tool whose pipeline the card reproduces, as the card's ``reference`` block says
        (repository, package version, tag, commit, the source files of its settings); empty
        where the card names none.
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
    labels: tuple[LabelRow, ...] = ()
    aliases: tuple[str, ...] = ()
    source: Path | None = None
    reference: Mapping[str, str] = field(default_factory=dict)
    wrapper_zoom: WrapperZoom | None = None
    z_split: ZSplit | None = None
    logit_sums: str = "float32"

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise did_you_mean(self.recipe, RECIPES, "recipe")
        ids = [t.id for t in self.tasks]
        label_tasks = {*ids, *([self.merge.task] if self.merge else [])}
        for row in self.labels:
            if row.model != self.name or row.task not in label_tasks:
                raise ModelError(
                    f"model card {self.name!r}: its label table has a row of model "
                    f"{row.model!r} task {row.task!r}; every row must be of model "
                    f"{self.name!r} and one of its tasks {sorted(label_tasks)}"
                )
        if len(set(ids)) != len(ids):
            raise ModelError(f"model card {self.name!r} lists a task twice: {ids}")
        for task in self.tasks:
            for dep in task.depends_on:
                if dep not in ids:
                    raise ModelError(
                        f"model card {self.name!r}: task {task.id} depends on unknown task {dep}"
                    )
        if self.logit_sums not in ("float16", "float32"):
            raise ModelError(
                f"model card {self.name!r}: logit_sums must be 'float16' (nnU-Net's predictor) "
                f"or 'float32', got {self.logit_sums!r}"
            )
        if self.merge is not None:
            unknown = sorted(set(self.merge.offsets) - set(ids))
            if unknown:
                raise ModelError(f"model card {self.name!r} merges unknown tasks {unknown}")

    def reference_label(self) -> str:
        """The tool and version the card reproduces (``"TotalSegmentator 2.18.0"``,
        ``"CADS 1.0.3@7480324"``), from its ``reference`` block; ``""`` for none."""
        ref = self.reference
        repository = ref.get("repository", "").rstrip("/")
        tool = ref.get("tool") or repository.rsplit("/", 1)[-1]
        version = ref.get("package_version", "")
        commit = ref.get("commit", "")[:7]
        if not tool or not (version or commit):
            return ""
        if version and commit and not ref.get("tag"):
            return f"{tool} {version}@{commit}"
        return f"{tool} {version or commit}"

    def algorithm_version(self, changes: str = "") -> str:
        """The SEG's algorithm version: the card's version, the reference it reproduces and the
        speed settings that change its labels (``"2.0.0 TotalSegmentator 2.18.0"``,
        ``"1.0.0 CADS 1.0.3@7480324 crop+step0.75"``), at most 64 characters (DICOM LO)."""
        parts = [self.version, self.reference_label(), changes]
        return " ".join(p for p in parts if p)[:64]

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


def _parse(
    data: Mapping[str, Any], source: Path | None, card_file: Path | None = None
) -> ModelCard:
    """A card from its JSON data; ``card_file`` is where it lies (its label table beside it).

    The names that become paths (dataset, trainer, plans, configuration, the label table) must
    be plain names: a card never reaches outside its folder or the weights cache.
    """
    where = f"model card {card_file or source or '<dict>'}"
    try:
        tasks = tuple(
            TaskCard(
                id=str(t["id"]),
                dataset=plain_name(t["dataset"], f"{where}: task {t['id']} 'dataset'"),
                trainer=plain_name(t["trainer"], f"{where}: task {t['id']} 'trainer'"),
                plans=plain_name(t["plans"], f"{where}: task {t['id']} 'plans'"),
                configuration=plain_name(
                    t.get("configuration", "3d_fullres"),
                    f"{where}: task {t['id']} 'configuration'",
                ),
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
        labels: tuple[LabelRow, ...] = ()
        if data.get("labels") is not None:
            if card_file is None:
                raise ConfigurationError(
                    f"{where} names the label table {data['labels']!r} but is not a file: "
                    "load the card from its file, beside which the table lies"
                )
            table = label_table_path(card_file, data)
            labels = tuple(read_labels_csv(table)) if table is not None else ()
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
            labels=labels,
            aliases=tuple(str(a) for a in data.get("aliases", [])),
            source=source,
            reference={str(k): str(v) for k, v in data.get("reference", {}).items()},
            wrapper_zoom=WrapperZoom(**data["wrapper_zoom"]) if data.get("wrapper_zoom") else None,
            z_split=ZSplit(**data["z_split"]) if data.get("z_split") else None,
            logit_sums=str(data.get("logit_sums", "float32")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{where} is malformed: {err!r}") from err


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"model card {path} is not valid JSON: {err}") from err
    except OSError as err:
        raise ModelError(f"model card {path} cannot be read: {err}") from err
    if not isinstance(data, Mapping):
        raise ModelError(f"model card {path} must hold a JSON object")
    return data


def builtin_cards() -> dict[str, ModelCard]:
    """The cards shipped with omas-idc, by name: downloadable weights, then packaged models.

    Raises
    ------
    ModelError, ConfigurationError, CatalogError
        If a shipped card or its label table is broken.
    """
    cards = {}
    for path in downloadable_card_files():
        card = _parse(_read(path), None, path)
        cards[card.name] = card
    for path in packaged_card_files():
        card = _parse(_read(path), path, path)
        cards[card.name] = card
    return cards


def load_card(name_or_path: str | Path | Mapping[str, Any]) -> ModelCard:
    """A model card: built-in by name or alias, a card file, a family folder, or a card dict.

    Parameters
    ----------
    name_or_path
        ``"cads"``, ``"totalseg"``, ``"demo"`` (or another built-in card's name); a card
        ``.json`` file, or a folder holding ``card.json``, whose label table and result folders
        lie beside it; or the card's data (without a label table).

    Raises
    ------
    ConfigurationError
        For an unknown name (with the closest one), or a card whose paths are not plain names.
    ModelError
        For an unreadable or malformed card.
    CatalogError
        For a malformed label table.
    """
    if isinstance(name_or_path, Mapping):
        return _parse(name_or_path, None)
    path = Path(name_or_path)
    if path.is_dir() and (path / CARD_FILE).is_file():
        path = path / CARD_FILE
    if path.suffix == ".json" and path.is_file():
        return _parse(_read(path), path, path)
    wanted = str(name_or_path)
    found = builtin_card(wanted)
    if found is not None:
        return found
    cards = builtin_cards()
    names = [*cards, *(alias for card in cards.values() for alias in card.aliases)]
    raise did_you_mean(wanted, names, "model")


def builtin_card(name: str) -> ModelCard | None:
    """The built-in card named ``name`` or having it as an alias (``demo``), else ``None``."""
    for card in builtin_cards().values():
        if name == card.name or name in card.aliases:
            return card
    return None
