"""``--structures``: run only the tasks some structures need, and write only those structures.

As TotalSegmentator's ``roi_subset`` and the CADS Slicer extension's structure selection: the
names (catalog structure names, as a card's label table maps its labels; for a card without a
label table, the folders' label names) decide which tasks run. The tasks those depend on run
too (CADS 557/558 need 553's brain, 558 552's vertebrae), and their post-processing sees their
labels, but the outputs hold only the named structures: every other label is set to 0 and left
out of the label map's names, and a task that holds none of them (a dependency) is not output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from omas_idc.choices import did_you_mean
from omas_idc.engine.card import ModelCard
from omas_idc.labelmap import TaskLabelMap

__all__ = ["StructureSelection", "keep_structures", "parse_structures", "select_structures"]


@dataclass(frozen=True)
class StructureSelection:
    """The tasks and labels a set of structures needs.

    Attributes
    ----------
    structures
        The structure names, as asked (duplicates removed).
    tasks
        The card's tasks that label them, in card order (their dependencies not added: see
        :meth:`ModelCard.resolve_tasks`).
    keep
        Output task id (a merged task's id, e.g. ``"total"``, where the card merges its parts)
        -> the label values of the structures in it; the labels to write.
    """

    structures: tuple[str, ...]
    tasks: tuple[str, ...]
    keep: Mapping[str, frozenset[int]]


def parse_structures(values: Iterable[str] | None) -> tuple[str, ...]:
    """Names from repeated and comma-separated options (``a,b --structures c``), in order."""
    names: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return tuple(names)


def select_structures(
    card: ModelCard,
    names: Sequence[str],
    folder_labels: Mapping[str, Mapping[int, str]] | None = None,
) -> StructureSelection:
    """The tasks and labels that hold the named structures.

    Parameters
    ----------
    card
        The model card; its label rows map labels to catalog structures.
    names
        Structure names.
    folder_labels
        Task id -> the folder's labels (``dataset.json``), for a card without label rows,
        whose labels are named by catalog structure.

    Raises
    ------
    ConfigurationError
        For a name no label of the card is (with the closest names), or no name at all.
    """
    # (output task, label, part task) per structure name
    where: dict[str, list[tuple[str, int, str]]] = {}
    if card.labels:
        for row in card.labels:
            part = (
                card.merge.part_of(row.label)
                if card.merge and row.task == card.merge.task
                else row.task
            )
            where.setdefault(row.structure, []).append((row.task, row.label, part))
    else:
        for task_id, labels in (folder_labels or {}).items():
            output = card.merge.task if card.merge and task_id in card.merge.offsets else task_id
            offset = card.merge.offsets[task_id] if output != task_id and card.merge else 0
            for value, name in labels.items():
                where.setdefault(name, []).append((output, value + offset, task_id))
    if not names:
        raise did_you_mean("", sorted(where), f"{card.name} structure")
    keep: dict[str, set[int]] = {}
    parts: set[str] = set()
    for name in names:
        if name not in where:
            raise did_you_mean(name, sorted(where), f"{card.name} structure")
        for output, label, part in where[name]:
            keep.setdefault(output, set()).add(label)
            parts.add(part)
    return StructureSelection(
        structures=tuple(dict.fromkeys(names)),
        tasks=tuple(t.id for t in card.tasks if t.id in parts),
        keep={task: frozenset(labels) for task, labels in keep.items()},
    )


def keep_structures(
    maps: Sequence[TaskLabelMap], keep: Mapping[str, frozenset[int]]
) -> list[TaskLabelMap]:
    """The label maps with only the ``keep`` labels (others 0, unnamed); other tasks dropped."""
    out = []
    for labelmap in maps:
        wanted = keep.get(labelmap.task)
        if wanted is None:
            continue
        values = np.fromiter(wanted, dtype=np.int64, count=len(wanted))
        array = np.where(np.isin(labelmap.array, values), labelmap.array, 0).astype(
            labelmap.array.dtype
        )
        out.append(
            TaskLabelMap(
                model=labelmap.model,
                task=labelmap.task,
                array=array,
                labels={k: v for k, v in labelmap.labels.items() if k in wanted},
                model_version=labelmap.model_version,
                extra=labelmap.extra,
            )
        )
    return out
