"""Parity with nnU-Net's own nnUNetPredictor on the same weights and volume."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import (
    dice,
    nnunet_predictor,
    volume_from_array,
    volume_from_phantom,
)

from omas_idc.engine.jobs import Job
from omas_idc.engine.model import load_model
from omas_idc.engine.nnunet_reference import float32_accumulators
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import PhantomOptions, render_phantom

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

OPTIONS = PhantomOptions(shape=(24, 40, 44), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)


@pytest.mark.parametrize(
    ("architecture", "transpose_forward", "mirroring"),
    [("plain", (0, 1, 2), False), ("resenc", (2, 0, 1), True)],
)
def test_window_logits_and_labels_match_nnunet_at_model_spacing(
    tmp_path: Path, architecture: str, transpose_forward: tuple[int, int, int], mirroring: bool
) -> None:
    volume = volume_from_phantom(OPTIONS)
    orientation = CanonicalOrientation.of(volume.geometry)
    spacing = orientation.spacing
    spec = SyntheticModel(
        architecture=architecture,
        transpose_forward=transpose_forward,
        spacing=tuple(spacing[i] for i in transpose_forward),  # type: ignore[arg-type]
        patch_size=(16, 16, 16),
        folds=("0", "1"),
        seed=3,
    )
    folder = make_model_folder(tmp_path, spec)
    model = load_model(folder, mirroring=mirroring)
    segmenter = Segmenter(model, SegmenterConfig(batch_size=3))
    ours = segmenter.segment(volume)[0].array

    predictor = nnunet_predictor(folder, ("0", "1"), mirroring=mirroring)
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu).float()).numpy()[None]
    reference = orientation.to_source(
        predictor.predict_single_npy_array(canonical, {"spacing": list(spacing)})
    )
    for label in (0, 1, 2):
        assert dice(ours, reference, label) >= 0.99, label

    # window logits: the same tiles of the same preprocessed data through the same networks
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    data, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        canonical.astype(np.float32),
        None,
        {"spacing": list(spacing)},
        predictor.plans_manager,
        predictor.configuration_manager,
        predictor.dataset_json,
    )
    series = segmenter._prepare_series(volume, Future())
    job = Job(series=series, tasks=model.tasks, key=model.tasks[0].group_key())
    segmenter._prepare_job(job)
    assert job.data is not None
    assert job.grid is not None
    assert tuple(job.data.shape) == data.shape
    assert float((job.data - torch.from_numpy(data)).abs().max()) < 1e-4
    slicers = predictor._internal_get_sliding_window_slicers(data.shape[1:])
    starts = [tuple(s.start for s in sl[1:]) for sl in slicers]
    assert starts == job.starts
    worst = 0.0
    for fold, network in enumerate(model.tasks[0].networks):
        predictor.network.load_state_dict(predictor.list_of_parameters[fold])
        for slicer, start in zip(slicers, job.starts, strict=True):
            tile = torch.from_numpy(data[slicer][None])
            theirs = predictor._internal_maybe_mirror_and_predict(tile)
            with torch.inference_mode():  # as the segmenter's worker runs it
                mine = segmenter._predict(
                    network,
                    job.data[(slice(None), *job.grid.slices(start))][None],
                    model.tasks[0].mirror_axes,
                )
            worst = max(worst, float((theirs - mine).abs().max()))
    assert worst <= 1e-3

    # accumulated logits, everywhere including the faces, where a single tile's smallest
    # Gaussian weights count: nnU-Net summing in float32 as we do (its float16 sums are off by
    # up to 0.5 in the corners)
    logits = segmenter.predict_logits(volume)[model.tasks[0].id]
    with float32_accumulators():
        reference_logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data))
    assert logits.shape == reference_logits.shape
    assert float((logits - reference_logits).abs().max()) <= 1e-4


def test_labels_match_nnunet_voxel_for_voxel_at_the_borders(tmp_path: Path) -> None:
    # Air around the body; 13 slices, fewer than the patch (zero padding, cropped back); 37 and
    # 45 voxels, not multiples of the patch or its step (irregular tile positions); a two-voxel
    # border of exactly 0 HU, which nnU-Net's crop_to_nonzero cuts off and labels background.
    geometry, hu, _labels, _structures = render_phantom(
        PhantomOptions(shape=(13, 37, 45), pixel_spacing=(12.0, 11.0), slice_spacing=10.0)
    )
    hu = np.round(hu).astype(np.int16)
    hu[:, :, :2] = 0
    volume = volume_from_array(hu, geometry)
    orientation = CanonicalOrientation.of(volume.geometry)
    folder = make_model_folder(
        tmp_path,
        SyntheticModel(spacing=orientation.spacing, patch_size=(16, 16, 16), seed=5),
    )
    ours = Segmenter(load_model(folder)).segment(volume)[0].array

    predictor = nnunet_predictor(folder, ("all",))
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu).float()).numpy()[None]
    properties = {"spacing": list(orientation.spacing)}
    reference = orientation.to_source(predictor.predict_single_npy_array(canonical, properties))
    with float32_accumulators():
        exact = orientation.to_source(predictor.predict_single_npy_array(canonical, properties))

    assert len(np.unique(ours)) == 3
    assert not ours[:, :, :2].any()
    border = np.ones(hu.shape, dtype=bool)
    border[2:-2, 2:-2, 2:-2] = False
    # the same window logic: only float32 rounding differs, so (nearly) no voxel may differ
    assert np.mean(ours == exact) >= 0.9999
    assert np.mean((ours == exact)[border]) >= 0.9995
    # nnU-Net as shipped sums in float16, which flips some border voxels of its own result
    for label in (0, 1, 2):
        assert dice(ours, reference, label) >= 0.99, label
