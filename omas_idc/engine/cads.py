"""CADS's post-processing, on the 1.5 mm RAS label maps (before labels go back to the source).

From the CADS repository (``cads/dataset_utils/postprocessing.py``, ``utils/inference.py``):

- tasks 551, 553, 554, 556, 559: per structure, 26-connected components sorted by size; the
  first component below ``autofix`` voxels and all smaller ones are removed, and components
  beyond ``max_cc`` (where set) too;
- task 557 (brain structures): kept only within +-100, +-100, +-133 voxels of the centroid of
  task 553's brain (label 9) when that brain has >= 2000 voxels, emptied otherwise;
- task 558 (head and neck): the same box with +-200 along S; without a brain, kept above the
  lowest voxel of the cervical vertebrae (task 552 labels 14-24); empty without either.

Not reproduced: hole filling and convex hulls of the mammary glands (``fill``), which CADS
applies to two structures of task 556.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy import ndimage

__all__ = ["CADS_CLEANUP", "cads_postprocess"]

_CLEANUP_TASKS = ("551", "553", "554", "556", "559")
_BRAIN_LABEL = 9
_BRAIN_MIN_VOXELS = 2000
_CERVICAL = range(14, 25)

#: structure name -> (autofix minimum voxels, max components or None)
CADS_CLEANUP: dict[str, tuple[int, int | None]] = {
    **{
        n: (1000, None)
        for n in (
            "spleen",
            "kidney_right",
            "kidney_left",
            "stomach",
            "aorta",
            "pancreas",
            "esophagus",
            "humerus_left",
            "humerus_right",
            "scapula_left",
            "scapula_right",
            "clavicula_left",
            "clavicula_right",
            "femur_left",
            "femur_right",
            "hip_left",
            "hip_right",
            "sacrum",
            "gluteus_maximus_left",
            "gluteus_maximus_right",
            "gluteus_medius_left",
            "gluteus_medius_right",
            "gluteus_minimus_left",
            "gluteus_minimus_right",
            "autochthon_left",
            "autochthon_right",
            "iliopsoas_left",
            "iliopsoas_right",
            "spinal_canal",
            "larynx",
            "heart",
            "bowel_bag",
            "sigmoid",
            "rectum",
            "right psoas major",
            "left psoas major",
            "right rectus abdominis",
            "left rectus abdominis",
        )
    },
    "gallbladder": (20, None),
    "liver": (2200, None),
    "inferior_vena_cava": (500, None),
    **{
        n: (300, None)
        for n in (
            "lung_upper_lobe_left",
            "lung_lower_lobe_left",
            "lung_upper_lobe_right",
            "lung_middle_lobe_right",
            "lung_lower_lobe_right",
        )
    },
    **{
        n: (100, None)
        for n in (
            "trachea",
            "heart_myocardium",
            "heart_atrium_left",
            "heart_ventricle_left",
            "heart_atrium_right",
            "heart_ventricle_right",
            "brain",
            "colon",
            "face",
        )
    },
    **{n: (10, None) for n in ("iliac_artery_left", "iliac_artery_right")},
    **{n: (500, None) for n in ("iliac_vena_left", "iliac_vena_right", "spinal_cord")},
    "small_bowel": (150, None),
    "urinary_bladder": (1500, None),
    "left_mammary_gland": (0, 1),
    "right_mammary_gland": (0, 1),
    "sternum": (1500, 1),
    "subcutaneous_tissue": (4000, None),
    "muscle": (4000, None),
    "abdominal_cavity": (200, 1),
    "pericardium": (1000, 1),
    "bones": (200, None),
}


def _clean_label(labels: np.ndarray, value: int, autofix: int, max_cc: int | None) -> None:
    mask = labels == value
    if not mask.any():
        return
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    remove = np.zeros(n + 1, dtype=bool)
    for rank, index in enumerate(order, start=1):
        if (max_cc is not None and rank > max_cc) or sizes[index] < autofix:
            remove[order[rank - 1 :] + 1] = True
            break
    labels[remove[components]] = 0


def _box_mask(shape: tuple[int, ...], centre: np.ndarray, half: tuple[int, int, int]) -> np.ndarray:
    """Box in canonical (S, A, R) array order from CADS's (R, A, S) half sizes."""
    keep = np.zeros(shape, dtype=bool)
    c = [int(v) for v in centre]
    h = (half[2], half[1], half[0])
    keep[tuple(slice(max(c[a] - h[a], 0), min(c[a] + h[a], shape[a])) for a in range(3))] = True
    return keep


def cads_postprocess(
    labels: Mapping[str, torch.Tensor],
    names: Mapping[str, Mapping[int, str]],
    spacing: tuple[float, float, float],
) -> dict[str, torch.Tensor]:
    """CADS's post-processing of one series' label maps (canonical S, A, R order, 1.5 mm).

    Parameters
    ----------
    labels
        Task id -> label map on the working grid.
    names
        Task id -> label value -> structure name (the model's dataset.json).
    spacing
        Working-grid spacing (mm), for the record; CADS's thresholds are in 1.5 mm voxels.
    """
    del spacing
    out = {task: t.to("cpu").numpy().copy() for task, t in labels.items()}
    for task in _CLEANUP_TASKS:
        if task not in out:
            continue
        for value, name in names.get(task, {}).items():
            if name in CADS_CLEANUP:
                autofix, max_cc = CADS_CLEANUP[name]
                _clean_label(out[task], value, autofix, max_cc)
    brain = out.get("553")
    centre = None
    if brain is not None and int((brain == _BRAIN_LABEL).sum()) >= _BRAIN_MIN_VOXELS:
        centre = np.floor(ndimage.center_of_mass(brain == _BRAIN_LABEL))
    for task, half in (("557", (100, 100, 133)), ("558", (100, 100, 200))):
        if task not in out:
            continue
        if centre is not None:
            out[task][~_box_mask(out[task].shape, centre, half)] = 0
        elif task == "558" and "552" in out and np.isin(out["552"], list(_CERVICAL)).any():
            rows = np.nonzero(np.isin(out["552"], list(_CERVICAL)).any(axis=(1, 2)))[0]
            out[task][: rows.min()] = 0
        else:
            out[task][:] = 0
    device = next(iter(labels.values())).device if labels else torch.device("cpu")
    return {task: torch.from_numpy(a).to(device) for task, a in out.items()}
