"""CADS's inference pipeline, reproduced as the reference of omas-idc's ``cads`` card.

There is no CADS package: this script chains the library calls that CADS
(https://github.com/murong-xu/CADS at 7480324808ab490b5e27035c8bfd28486e8c004a, package version
1.0.3) makes, written from what its code does (no code copied), and runs in its own virtual
environment with the versions CADS pins: nnunetv2 2.5.2 and TPTBox 0.3.0 (``.venv-cads-ref``,
built by ``.ci/run``). It must not import omas_idc, so that it stays independent of what it
checks.

Steps, per input NIfTI (``cads/utils/inference.py`` ``predict`` with its defaults: folds
``all``, ``checkpoint_final.pth``, CADS pre- and post-processing on):

1. ``preprocess_nifti``: nibabel load; unless the affine's diagonal is 1.5 mm, its axes are RAS
   and it has no translation, reorient the data to RAS with ``nibabel.orientations``
   (``reorient_to``); ``change_spacing`` to 1.5 mm: ``scipy.ndimage.zoom`` of the float64 data
   with order 3 and scipy's defaults (mode ``constant``, corner-aligned grid, prefilter), zoom
   factors from the reoriented image's header zooms (float32) divided by 1.5, cast to int32
   (truncation); a diagonal affine of the column lengths (``remove_rotation_and_translation``);
   saved as NIfTI (float64 values).
2. Per task, in ascending task order (557 and 558 add 553; 558 adds 552): nnU-Net 2.5.2's
   ``nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False)`` on the CPU,
   initialised from the task's folder (``get_task_model_folder``: the ``Dataset{id}`` folder
   under the models folder, its ``nnUNetTrainerNoMirroring__nnUNetResEncUNetLPlans__3d_fullres``
   subfolder), ``predict_single_npy_array`` on the image as nnU-Net's ``SimpleITKIO`` reads the
   preprocessed file; nnU-Net writes the label map (SimpleITK).
3. Post-processing on the 1.5 mm label map (unless ``--no-postprocessing``):
   tasks 551, 553, 554, 556 and 559 (``postprocess_seg_TPTBox``): for each label in index order
   whose CADS name has a rule (``labels_info``): hole filling (3D, slice-wise along S, R, A, 3D
   again; mammary glands only) with TPTBox's ``NII.fill_holes_``, then connected components
   (TPTBox's ``get_largest_k_segmentation_connected_components``, 26-connectivity, largest
   first): from the first component beyond ``max_cc`` or smaller than ``autofix`` voxels on,
   every remaining component is set to 0. Task 557 (``postprocess_head``): kept only in a box
   of +-100, +-100, +-133 voxels around the centroid (truncated to int) of 553's post-processed
   brain (label 9), emptied where the brain has < 2000 voxels. Task 558
   (``postprocess_head_and_neck``): the same box with +-200 along S where the brain has >= 2000
   voxels; otherwise, where 552's labels 14-24 are present, kept from their lowest slice
   upwards; otherwise emptied.
4. ``restore_seg_in_orig_format``: ``scipy.ndimage.zoom`` order 0 to the original shape (factors
   target / current shape, axes matched by orientation code), back to the original orientation,
   uint8, written with the original affine.

Where this reproduction differs from running CADS, and why the result cannot: the zoom runs
in-process (CADS sends the one channel through joblib); the preprocessed image goes to this
run's own folder (CADS: a ``temp_results`` folder inside its package); nnU-Net's progress bar
is off; nnU-Net is given the output name without ``.nii.gz`` because it appends the dataset's
``file_ending`` itself (CADS passes the full name; with a ``.nii.gz`` file ending nnU-Net 2.5.2
would then write ``..._part_551.nii.gz.nii.gz``, which is not the file CADS reads back: that
naming, not the numbers, is all this changes); the task-553/552 files that 557/558 read are the
ones written earlier in the same run, as in CADS's task order. TPTBox 0.3.0 imports antspyx at
module level for registration and bias-field correction, which CADS never calls: the reference
venv has a stand-in ``ants`` module that raises if used (antspyx is a 346 MB wheel). numpy is
1.26.4, as TPTBox 0.3.0 requires (< 2) and a CADS install therefore has: TPTBox numbers a label's
components in the label map's dtype (uint8), and past 255 components numpy 1.26 wraps the
numbers (with a DeprecationWarning) where numpy 2 would raise.

Usage (with the reference venv's python)::

    .venv-cads-ref/bin/python tests/reference/cads_reference.py CT.nii.gz [CT2.nii.gz ...] \\
        MODELS OUT [--tasks 551 553 ...] [--no-postprocessing] [--threads N]

``MODELS`` holds the ``Dataset55x_*`` folders (``weights_root/cads/<variant>`` of omas-idc's
weights cache). As CADS's ``predict`` does, the models are loaded once and the inputs run in
turn. Per input, writes ``OUT/<case>/<case>_part_<task>.nii.gz`` for every task run (the
dependencies included) and ``OUT/<case>/<case>_reference.json``: tasks, files, the case's wall
time (``wall_s``, preprocessing to the last restored file; ``steps_s`` per step; ``load_s``,
loading the models, once), the process's peak resident memory so far (``peak_rss_mb``,
``getrusage(RUSAGE_SELF).ru_maxrss``) and the versions used; prints one JSON line per input.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
from scipy import ndimage

CADS_COMMIT = "7480324808ab490b5e27035c8bfd28486e8c004a"
CADS_VERSION = "1.0.3"
NNUNET_VERSION = "2.5.2"
TPTBOX_VERSION = "0.3.0"
TASKS = (551, 552, 553, 554, 555, 556, 557, 558, 559)
SPACING_MM = 1.5
TRAINER_FOLDER = "nnUNetTrainerNoMirroring__nnUNetResEncUNetLPlans__3d_fullres"
PLANS = "nnUNetResEncUNetLPlans"

# CADS's label names (cads/dataset_utils/bodyparts_labelmaps.py), label i + 1 at position i,
# for the tasks whose labels it post-processes by name.
LABEL_NAMES: dict[int, tuple[str, ...]] = {
    551: (
        "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
        "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
        "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
        "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right",
    ),
    553: (
        "esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
        "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain",
        "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
        "small_bowel", "duodenum", "colon", "urinary_bladder", "face",
    ),
    554: (
        "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
        "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "sacrum",
        "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
        "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right",
        "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right",
    ),
    556: (
        "spinal_canal", "larynx", "heart", "bowel_bag", "sigmoid", "rectum", "prostate",
        "seminal_vesicle", "left_mammary_gland", "right_mammary_gland", "sternum",
        "right psoas major", "left psoas major", "right rectus abdominis",
        "left rectus abdominis",
    ),
    559: (
        "subcutaneous_tissue", "muscle", "abdominal_cavity", "thoracic_cavity", "bones", "glands",
        "pericardium", "breast_implant", "mediastinum", "spinal_cord",
    ),
}  # fmt: skip

# CADS's rules by label name (labels_info in cads/dataset_utils/postprocessing.py): the
# smallest component kept ("autofix"), the most components kept ("max_cc"), hole filling.
# Names without an entry are left as the network labelled them.
_BONE_500 = ("humerus_left", "humerus_right", "scapula_left", "scapula_right")
_MIN_VOXELS: dict[str, int] = {
    **dict.fromkeys(
        ("spleen", "kidney_right", "kidney_left", "stomach", "aorta", "pancreas", "esophagus"),
        1000,
    ),
    "gallbladder": 20,
    "liver": 2200,
    "inferior_vena_cava": 500,
    **dict.fromkeys(LABEL_NAMES[551][12:17], 300),
    "trachea": 100,
    **dict.fromkeys(LABEL_NAMES[553][2:7], 100),
    "brain": 100,
    "iliac_artery_left": 10,
    "iliac_artery_right": 10,
    "iliac_vena_left": 500,
    "iliac_vena_right": 500,
    "small_bowel": 150,
    "colon": 100,
    "urinary_bladder": 1500,
    "face": 100,
    **dict.fromkeys(_BONE_500, 500),
    **dict.fromkeys((n for n in LABEL_NAMES[554] if n not in _BONE_500), 1000),
    **dict.fromkeys(LABEL_NAMES[556][:6], 1000),
    "left_mammary_gland": 0,
    "right_mammary_gland": 0,
    "sternum": 1500,
    **dict.fromkeys(LABEL_NAMES[556][11:15], 1000),
    "subcutaneous_tissue": 4000,
    "muscle": 4000,
    "abdominal_cavity": 200,
    "bones": 200,
    "pericardium": 1000,
    "spinal_cord": 500,
}
_MAX_COMPONENTS: dict[str, int] = dict.fromkeys(
    ("left_mammary_gland", "right_mammary_gland", "sternum", "abdominal_cavity", "pericardium"), 1
)
_FILL = frozenset(("left_mammary_gland", "right_mammary_gland"))
OUTLIER_TASKS = tuple(LABEL_NAMES)

BRAIN_TASK, BRAIN_LABEL, BRAIN_MIN_VOXELS = 553, 9, 2000
SPINE_TASK, NECK_LABELS = 552, tuple(range(14, 25))
HEAD_HALF_SIZE = {557: (100, 100, 133), 558: (100, 100, 200)}


class CadsReferenceError(RuntimeError):
    """The reference pipeline cannot run (a missing model folder, a bad option)."""


# --- the models -------------------------------------------------------------------------------


def task_model_folder(models: Path, task: int) -> Path:
    """The result folder of ``task`` under ``models``, found as CADS finds it: the child
    folder whose name holds ``Dataset{task:03d}``, its subfolder named for CADS's trainer."""
    for dataset in sorted(p for p in models.iterdir() if p.is_dir()):
        if f"Dataset{task:03d}" not in dataset.name:
            continue
        for sub in sorted(p for p in dataset.iterdir() if p.is_dir() and PLANS in p.name):
            if TRAINER_FOLDER in sub.name:
                return sub.resolve()
        raise CadsReferenceError(f"no {TRAINER_FOLDER} folder in {dataset}")
    raise CadsReferenceError(f"task {task} not found in the models folder {models}")


