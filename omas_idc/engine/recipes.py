"""Recipes: what a card's wrapper does around nnU-Net.

- ``nnunet-native``: nnU-Net's own preprocessing and export, on the RAS-canonical array.
- ``cads``: reorient to RAS, resample to 1.5 mm (cubic), nnU-Net, then CADS's post-processing on
  the 1.5 mm labels (:mod:`omas_idc.engine.cads`, rules from the table beside the CADS card,
  keyed by task and label number), labels back with nearest neighbour.
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

from omas_idc.errors import ConfigurationError
from omas_idc.labelmap import TaskLabelMap

if TYPE_CHECKING:
    from omas_idc.engine.cads_rules import CadsRules
    from omas_idc.engine.card import MergeSpec
    from omas_idc.engine.model import SegmentationModel

__all__ = ["keep_largest_components", "merge_labelmaps", "postprocess"]


def postprocess(
    model: SegmentationModel,
    labels: Mapping[str, torch.Tensor],
    spacing: tuple[float, float, float],
    *,
    enabled: bool = True,
) -> dict[str, torch.Tensor]:
    """Apply the recipe's post-processing to the label maps of one series (working grid).

    Parameters
    ----------
    model
        The model whose recipe decides: ``cads`` applies CADS's rule table (keyed by task and
        label number, :mod:`omas_idc.engine.cads`); a card with ``keep_largest_component``
        keeps each label's largest component; others pass through.
    labels
        Task id -> label map on the working grid (canonical ``(S, A, R)``).
    spacing
        The working grid's spacing (mm); CADS's voxel counts are in its 1.5 mm voxels.
    enabled
        ``False`` returns the maps unchanged (CADS's ``--no-postprocessing``).

    Raises
    ------
    ConfigurationError
        For a ``cads`` card whose label rows give a rule's label another structure than the
        CADS rule table does, or a task whose rules need a task that was not segmented.
    """
    del spacing
    if not enabled:
        return dict(labels)
    if model.card.recipe == "cads":
        from omas_idc.engine.cads import cads_postprocess
        from omas_idc.engine.cads_rules import cads_rules

        rules = cads_rules()
        _check_cads_card(model, rules)
        return cads_postprocess(labels, rules)
    if model.card.keep_largest_component:
        return {task: keep_largest_components(array) for task, array in labels.items()}
    return dict(labels)


def _check_cads_card(model: SegmentationModel, rules: CadsRules) -> None:
    """A card running the ``cads`` recipe must mean by each ruled label what CADS means."""
    rows = {(r.task, r.label): r.structure for r in model.card.labels}
    if not rows:
        return  # labels named by the folders only: the rules apply by number
    for rule in rules.label_rules():
        structure = rows.get((rule.task, rule.label))
        if structure is not None and structure != rule.structure:
            raise ConfigurationError(
                f"model {model.card.name!r} runs the cads recipe, but its task {rule.task} "
                f"label {rule.label} is {structure!r} where CADS's post-processing rule is for "
                f"{rule.structure!r}; fix the card's label table or use another recipe"
            )


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
