"""CADS's post-processing rules as data: ``engine/cards/cads.postprocessing.csv``, checked.

One row per rule, keyed by the CADS family's ``(task, label)`` numbers, never by label text (a
label renamed in a downloaded ``dataset.json`` keeps its rule). Columns:

``task``
    The CADS task id (``"554"``).
``label``
    The label value in that task; empty for a rule on the whole task. May be left empty where
    ``structure`` is given: the catalog's label rows of model ``cads`` then resolve it.
``structure``
    The catalog structure of that label (checked against the label rows: both must agree).
``rule``
    ``components``, ``fill_holes``, ``reference_box`` or ``above_reference``
    (see :mod:`omas_idc.engine.cads`).
``parameters``
    ``key=value`` pairs separated by spaces (per rule, below).
``source``
    Where CADS does it (file and function of its repository).

Parameters: ``components``: ``min_voxels`` (components smaller are removed) and optionally
``max_components``; ``fill_holes``: ``passes`` (``3d`` or an axis letter ``S``, ``A``, ``R``
per pass, comma-separated) and ``into`` (``background``: only unlabelled voxels are filled, as
TPTBox 0.3.0 does; ``any``: enclosed voxels of other labels too); ``reference_box``:
``reference`` (``task:label``), ``min_reference_voxels``, ``half_size_ras`` (three voxel
counts, R, A, S); ``above_reference``: ``reference`` (``task:first-last``).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omas_idc.catalog.model import LabelRow
from omas_idc.choices import did_you_mean
from omas_idc.errors import ConfigurationError

__all__ = [
    "RULES_FILE",
    "AboveReference",
    "CadsRules",
    "ComponentRule",
    "FillRule",
    "ReferenceBox",
    "cads_rules",
    "read_cads_rules",
]

#: The rule table, beside the CADS card.
RULES_FILE = Path(__file__).parent / "cards" / "cads.postprocessing.csv"
COLUMNS = ("task", "label", "structure", "rule", "parameters", "source")
_PARAMETERS = {
    "components": ({"min_voxels"}, {"max_components"}),
    "fill_holes": ({"passes", "into"}, set()),
    "reference_box": ({"reference", "min_reference_voxels", "half_size_ras"}, set()),
    "above_reference": ({"reference"}, set()),
}
_PASSES = ("3d", "S", "A", "R")
_INTO = ("background", "any")


@dataclass(frozen=True)
class ComponentRule:
    """Keep the largest 26-connected components of a label.

    Components are ranked by size; the first one beyond ``max_components`` or smaller than
    ``min_voxels`` (strictly) and every smaller one become background.
    """

    task: str
    label: int
    structure: str
    min_voxels: int
    max_components: int | None


@dataclass(frozen=True)
class FillRule:
    """Fill a label's holes, pass by pass (``"3d"`` or slices across axis ``S``, ``A``, ``R``)."""

    task: str
    label: int
    structure: str
    passes: tuple[str, ...]
    into: str


@dataclass(frozen=True)
class ReferenceBox:
    """Keep a task's labels only in a box around the centroid of a reference label.

    The box is ``[c - h, c + h)`` voxels along R, A and S around the truncated centroid ``c``
    of the reference label; where the reference has fewer than ``min_reference_voxels``
    voxels, the task's fallback applies (or it is emptied).
    """

    task: str
    reference_task: str
    reference_label: int
    min_reference_voxels: int
    half_size_ras: tuple[int, int, int]


@dataclass(frozen=True)
class AboveReference:
    """Fallback: keep a task's labels from the lowest slice (along S) of reference labels up;
    empty where none of them is present."""

    task: str
    reference_task: str
    reference_labels: tuple[int, ...]


@dataclass(frozen=True)
class CadsRules:
    """The checked rule table."""

    components: tuple[ComponentRule, ...]
    fills: tuple[FillRule, ...]
    boxes: Mapping[str, ReferenceBox]
    fallbacks: Mapping[str, AboveReference]

    def reference_tasks(self, task: str) -> tuple[str, ...]:
        """The tasks whose label maps ``task``'s rules read."""
        refs = []
        if task in self.boxes:
            refs.append(self.boxes[task].reference_task)
        if task in self.fallbacks:
            refs.append(self.fallbacks[task].reference_task)
        return tuple(dict.fromkeys(refs))

    def label_rules(self) -> tuple[FillRule | ComponentRule, ...]:
        """Every rule on one label: hole filling first, then components (CADS's order)."""
        rules: list[FillRule | ComponentRule] = [*self.fills, *self.components]
        return tuple(rules)

    def keys(self) -> set[tuple[str, int]]:
        """Every ``(task, label)`` a label rule names."""
        return {(r.task, r.label) for r in self.label_rules()}


def _parameters(text: str, rule: str, where: str) -> dict[str, str]:
    required, optional = _PARAMETERS[rule]
    out: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise ConfigurationError(f"{where}: parameter {item!r} must be key=value")
        if key not in required | optional:
            raise did_you_mean(key, required | optional, f"{where}: {rule} parameter")
        out[key] = value
    missing = sorted(required - set(out))
    if missing:
        raise ConfigurationError(f"{where}: rule {rule} needs the parameters {missing}")
    return out