def with_dependencies(tasks: Iterable[int]) -> list[int]:
    """The tasks CADS runs for ``tasks``: 557/558 need 553's brain, 558 also 552's spine."""
    wanted = set(tasks)
    unknown = wanted - set(TASKS)
    if unknown:
        raise CadsReferenceError(f"unknown CADS tasks {sorted(unknown)}; choose from {TASKS}")
    if wanted & {557, 558}:
        wanted.add(BRAIN_TASK)
    if 558 in wanted:
        wanted.add(SPINE_TASK)
    return sorted(wanted)


def load_predictors(models: Path, tasks: Sequence[int], folds: Sequence[str]) -> dict[int, Any]:
    """One nnU-Net 2.5.2 predictor per task, with CADS's settings, on the CPU."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictors = {}
    for task in tasks:
        predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=False,
            device=torch.device("cpu"),
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        folder = task_model_folder(models, task)
        predictor.initialize_from_trained_model_folder(
            str(folder), tuple(folds), "checkpoint_final.pth"
        )
        predictors[task] = predictor
    return predictors


# --- preprocessing (cads/dataset_utils/preprocessing.py) --------------------------------------


def reorient(
    data: np.ndarray, affine: np.ndarray, axcodes: Sequence[str], target_affine: Any = None
) -> nib.Nifti1Image:
    """``data`` turned from its affine's orientation to ``axcodes`` (nibabel orientations).

    The new affine is ``target_affine`` where given; otherwise the old one composed with the
    inverse transform, computed (as CADS does) with the reoriented array's shape; only the
    linear part of that affine is used downstream.
    """
    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(axcodes)))
    turned = nio.apply_orientation(data, transform)
    if target_affine is None:
        target_affine = affine @ nio.inv_ornt_aff(transform, turned.shape)
    return nib.Nifti1Image(turned, target_affine)


def change_spacing(
    image: nib.Nifti1Image,
    spacing: Sequence[float],
    *,
    order: int,
    target_shape: Sequence[int] | None = None,
) -> nib.Nifti1Image:
    """``scipy.ndimage.zoom`` of the image's float64 data to ``spacing`` (or exactly to
    ``target_shape``), cast to int32; each affine column divided by its zoom factor.

    The factors are the header zooms (float32) over the new spacing, or target over current
    shape; ``zoom`` itself runs with scipy's defaults (mode ``constant``, ``grid_mode=False``).
    """
    data = image.get_fdata()
    if target_shape is not None:
        factors = np.array(target_shape) / np.array(data.shape)
    else:
        factors = np.array(image.header.get_zooms()) / np.array(spacing, dtype=np.float64)
    affine = np.array(image.affine, copy=True)
    for axis in range(3):
        affine[:3, axis] = affine[:3, axis] / factors[axis]
    zoomed = ndimage.zoom(data, factors, order=order)
    return nib.Nifti1Image(zoomed.astype(np.int32), affine)


def diagonal_affine(affine: np.ndarray) -> np.ndarray:
    """The affine without rotation and translation: the column lengths on the diagonal."""
    if np.any(np.diag(affine[:3, :3]) < 0):
        raise CadsReferenceError(f"the image is not in RAS+ after reorientation:\n{affine}")
    return np.diag([*np.linalg.norm(affine[:3, :3], axis=0).tolist(), 1.0])


def preprocess(source: Path, work: Path) -> tuple[Path, dict[str, Any] | None]:
    """The 1.5 mm RAS file nnU-Net reads, and what restoring needs (``None`` where CADS skips
    the preprocessing: diagonal 1.5 mm, RAS, no translation)."""
    raw = nib.load(source)
    data = raw.get_fdata()
    affine = raw.affine
    axcodes = nio.ornt2axcodes(nio.io_orientation(affine))
    if (
        np.all(np.isclose(np.diag(affine)[:3], SPACING_MM))
        and axcodes == ("R", "A", "S")
        and np.allclose(affine[:, -1], [0, 0, 0, 1])
    ):
        return source, None
    ras = reorient(data, affine, ("R", "A", "S"))
    resampled = change_spacing(ras, [SPACING_MM] * 3, order=3)
    image = nib.Nifti1Image(resampled.get_fdata(), diagonal_affine(resampled.affine))
    path = work / "preprocessed.nii.gz"
    nib.save(image, path)
    return path, {"affine": affine, "shape": tuple(int(s) for s in data.shape[:3])}


def restore(path: Path, original: dict[str, Any]) -> None:
    """Bring a 1.5 mm label map back to the input's grid (``restore_seg_in_orig_format``)."""
    seg = nib.load(path)
    affine = original["affine"]
    current = nio.ornt2axcodes(nio.io_orientation(seg.affine))
    target = nio.ornt2axcodes(nio.io_orientation(affine))
    spacings = np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))
    opposite = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
    order = [target.index(c) if c in target else target.index(opposite[c]) for c in current]
    spacing = [float(spacings[i]) for i in order]
    shape = [int(original["shape"][i]) for i in order]
    resampled = change_spacing(seg, spacing, order=0, target_shape=shape)
    back = reorient(resampled.get_fdata(), resampled.affine, target, target_affine=affine)
    out = nib.Nifti1Image(back.get_fdata().astype(np.uint8), affine)
    out.header["pixdim"][1:4] = spacings
    nib.save(out, path)


