"""Split a phantom's ground truth into per-task label maps as a model would produce them."""

from __future__ import annotations

import numpy as np

from omas_idc.catalog.model import Catalog
from omas_idc.labelmap import TaskLabelMap

__all__ = ["truth_task_labelmaps"]


def truth_task_labelmaps(
    labels: np.ndarray,
    label_names: dict[int, str],
    catalog: Catalog,
    model: str = "cads",
) -> list[TaskLabelMap]:
    """The phantom's truth re-labelled into ``model``'s tasks (CADS 551-559 or ``total``).

    Structures the model has no label for (the body outline for CADS) are left out.
    """
    per_task: dict[str, dict[int, tuple[int, str]]] = {}
    for value, name in label_names.items():
        row = catalog.label_of(catalog.by_name(name).name, model)
        if row is None:
            continue
        per_task.setdefault(row.task, {})[value] = (row.label, row.label_name)
    maps = []
    for task in sorted(per_task):
        members = per_task[task]
        dtype = np.uint16 if max(label for label, _ in members.values()) > 255 else np.uint8
        array = np.zeros(labels.shape, dtype=dtype)
        for value, (label, _) in members.items():
            array[labels == value] = label
        maps.append(
            TaskLabelMap(
                model=model,
                task=task,
                array=array,
                labels={label: name for label, name in members.values()},
                model_version="truth",
            )
        )
    return maps
