"""Parity (b): every orientation, patient position and flip, against an independent path.

Our engine reads the phantom's DICOM files with ``read_series``. nnU-Net gets the same series
through a path that shares no code with ours: dcm2niix, nibabel's ``as_closest_canonical`` and
nnU-Net's own SimpleITK reader. nnU-Net's label map is then placed back on the phantom's
acquisition grid through the NIfTI affine (patient space, LPS positions of the voxel centres),
and the two label maps must agree (Dice >= 0.99 per label).

The phantoms lie at the model's spacing, so nothing is resampled and only the orientation chain
is under test; random-weight U-Nets are not flip-equivariant, so a wrong flip or permutation
anywhere changes the labels (checked by ``test_random_weights_notice_a_flip``). Oblique and
gantry-tilted series are left out: dcm2niix resamples them onto another grid.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from nnunet_reference import dice, nnunet_predictor

from omas_idc.engine.model import load_model
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import read_series

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")
pytest.importorskip("SimpleITK")

if shutil.which("dcm2niix") is None:
    pytest.skip("dcm2niix is not installed (pip install dcm2niix)", allow_module_level=True)

# Non-square pixels and another slice spacing: a swapped axis changes the spacing too.
BASE = PhantomOptions(shape=(24, 48, 56), pixel_spacing=(3.0, 3.5), slice_spacing=4.0, noise=0.0)

CASES = {
    "axial-HFS": {},
    "axial-FFS": {"patient_position": "FFS"},
    "axial-HFP": {"patient_position": "HFP"},
    "axial-FFP": {"patient_position": "FFP"},
    "axial-flip-rows": {"flip_rows": True},
    "axial-flip-columns": {"flip_columns": True},
    "axial-FFP-flip-both": {"patient_position": "FFP", "flip_rows": True, "flip_columns": True},
    "coronal": {"orientation": "coronal"},
    "coronal-FFS-flip-rows": {
        "orientation": "coronal",
        "patient_position": "FFS",
        "flip_rows": True,
    },
    "sagittal": {"orientation": "sagittal"},
    "sagittal-HFP-flip-columns": {
        "orientation": "sagittal",
        "patient_position": "HFP",
        "flip_columns": True,
    },
}


def _phantom(tmp_path: Path, changes: dict[str, Any]) -> Phantom:
    from dataclasses import replace

    return make_phantom(tmp_path / "dicom", replace(BASE, **changes))


def _nnunet_input(tmp_path: Path, dicom: Path) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """dcm2niix -> as_closest_canonical -> nnU-Net's SimpleITK reader; and the RAS affine."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    out = tmp_path / "nifti"
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "ct", "-o", str(out), str(dicom)],
        check=True,
        capture_output=True,
    )
    (converted,) = out.glob("ct*.nii")
    canonical = nib.as_closest_canonical(nib.load(converted))
    path = tmp_path / "canonical_0000.nii.gz"
    nib.save(canonical, path)
    data, properties = SimpleITKIO().read_images([str(path)])
    return data, properties, canonical.affine


def _on_phantom_grid(
    labels_kji: np.ndarray, ras_affine: np.ndarray, phantom: Phantom
) -> np.ndarray:
    """Sample a label map given in NIfTI voxel order (as SimpleITK returns it, [k, j, i]) at
    the centres of the phantom's voxels, through patient coordinates."""
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in phantom.geometry.shape], indexing="ij"))
    lps = phantom.geometry.voxel_to_lps(zyx.reshape(3, -1).T)
    ras = lps * np.array([-1.0, -1.0, 1.0])
    ijk = (np.linalg.inv(ras_affine) @ np.c_[ras, np.ones(len(ras))].T)[:3]
    index = np.rint(ijk).astype(int)
    assert np.abs(ijk - index).max() < 1e-2, "the NIfTI grid is not the acquisition grid"
    return labels_kji[index[2], index[1], index[0]].reshape(phantom.geometry.shape)


def _model(tmp_path: Path, spacing_sar: tuple[float, ...], transpose: tuple[int, int, int]) -> Path:
    return make_model_folder(
        tmp_path / "model",
        SyntheticModel(
            transpose_forward=transpose,
            spacing=tuple(spacing_sar[i] for i in transpose),  # type: ignore[arg-type]
            patch_size=(16, 32, 32),
            seed=3,
        ),
    )


@pytest.mark.parametrize("changes", list(CASES.values()), ids=list(CASES))
def test_labels_equal_nnunet_fed_through_dcm2niix(tmp_path: Path, changes: dict[str, Any]) -> None:
    phantom = _phantom(tmp_path, changes)
    data, properties, affine = _nnunet_input(tmp_path, phantom.files[0].parent)
    # The model's spacing is the series' spacing as nnU-Net's reader sees it: no resampling
    # on nnU-Net's side; ours resamples only if it gets the spacing wrong.
    spacing = tuple(float(s) for s in properties["spacing"])
    transpose = (2, 0, 1) if changes.get("flip_rows") else (0, 1, 2)
    folder = _model(tmp_path, spacing, transpose)

    volume = read_series(phantom.files[0].parent)
    ours = Segmenter(load_model(folder), SegmenterConfig(batch_size=4)).segment(volume)[0].array
    theirs_kji = nnunet_predictor(folder, ("all",)).predict_single_npy_array(data, properties)
    theirs = _on_phantom_grid(np.asarray(theirs_kji), affine, phantom)

    assert ours.shape == phantom.geometry.shape
    np.testing.assert_allclose(volume.geometry.affine, phantom.geometry.affine, atol=1e-3)
    for label in (0, 1, 2):
        # every label present in a good share of the volume: the comparison means something
        assert (theirs == label).mean() > 0.02, label
        assert dice(ours, theirs, label) >= 0.99, label


def test_random_weights_notice_a_flip(tmp_path: Path) -> None:
    """The comparison above fails where an axis is flipped on the way in and back out."""
    phantom = _phantom(tmp_path, {})
    data, properties, _ = _nnunet_input(tmp_path, phantom.files[0].parent)
    folder = _model(tmp_path, tuple(float(s) for s in properties["spacing"]), (0, 1, 2))
    predictor = nnunet_predictor(folder, ("all",))
    straight = predictor.predict_single_npy_array(data, properties)
    for axis in (1, 2, 3):
        flipped = np.flip(
            predictor.predict_single_npy_array(
                np.ascontiguousarray(np.flip(data, axis)), properties
            ),
            axis - 1,
        )
        assert min(dice(straight, flipped, label) for label in (0, 1, 2)) < 0.9, axis