# --- prediction -------------------------------------------------------------------------------


def predict(predictor: Any, image: Path, out_truncated: Path) -> None:
    """nnU-Net's single-image prediction as CADS calls it; nnU-Net writes the label map."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    data, properties = SimpleITKIO().read_images([str(image)])
    predictor.predict_single_npy_array(data, properties, None, str(out_truncated), False)


# --- post-processing (cads/dataset_utils/TPTBox.py, postprocessing.py) ------------------------


def filter_components(nii: Any, label: int, min_volume: int, max_components: int | None) -> Any:
    """Remove ``label``'s components from the first one (largest first) that exceeds
    ``max_components`` or has fewer than ``min_volume`` voxels on, all later ones with it."""
    arr = nii.get_seg_array()
    try:
        components = nii.get_largest_k_segmentation_connected_components(
            None, label, connectivity=3, return_original_labels=False
        )
    except (ValueError, AssertionError):  # TPTBox on an absent label: nothing to do
        return nii.copy()
    ids = components.unique()
    for rank, component in enumerate(ids, start=1):
        mask = components.extract_label(component)
        components *= -mask + 1
        size = mask.sum()
        if (max_components is not None and rank > max_components) or size < min_volume:
            arr[mask.get_array() != 0] = 0
            arr[components.get_array() != 0] = 0
            break
    return nii.set_array(arr)


def postprocess_outliers(path: Path, task: int) -> None:
    """CADS's per-label rules of one task, with TPTBox, on the file nnU-Net wrote."""
    from TPTBox import to_nii

    nii = to_nii(path, True)
    for label, name in enumerate(LABEL_NAMES[task], start=1):
        if name not in _MIN_VOXELS:
            continue
        if name in _FILL:
            nii = (
                nii.fill_holes_(label)
                .fill_holes_(label, nii.get_axis("S"))
                .fill_holes_(label, nii.get_axis("R"))
                .fill_holes_(label, nii.get_axis("A"))
                .fill_holes_(label)
            )
        nii = filter_components(nii, label, _MIN_VOXELS[name], _MAX_COMPONENTS.get(name))
    nii.save(path, verbose=False)


