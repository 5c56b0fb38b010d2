"""CADS's post-processing, on the 1.5 mm RAS label maps (before labels go back to the source).

What CADS runs (``cads/utils/inference.py`` ``predict``, with ``postprocess_cads=True``), read
at the commit the CADS card records (``cads.json``, ``reference``), and reproduced here from
the rule table :data:`omas_idc.engine.cads_rules.RULES_FILE` (keyed by task and label number):

- tasks 551, 553, 554, 556 and 559, label by label in ascending order
  (``cads/dataset_utils/TPTBox.py`` ``postprocess_seg_TPTBox``):

  - ``fill_holes`` (556 labels 9 and 10, the mammary glands): holes filled in 3D, then slice
    by slice across S, R and A, then in 3D again; a hole is a background region (6-connected
    in 3D, 4-connected in a slice) not reaching the border. With TPTBox 0.3.0, which CADS pins,
    only unlabelled voxels are filled: enclosed voxels of other labels stay. No convex hull
    (``convex_hull`` is 0);
  - ``components``: 26-connected components ranked by size (ties in the scan order of the
    RAS array, C order, as TPTBox's ``connected_components`` numbers them); the first one
    beyond ``max_components`` or smaller than ``min_voxels`` (strictly), and every smaller
    one, become background. TPTBox 0.3.0 numbers the ranked components in the label map's
    dtype, uint8: past 255 components the numbers wrap, so rank ``r`` carries number
    ``r % 256``; the components of one number are judged together (their sizes summed) and
    those numbered 0 (ranks 256, 512, ...) are never removed. Reproduced, as CADS's outputs
    have it;

- then ``reference_box`` (557, 558; ``cads/dataset_utils/postprocessing.py``
  ``postprocess_head`` and ``postprocess_head_and_neck``): where task 553's post-processed
  brain (label 9) has at least 2000 voxels, the task keeps only ``[c - h, c + h)`` along R, A,
  S around the brain's centroid ``c`` (truncated to integers; ``h`` = 100, 100, 133 for 557 and
  100, 100, 200 for 558); otherwise 557 is emptied, and 558 falls back to
  ``above_reference``: kept from the lowest slice of task 552's labels 14-24 (T4 to C1; CADS
  calls them the cervical vertebrae) up, emptied where none of them is present.

The working array is canonical ``(S, A, R)`` (axes pointing to S, A and R), CADS's RAS NIfTI
array transposed: boxes and centroids index the same voxels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy import ndimage

from omas_idc.engine.cads_rules import (
    CadsRules,
    ComponentRule,
    FillRule,
    ReferenceBox,
    cads_rules,
)
from omas_idc.errors import ConfigurationError

__all__ = ["apply_cads_rules", "cads_postprocess", "fill_holes", "keep_components"]

#: Axis of the canonical (S, A, R) array per direction letter.
_AXIS = {"S": 0, "A": 1, "R": 2}
_FULL = np.ones((3, 3, 3), dtype=bool)


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels, clipped to the array."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(
            slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, mask.shape[axis]))
        )
    return tuple(box)


def _holes(mask: np.ndarray, slice_axis: int | None) -> np.ndarray:
    """Background voxels of ``mask`` not connected to the border (in 3D, or within slices
    across ``slice_axis``), as ``scipy.ndimage.binary_fill_holes`` defines them."""
    if slice_axis is None:
        structure = ndimage.generate_binary_structure(3, 1)
        faces: tuple[int, ...] = (0, 1, 2)
    else:
        structure = np.zeros((3, 3, 3), dtype=bool)
        plane: list[int | slice] = [slice(None)] * 3
        plane[slice_axis] = 1
        structure[tuple(plane)] = ndimage.generate_binary_structure(2, 1)
        faces = tuple(a for a in range(3) if a != slice_axis)
    background, _ = ndimage.label(~mask, structure=structure)
    border: list[np.ndarray] = []
    for axis in faces:
        for end in (0, -1):
            border.append(np.take(background, end, axis=axis).ravel())
    reached = np.unique(np.concatenate(border))
    return (background > 0) & ~np.isin(background, reached)


def fill_holes(labels: np.ndarray, value: int, passes: tuple[str, ...], into: str) -> None:
    """Fill the holes of label ``value`` in place, pass by pass (CADS's mammary glands).

    Parameters
    ----------
    labels
        Canonical ``(S, A, R)`` label map.
    value
        The label to fill.
    passes
        ``"3d"``, or ``"S"``, ``"A"``, ``"R"``: slice by slice across that axis.
    into
        ``"background"``: only voxels labelled 0 are filled (TPTBox 0.3.0, CADS); ``"any"``:
        enclosed voxels of other labels are overwritten too.
    """
    for step in passes:
        mask = labels == value
        if not mask.any():
            return
        # a one-voxel margin around the label keeps the holes as in the whole array
        box = _bbox(mask, 1)
        holes = _holes(mask[box], None if step == "3d" else _AXIS[step])
        region = labels[box]
        if into == "background":
            holes &= region == 0
        region[holes] = value


#: TPTBox numbers ranked components in the label map's dtype (uint8 in CADS): numbers wrap here.
_TPTBOX_NUMBERS = 256


def keep_components(
    labels: np.ndarray, value: int, min_voxels: int, max_components: int | None
) -> None:
    """Remove, in place, the 26-connected components of ``value`` that CADS removes.

    Components are ranked by size, larger first (equal sizes in the scan order of the RAS
    array, as TPTBox's labelling meets them), and numbered ``rank % 256`` as TPTBox's uint8
    numbering does; number by number, ascending, the first number beyond ``max_components``
    or whose components hold fewer than ``min_voxels`` voxels together, and every number
    after it, become background (never number 0: ranks 256, 512, ...).
    """
    mask = labels == value
    if not mask.any():
        return
    box = _bbox(mask, 0)
    # label the RAS layout (the canonical (S, A, R) box transposed) so that components are
    # numbered in TPTBox's scan order, which breaks ties between equal sizes
    ras = np.ascontiguousarray(mask[box].transpose(2, 1, 0))
    components_ras, n = ndimage.label(ras, structure=_FULL)
    components = components_ras.transpose(2, 1, 0)
    sizes = np.bincount(components_ras.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")  # component index by rank (0-based)
    number = np.zeros(n + 1, dtype=np.int64)
    number[order + 1] = (np.arange(n) + 1) % _TPTBOX_NUMBERS
    totals = np.bincount(number[1:], weights=sizes, minlength=_TPTBOX_NUMBERS)
    removed_from = None
    for k in range(1, min(n, _TPTBOX_NUMBERS - 1) + 1):
        if (max_components is not None and k > max_components) or totals[k] < min_voxels:
            removed_from = k
            break
    if removed_from is None:
        return
    drop = number >= removed_from
    drop[0] = False
    region = labels[box]
    region[drop[components]] = 0


def _reference_box(arrays: Mapping[str, np.ndarray], rules: CadsRules, task: str) -> None:
    box: ReferenceBox = rules.boxes[task]
    target = arrays[task]
    brain = arrays[box.reference_task] == box.reference_label
    if int(brain.sum()) >= box.min_reference_voxels:
        centre = [int(c) for c in ndimage.center_of_mass(brain)]
        half_r, half_a, half_s = box.half_size_ras
        half = (half_s, half_a, half_r)
        keep = tuple(
            slice(max(centre[a] - half[a], 0), min(centre[a] + half[a], target.shape[a]))
            for a in range(3)
        )
        inside = target[keep].copy()
        target[...] = 0
        target[keep] = inside
        return
    fallback = rules.fallbacks.get(task)
    if fallback is not None:
        present = np.isin(arrays[fallback.reference_task], fallback.reference_labels)
        slices = np.flatnonzero(present.any(axis=(1, 2)))
        if slices.size:
            target[: int(slices[0])] = 0
            return
    target[...] = 0


def apply_cads_rules(arrays: dict[str, np.ndarray], rules: CadsRules | None = None) -> None:
    """CADS's post-processing of one series' label maps, in place (numpy).

    Parameters
    ----------
    arrays
        Task id -> canonical ``(S, A, R)`` label map on the 1.5 mm working grid.
    rules
        The rule table (the shipped one when ``None``).

    Raises
    ------
    ConfigurationError
        If a task whose rules read another task's labels (557, 558 on 553 and 552) comes
        without that task's label map.
    """
    rules = rules or cads_rules()
    for task in arrays:
        missing = [ref for ref in rules.reference_tasks(task) if ref not in arrays]
        if missing:
            raise ConfigurationError(
                f"CADS post-processing of task {task} reads the labels of task(s) {missing}, "
                "which were not segmented; run them too (the card's depends_on adds them) or "
                "switch post-processing off"
            )
    steps: dict[tuple[str, int], list[FillRule | ComponentRule]] = {}
    for rule in rules.label_rules():
        steps.setdefault((rule.task, rule.label), []).append(rule)
    for (task, value), todo in sorted(steps.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if task not in arrays:
            continue
        for rule in todo:  # fill before components, as CADS
            if isinstance(rule, FillRule):
                fill_holes(arrays[task], value, rule.passes, rule.into)
            else:
                keep_components(arrays[task], value, rule.min_voxels, rule.max_components)
    for task in sorted(rules.boxes):
        if task in arrays:
            _reference_box(arrays, rules, task)


def cads_postprocess(
    labels: Mapping[str, torch.Tensor], rules: CadsRules | None = None
) -> dict[str, torch.Tensor]:
    """CADS's post-processing of one series' label maps (tensors, on their device).

    See :func:`apply_cads_rules`; the maps are processed on the CPU and returned on the
    device they came from.
    """
    arrays = {task: t.to("cpu").numpy().copy() for task, t in labels.items()}
    apply_cads_rules(arrays, rules)
    return {task: torch.from_numpy(arrays[task]).to(t.device) for task, t in labels.items()}
