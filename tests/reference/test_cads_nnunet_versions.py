"""nnunetv2 2.5.2 (CADS's pin) against 2.8.1 (the main venv's) on the same folder and input.

CADS pins nnunetv2 2.5.2; the engine's parity tests run 2.8.1, and the two cannot share a venv,
so the CADS reference (``cads_reference.py``) runs 2.5.2 in ``.venv-cads-ref``. This test runs
the same few lines in both venvs, each in its own process: nnU-Net's ``nnUNetPredictor``
(tile step 0.5, Gaussian, no mirroring, CPU) on one result folder, its own preprocessing of one
image (``PreprocessAdapterFromNpy``), ``predict_logits_from_preprocessed_data`` and
``convert_predicted_logits_to_segmentation_with_correct_shape``, and compares the preprocessed
data, the logits and the labels.

Finding (threshold and random weights, 1-feature networks, a 20 x 98 x 120 crop of the real CT
at 1.5 mm, 9 overlapping tiles): the two versions give the same preprocessed data, the same
logits to the bit and the same labels. Both sum the tiles' logits in float16 (``torch.half``
accumulators and Gaussian weights) and divide in float16: 2.8.1 only moved the tile copies to a
producer thread and the division into ``torch.div(..., out=...)``, which round the same way.
So CADS's pin does not change a label here; the reference keeps 2.5.2 all the same, as CADS
runs it. The assertion is the one users care about: every voxel whose label differs (none
today) is a near-tie, its top two logits closer than float16 sums can resolve.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omas_idc.engine.card import load_card
from omas_idc.engine.synthetic import make_model_folder
from omas_idc.read.reader import read_series
from omas_idc.testing.reference_models import threshold_spec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REFERENCE_PYTHON = REPO / ".venv-cads-ref" / "bin" / "python"
REAL_CT = "totalsegmentator/tests/reference_files/example_ct_dicom"
CROP = (slice(None), slice(230, 328), slice(190, 310))
#: float16's relative resolution: sums this close to each other may round either way.
FLOAT16_EPS = float(np.finfo(np.float16).eps)

#: Run by both interpreters: input .npy, output folder, result folders (one .npz each).
PREDICT = """
import importlib.metadata, sys
import numpy as np, torch
from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
from nnunetv2.inference.export_prediction import (
    convert_predicted_logits_to_segmentation_with_correct_shape,
)
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

image, out, *folders = sys.argv[1:]
data = np.load(image)
props = {"spacing": [1.5, 1.5, 1.5]}
for n, folder in enumerate(folders):
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                        device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(folder, ("all",), "checkpoint_final.pth")
    item = next(PreprocessAdapterFromNpy([data], [None], [props], [None], p.plans_manager,
                                         p.dataset_json, p.configuration_manager, 1))
    logits = p.predict_logits_from_preprocessed_data(item["data"]).cpu()
    labels = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, p.plans_manager, p.configuration_manager, p.label_manager,
        item["data_properties"])
    np.savez(f"{out}/{n}.npz", data=item["data"].numpy(), logits=logits.float().numpy(),
             labels=labels, version=importlib.metadata.version("nnunetv2"))
"""


def reference_python() -> Path:
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"the CADS reference venv is missing ({REFERENCE_PYTHON}): run .ci/run")
    return REFERENCE_PYTHON


def predict(
    python: Path, image: Path, out: Path, folders: list[Path]
) -> list[dict[str, np.ndarray]]:
    """:data:`PREDICT` with ``python``, one result per folder."""
    out.mkdir()
    done = subprocess.run(
        [str(python), "-c", PREDICT, str(image), str(out), *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{python}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    results = []
    for n in range(len(folders)):
        with np.load(out / f"{n}.npz") as saved:
            results.append({key: saved[key] for key in saved.files})
    return results


def near_ties(logits: np.ndarray) -> np.ndarray:
    """Voxels whose top two logits lie within a few float16 steps of the larger one."""
    top = np.sort(logits, axis=0)[-2:]
    gap = top[1] - top[0]
    return gap <= 4 * FLOAT16_EPS * np.maximum(np.abs(top[1]), 1.0)


def test_nnunet_252_and_281_predict_alike(shared_data: Path, tmp_path: Path) -> None:
    python_252 = reference_python()
    card = load_card("cads")
    task = card.task("551")
    kinds = ("threshold", "random")
    folders = []
    for weights in kinds:
        spec = threshold_spec(card, task, weights=weights, patch_size=(32, 64, 64))
        spec = dataclasses.replace(spec, features=1)
        folders.append(make_model_folder(tmp_path / weights, spec))
    hu = read_series(shared_data / REAL_CT).hu[CROP].astype(np.float32)
    image = tmp_path / "image.npy"
    np.save(image, hu[None])

    olds = predict(python_252, image, tmp_path / "252", folders)
    news = predict(Path(sys.executable), image, tmp_path / "281", folders)
    for weights, old, new in zip(kinds, olds, news, strict=True):
        assert str(old["version"]) == "2.5.2"
        assert str(new["version"]) == "2.8.1"
        np.testing.assert_array_equal(old["data"], new["data"])
        logit_difference = float(np.max(np.abs(old["logits"] - new["logits"])))
        differ = old["labels"] != new["labels"]
        ties = near_ties(old["logits"]) | near_ties(new["logits"])
        print(
            f"{weights}: max |logit 2.5.2 - 2.8.1| {logit_difference:.3g}; labels equal "
            f"{1 - differ.mean():.6f} ({int(differ.sum())} differ, {int(ties.sum())} "
            f"near-ties of {differ.size})"
        )
        assert not np.any(differ & ~ties), f"{weights}: labels differ where no near-tie is"
