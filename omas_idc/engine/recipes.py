"""Recipes: what a card's wrapper does around nnU-Net.

- ``nnunet-native``: nnU-Net's own preprocessing and export, on the RAS-canonical array.
- ``cads``: reorient to RAS, resample to 1.5 mm (cubic), nnU-Net, then CADS's post-processing on
  the 1.5 mm labels (:mod:`omas_idc.engine.cads`), labels back with nearest neighbour.
- ``totalseg``: the same wrapper without post-processing (TotalSegmentator's optional
  small-blob removal is not applied); its 5 parts are combined into one ``total`` map
  (:func:`merge_labelmaps`, label offsets from the card).

The reorientation and resampling themselves live in the segmenter; this module holds the
post-processing dispatch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from omas_idc.labelmap import TaskLabelMap

if TYPE_CHECKING:
    from omas_idc.engine.card import MergeSpec
    from omas_idc.engine.model import SegmentationModel

__all__ = ["keep_largest_components", "merge_labelmaps", "postprocess"]


def postprocess(
    model: SegmentationModel,
    labels: Mapping[str, torch.Tensor],
    spacing: tuple[float, float, float],
) -> dict[str, torch.Tensor]:
    """Apply the recipe's post-processing to the label maps of one series (working grid)."""
    if model.card.recipe == "cads":
        from omas_idc.engine.cads import cads_postprocess

        names = {t.id: dict(t.folder.labels) for t in model.tasks}
        return cads_postprocess(labels, names, spacing)
    if model.card.keep_largest_component:
        return {task: keep_largest_components(array) for task, array in labels.items()}
    return dict(labels)


def keep_largest_components(labels: torch.Tensor) -> torch.Tensor:
    """Each label's largest 26-connected component; its other components become background."""
    from scipy import ndimage

    array = labels.cpu().numpy().copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for value in np.unique(array[array != 0]):
        mask = array == value
        components, n = ndimage.label(mask, structure=structure)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            array[mask & (components != int(np.argmax(sizes)))] = 0
    return torch.from_numpy(array).to(labels.device)


def merge_labelmaps(maps: Sequence[TaskLabelMap], merge: MergeSpec) -> list[TaskLabelMap]:
    """Combine the part tasks named by ``merge`` into one label map (others pass through).

    Each part's labels are shifted by its offset and written in order, a later part
    overwriting an earlier one where both label a voxel (TotalSegmentator's rule). The
    combined map takes the place of the first part; where no part is present, nothing changes.
    """
    parts = [m for m in maps if m.task in merge.offsets]
    if not parts:
        return list(maps)
    top = max(merge.offsets[m.task] + max(m.labels, default=0) for m in parts)
    dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16
    combined = np.zeros(parts[0].array.shape, dtype=dtype)
    labels: dict[int, str] = {}
    for part in parts:
        offset = merge.offsets[part.task]
        hit = part.array > 0
        combined[hit] = part.array[hit].astype(dtype) + offset
        labels.update({value + offset: name for value, name in part.labels.items()})
    merged = TaskLabelMap(
        model=parts[0].model,
        task=merge.task,
        array=combined,
        labels=dict(sorted(labels.items())),
        model_version=parts[0].model_version,
        extra={"merged_from": ",".join(p.task for p in parts)},
    )
    out: list[TaskLabelMap] = []
    for m in maps:
        if m is parts[0]:
            out.append(merged)
        elif m.task not in merge.offsets:
            out.append(m)
    return out