def _brain_centroid(brain_file: Path) -> tuple[list[int], int]:
    image = nib.load(brain_file)
    labels = np.asanyarray(image.dataobj)
    mask = labels == BRAIN_LABEL
    voxels = int(np.count_nonzero(mask))
    if voxels < BRAIN_MIN_VOXELS:
        return [], voxels
    return [int(c) for c in ndimage.center_of_mass(mask)], voxels


def _keep_box(path: Path, lo: Sequence[int], hi: Sequence[int], reference: Any) -> None:
    seg = nib.load(path).get_fdata()
    kept = np.zeros(reference.shape, dtype=np.uint8)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    kept[box] = seg[box]
    nib.save(nib.Nifti1Image(kept, reference.affine), path)


def postprocess_head(path: Path, task: int, brain_file: Path, spine_file: Path | None) -> str:
    """557/558: keep the box around 553's brain; 558 without a brain: above 552's upper
    spine, or nothing. Returns which case applied."""
    reference = nib.load(brain_file)
    shape = reference.shape
    centre, _voxels = _brain_centroid(brain_file)
    if centre:
        half = HEAD_HALF_SIZE[task]
        lo = [max(c - h, 0) for c, h in zip(centre, half, strict=True)]
        hi = [min(c + h, n) for c, h, n in zip(centre, half, shape, strict=True)]
        _keep_box(path, lo, hi, reference)
        return "brain box"
    if task == 557 or spine_file is None:
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), reference.affine), path)
        return "empty"
    spine = nib.load(spine_file).get_fdata()
    neck = np.isin(spine, NECK_LABELS)
    if not neck.any():
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), reference.affine), path)
        return "empty"
    lowest = int(np.where(neck.any(axis=(0, 1)))[0].min())
    _keep_box(path, (0, 0, lowest), shape, reference)
    return "above spine"