def _int(value: str, where: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigurationError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return number


def _label_of(
    rows: Mapping[tuple[str, int], LabelRow], task: str, label: int, where: str
) -> LabelRow:
    row = rows.get((task, label))
    if row is None:
        known = sorted(lb for t, lb in rows if t == task)
        raise ConfigurationError(
            f"{where}: task {task} has no label {label} in the cads label rows "
            f"(labels {known[:1]}..{known[-1:]}); fix the rule's task or label"
        )
    return row


def _reference(
    text: str, rows: Mapping[tuple[str, int], LabelRow], where: str
) -> tuple[str, tuple[int, ...]]:
    task, sep, labels = text.partition(":")
    if not sep:
        raise ConfigurationError(f"{where}: reference must be task:label, got {text!r}")
    first, dash, last = labels.partition("-")
    low = _int(first, where, 1)
    high = _int(last, where, low) if dash else low
    values = tuple(range(low, high + 1))
    for value in values:
        _label_of(rows, task, value, where)
    return task, values


def _resolve_label(
    task: str,
    label_text: str,
    structure: str,
    rows: Mapping[tuple[str, int], LabelRow],
    where: str,
) -> tuple[int, str]:
    if label_text:
        row = _label_of(rows, task, _int(label_text, where, 1), where)
        if structure and structure != row.structure:
            raise ConfigurationError(
                f"{where}: task {task} label {row.label} is the structure {row.structure!r} in "
                f"the catalog, not {structure!r}; fix the label number or the structure"
            )
        return row.label, row.structure
    matches = [r for (t, _), r in rows.items() if t == task and r.structure == structure]
    if not matches:
        names = [r.structure for (t, _), r in rows.items() if t == task]
        raise did_you_mean(structure, names, f"{where}: structure of cads task {task}")
    return matches[0].label, structure


def read_cads_rules(path: Path, label_rows: Sequence[LabelRow]) -> CadsRules:
    """Read and check a CADS rule table against the family's label rows.

    Parameters
    ----------
    path
        The CSV table (columns as in the module docstring).
    label_rows
        The catalog's label rows of the CADS family (model, task, label, structure).

    Raises
    ------
    ConfigurationError
        For a malformed row, an unknown rule or parameter, a task, label or structure the
        label rows do not have (named), or a rule given twice.
    """
    rows = {(r.task, r.label): r for r in label_rows}
    tasks = {r.task for r in label_rows}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if list(reader.fieldnames or ()) != list(COLUMNS):
                raise ConfigurationError(
                    f"{path}: the header must be exactly {','.join(COLUMNS)}; "
                    f"got {reader.fieldnames}"
                )
            table = [(f"{path.name} line {i}", row) for i, row in enumerate(reader, start=2)]
    except OSError as err:
        raise ConfigurationError(f"cannot read the CADS rule table {path}: {err}") from err
    components: dict[tuple[str, int], ComponentRule] = {}
    fills: dict[tuple[str, int], FillRule] = {}
    boxes: dict[str, ReferenceBox] = {}
    fallbacks: dict[str, AboveReference] = {}
    for where, row in table:
        task, label_text, structure, rule = (
            (row.get(c) or "").strip() for c in ("task", "label", "structure", "rule")
        )
        if task not in tasks:
            raise did_you_mean(task, tasks, f"{where}: cads task")
        if rule not in _PARAMETERS:
            raise did_you_mean(rule, _PARAMETERS, f"{where}: rule")
        params = _parameters(row.get("parameters") or "", rule, where)
        if rule in ("components", "fill_holes"):
            if not (label_text or structure):
                raise ConfigurationError(f"{where}: rule {rule} needs a label or a structure")
            label, name = _resolve_label(task, label_text, structure, rows, where)
            key = (task, label)
            if key in (components if rule == "components" else fills):
                raise ConfigurationError(f"{where}: task {task} label {label} has {rule} twice")
            if rule == "components":
                max_cc = params.get("max_components")
                components[key] = ComponentRule(
                    task,
                    label,
                    name,
                    _int(params["min_voxels"], where),
                    _int(max_cc, where, 1) if max_cc is not None else None,
                )
            else:
                passes = tuple(params["passes"].split(","))
                for p in passes:
                    if p not in _PASSES:
                        raise did_you_mean(p, _PASSES, f"{where}: fill pass")
                if params["into"] not in _INTO:
                    raise did_you_mean(params["into"], _INTO, f"{where}: fill 'into'")
                fills[key] = FillRule(task, label, name, passes, params["into"])
            continue
        if label_text or structure:
            raise ConfigurationError(f"{where}: rule {rule} is for a whole task; leave label empty")
        ref_task, ref_labels = _reference(params["reference"], rows, where)
        if rule == "reference_box":
            half = tuple(_int(v, where, 1) for v in params["half_size_ras"].split(","))
            if len(half) != 3 or len(ref_labels) != 1:
                raise ConfigurationError(
                    f"{where}: reference_box needs one reference label and three half sizes"
                )
            if task in boxes:
                raise ConfigurationError(f"{where}: task {task} has reference_box twice")
            boxes[task] = ReferenceBox(
                task,
                ref_task,
                ref_labels[0],
                _int(params["min_reference_voxels"], where),
                (half[0], half[1], half[2]),
            )
        else:
            if task in fallbacks:
                raise ConfigurationError(f"{where}: task {task} has above_reference twice")
            fallbacks[task] = AboveReference(task, ref_task, ref_labels)
    orphan = sorted(set(fallbacks) - set(boxes))
    if orphan:
        raise ConfigurationError(
            f"{path.name}: above_reference is the fallback of a reference_box, but tasks "
            f"{orphan} have none"
        )
    return CadsRules(
        components=tuple(components[k] for k in sorted(components, key=_order)),
        fills=tuple(fills[k] for k in sorted(fills, key=_order)),
        boxes=boxes,
        fallbacks=fallbacks,
    )


def _order(key: tuple[str, int]) -> tuple[int, str, int]:
    task, label = key
    return (int(task) if task.isdigit() else 0, task, label)


@functools.cache
def cads_rules() -> CadsRules:
    """The shipped CADS rule table, checked against the CADS card's label rows (cached)."""
    from omas_idc.engine.card import load_card

    return read_cads_rules(RULES_FILE, load_card("cads").labels)
