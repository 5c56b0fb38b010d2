"""Slab-wise resampling (the engine's memory bound) gives what whole-volume resampling gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import volume_from_phantom

from omas_idc.engine.model import load_model
from omas_idc.engine.modelfolder import ResamplingSpec
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.resampling import compute_new_shape, resample, resample_slabs
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("spacing", "new_spacing", "spec"),
    [
        ((2.0, 1.0, 1.0), (1.5, 1.5, 1.5), ResamplingSpec(3, 0, None)),  # cubic, clipped
        ((5.0, 1.0, 1.0), (1.5, 1.5, 1.5), ResamplingSpec(3, 0, None)),  # separate z
        ((1.0, 1.0, 5.0), (1.5, 1.5, 1.5), ResamplingSpec(3, 3, None)),  # separate x, cubic
        ((2.0, 2.0, 2.0), (1.5, 0.8, 0.8), ResamplingSpec(1, 0, None)),  # logits back
    ],
)
def test_slabs_cover_the_output_once_and_equal_whole_volume_resampling(
    spacing: tuple[float, ...], new_spacing: tuple[float, ...], spec: ResamplingSpec
) -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    data = torch.from_numpy(
        (gaussian_filter(rng.normal(size=(3, 21, 30, 26)), (0, 1, 1, 1)) * 300).astype(np.float32)
    )
    new_shape = compute_new_shape(data.shape[1:], spacing, new_spacing)
    whole = resample(data, new_shape, spacing, new_spacing, spec)
    out = torch.zeros_like(whole)
    writes = torch.zeros(whole.shape[1:], dtype=torch.int32)
    slabs = list(
        resample_slabs(
            lambda region: data[(slice(None), *region)],
            data.shape[1:],
            new_shape,
            spacing,
            new_spacing,
            spec,
            max_elements=2000,
            channels=3,
        )
    )
    for region, slab in slabs:
        out[(slice(None), *region)] = slab
        writes[region] += 1
    assert len(slabs) > 3
    assert bool((writes == 1).all())
    # the same arithmetic per sample; only the order of float32 sums may differ
    tolerance = 1e-5 * float(whole.abs().max())
    assert float((out - whole).abs().max()) <= tolerance


def test_nearest_slabs_keep_integer_labels_exactly() -> None:
    labels = torch.randint(0, 200, (1, 17, 23, 19), dtype=torch.uint8)
    spec = ResamplingSpec(0, 0, False)
    shape = (30, 11, 40)
    reference = resample(labels.float(), shape, (1, 1, 1), (1, 1, 1), spec, clip=False)
    out = torch.zeros((1, *shape), dtype=torch.uint8)
    for region, slab in resample_slabs(
        lambda region: labels[(slice(None), *region)],
        labels.shape[1:],
        shape,
        (1, 1, 1),
        (1, 1, 1),
        spec,
        clip=False,
        max_elements=100,
    ):
        assert slab.dtype == torch.uint8
        out[(slice(None), *region)] = slab
    assert torch.equal(out.float(), reference)


def test_slab_wise_labels_equal_resample_then_argmax_of_the_whole_volume(tmp_path: Path) -> None:
    # The segmenter never holds a class at full resolution: each slab of the source grid gets
    # all classes and is reduced to labels at once. Reference: nnU-Net's order of operations,
    # all logits resampled to the source grid as whole volumes, then the argmax.
    volume = volume_from_phantom(
        PhantomOptions(shape=(24, 48, 52), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
    )
    folder = make_model_folder(
        tmp_path,
        SyntheticModel(
            weights="threshold",
            thresholds_hu=(-500.0, -50.0, 150.0),
            labels=("body", "soft", "dense"),
            spacing=(4.0, 5.0, 5.0),
            patch_size=(16, 16, 16),
        ),
    )
    model = load_model(folder)
    segmenter = Segmenter(model, SegmenterConfig(batch_size=4, resample_slab_mb=0.05))
    ours = segmenter.segment(volume)[0].array

    logits = segmenter.predict_logits(volume)[model.tasks[0].id]
    orientation = CanonicalOrientation.of(volume.geometry)
    canonical_shape = tuple(volume.shape[i] for i in orientation.permutation)
    assert bool((torch.from_numpy(volume.hu) != 0).all())  # no nonzero crop: the same grid
    folder_config = model.tasks[0].folder.configuration
    whole = resample(
        logits,
        canonical_shape,
        folder_config.spacing,
        orientation.spacing,
        folder_config.probability_resampling,
        clip=False,
    )
    top2 = whole.topk(2, dim=0).values
    near_tie = orientation.to_source((top2[0] - top2[1] <= 1e-4 * whole.abs().max()).numpy())
    reference = orientation.to_source(whole.argmax(dim=0).numpy().astype(np.uint8))
    assert len(np.unique(reference)) >= 3
    assert near_tie.mean() < 0.01  # the exemption below covers rounding, not the borders
    differ = ours != reference
    assert not bool((differ & ~near_tie).any()), int((differ & ~near_tie).sum())


def test_wrapper_recipe_labels_do_not_depend_on_the_slab_size(tmp_path: Path) -> None:
    # TotalSegmentator's wrapper: the series is resampled to the card's spacing first (cubic,
    # slab-wise from int16) and the labels come back with nearest neighbour (slab-wise, uint8)
    spec = SyntheticModel(
        dataset_id=901,
        dataset_name="Wrapped",
        weights="threshold",
        thresholds_hu=(-500.0, -50.0, 150.0),
        labels=("body", "soft", "dense"),
        spacing=(4.0, 4.0, 4.0),
        patch_size=(16, 16, 16),
    )
    make_model_folder(tmp_path, spec)
    card = {
        "name": "wrapped",
        "recipe": "totalseg",
        "spacing_mm": 4.5,
        "variants": {"local": {"licence": ""}},
        "tasks": [
            {
                "id": "901",
                "dataset": "Dataset901_Wrapped",
                "trainer": spec.trainer_name,
                "plans": spec.plans_name,
            }
        ],
    }
    (tmp_path / "wrapped.json").write_text(json.dumps(card))
    model = load_model(tmp_path / "wrapped.json")
    volume = volume_from_phantom(
        PhantomOptions(shape=(30, 64, 60), pixel_spacing=(3.0, 3.2), slice_spacing=2.5)
    )
    one_slab = Segmenter(model, SegmenterConfig(batch_size=4, resample_slab_mb=1024.0))
    thin_slabs = Segmenter(model, SegmenterConfig(batch_size=4, resample_slab_mb=0.05))
    a = one_slab.segment(volume)[0].array
    b = thin_slabs.segment(volume)[0].array
    assert a.shape == volume.shape
    assert a.dtype == np.uint8
    assert len(np.unique(a)) == 4
    # only float32 near-ties may differ (the order of sums in a matrix product)
    assert float((a != b).mean()) < 1e-4


def test_slab_size_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="resample_slab_mb"):
        SegmenterConfig(resample_slab_mb=0)