# --- the pipeline -----------------------------------------------------------------------------


def case_name(source: Path) -> str:
    """CADS's patient id: the file name less ``_0000.nii.gz`` or ``.nii.gz``."""
    name = source.name
    if name.endswith("_0000.nii.gz"):
        return name[: -len("_0000.nii.gz")]
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else source.stem


def run_case(
    source: Path,
    predictors: dict[int, Any],
    out: Path,
    *,
    postprocessing: bool = True,
    load_s: float = 0.0,
) -> dict[str, Any]:
    """Run the CADS pipeline on one NIfTI with loaded predictors; returns (and writes) the
    case's record (``load_s``: how long loading the predictors took, for the record)."""
    if not source.name.endswith((".nii", ".nii.gz")):
        raise CadsReferenceError(f"{source} is no NIfTI file (.nii or .nii.gz)")
    case = case_name(source)
    folder = out / case
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "temp"
    work.mkdir(exist_ok=True)
    order = sorted(predictors)
    steps: dict[str, float] = {}
    notes: dict[str, str] = {}
    start = time.perf_counter()

    t = time.perf_counter()
    image, original = preprocess(source, work)
    steps["preprocess"] = time.perf_counter() - t

    files = {task: folder / f"{case}_part_{task}.nii.gz" for task in order}
    steps["predict"] = steps["postprocess"] = 0.0
    for task in order:
        t = time.perf_counter()
        predict(predictors[task], image, folder / f"{case}_part_{task}")
        steps["predict"] += time.perf_counter() - t
        if not postprocessing:
            continue
        t = time.perf_counter()
        if task in OUTLIER_TASKS:
            postprocess_outliers(files[task], task)
        if task in HEAD_HALF_SIZE:
            spine = files.get(SPINE_TASK) if task == 558 else None
            notes[str(task)] = postprocess_head(files[task], task, files[BRAIN_TASK], spine)
        steps["postprocess"] += time.perf_counter() - t

    t = time.perf_counter()
    if original is not None:
        for task in order:
            restore(files[task], original)
    steps["restore"] = time.perf_counter() - t
    wall = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)

    record = {
        "reference": f"CADS {CADS_VERSION}@{CADS_COMMIT[:7]}",
        "input": str(source),
        "tasks": order,
        "files": {str(task): str(path) for task, path in files.items()},
        "postprocessing": postprocessing,
        "preprocessed": original is not None,
        "head_postprocessing": notes,
        "wall_s": wall,
        "load_s": load_s,
        "steps_s": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("nnunetv2", "TPTBox", "torch", "scipy", "nibabel", "numpy")
        },
    }
    (folder / f"{case}_reference.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def run(
    sources: Sequence[Path],
    models: Path,
    out: Path,
    *,
    tasks: Iterable[int] = TASKS,
    postprocessing: bool = True,
    folds: Sequence[str] = ("all",),
) -> list[dict[str, Any]]:
    """CADS's ``predict``: load the tasks' models once, then run every input in turn.

    Each record has the case's own ``wall_s`` (preprocessing to the last restored file) and
    ``load_s``, the time it took to load the models (once, before the first case); its
    ``peak_rss_mb`` is the process's peak so far.
    """
    start = time.perf_counter()
    predictors = load_predictors(models, with_dependencies(tasks), folds)
    load = time.perf_counter() - start
    records = []
    for source in sources:
        records.append(
            run_case(source, predictors, out, postprocessing=postprocessing, load_s=load)
        )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description="CADS's inference pipeline (reference).")
    parser.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="CT.nii.gz [CT2.nii.gz ...] MODELS OUT: the inputs, the folder holding the "
        "Dataset55x_* folders, the output folder",
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=list(TASKS))
    parser.add_argument("--no-postprocessing", action="store_true")
    parser.add_argument("--folds", nargs="+", default=["all"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if len(args.paths) < 3:
        parser.error("give at least one input, the models folder and the output folder")
    *inputs, models, out = args.paths
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    installed = importlib.metadata.version("nnunetv2")
    if installed != NNUNET_VERSION:
        print(f"nnunetv2 {installed} installed; CADS pins {NNUNET_VERSION}", file=sys.stderr)
        return 2
    try:
        records = run(
            inputs,
            models,
            out,
            tasks=args.tasks,
            postprocessing=not args.no_postprocessing,
            folds=args.folds,
        )
    except CadsReferenceError as err:
        print(f"cads_reference: {err}", file=sys.stderr)
        return 2
    for record in records:
        print(json.dumps({k: record[k] for k in ("input", "tasks", "wall_s", "peak_rss_mb")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
