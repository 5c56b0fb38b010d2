"""Parity (c): the nnunet-native recipe with resampling, on a model with smooth outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import dice, nnunet_predictor, volume_from_phantom

from omas_idc.engine.model import load_model
from omas_idc.engine.nnunet_reference import float32_accumulators
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.segmenter import Segmenter
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")


@pytest.mark.parametrize("model_spacing", [(2.5, 2.5, 2.5), (6.0, 2.0, 2.0)])
def test_threshold_model_with_resampling_matches_nnunet(
    tmp_path: Path, model_spacing: tuple[float, float, float]
) -> None:
    # Our torch splines equal scipy's to ~1e-5; the differences come from nnU-Net summing the
    # window's logits in float16, which flips voxels on a class border. Summing in float32, as
    # we do, nnU-Net gives our label map voxel for voxel.
    volume = volume_from_phantom(
        PhantomOptions(shape=(20, 48, 52), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
    )
    orientation = CanonicalOrientation.of(volume.geometry)
    folder = make_model_folder(
        tmp_path,
        SyntheticModel(
            weights="threshold",
            spacing=model_spacing,
            patch_size=(16, 16, 16),
            thresholds_hu=(-200.0, 150.0),
        ),
    )
    ours = Segmenter(load_model(folder)).segment(volume)[0].array
    predictor = nnunet_predictor(folder, ("all",))
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu).float()).numpy()[None]
    properties = {"spacing": list(orientation.spacing)}
    reference = orientation.to_source(predictor.predict_single_npy_array(canonical, properties))
    for label in (0, 1, 2):
        assert dice(ours, reference, label) >= 0.97, label
    with float32_accumulators():
        exact = orientation.to_source(predictor.predict_single_npy_array(canonical, properties))
    assert np.mean(ours == exact) >= 0.9999
