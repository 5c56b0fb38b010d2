"""Model cards, safe checkpoints, resampling and the Segmenter's API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import volume_from_phantom

from omas_idc.engine.card import load_card
from omas_idc.engine.checkpoint import load_checkpoint
from omas_idc.engine.model import load_model
from omas_idc.engine.modelfolder import ResamplingSpec
from omas_idc.engine.resampling import resample
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError, InferenceError, ModelError
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_builtin_cards_describe_cads_and_totalsegmentator() -> None:
    cads = load_card("cads")
    assert [t.id for t in cads.tasks] == [str(i) for i in range(551, 560)]
    assert {t.trainer for t in cads.tasks} == {"nnUNetTrainerNoMirroring"}
    assert set(cads.variants) == {"reference", "research", "open"}
    assert [t.id for t in cads.resolve_tasks(["558"])] == ["553", "552", "558"]
    assert all(w.sha256 is None for t in cads.tasks for w in t.weights.values())
    assert len(load_card("totalseg").tasks) == 5


def test_unknown_model_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean 'totalseg'"):
        load_card("totalsge")
    with pytest.raises(ConfigurationError, match="Did you mean 'cuda'"):
        SegmenterConfig(device="cdua")


def test_nnunet_checkpoint_loads_and_code_is_refused(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path, SyntheticModel())
    checkpoint = load_checkpoint(folder / "fold_all" / "checkpoint_final.pth")
    assert checkpoint.trainer_name == "nnUNetTrainer"
    assert checkpoint.inference_allowed_mirroring_axes == (0, 1, 2)
    assert checkpoint.configuration == "3d_fullres"
    evil = tmp_path / "evil.pth"
    torch.save({"network_weights": {}, "x": _Payload()}, evil)
    with pytest.raises(ModelError, match="refusing to load"):
        load_checkpoint(evil)


@pytest.mark.parametrize(
    ("spacing", "new_shape"), [((2.0, 1.0, 1.0), (27, 20, 17)), ((5.0, 1.0, 1.0), (67, 20, 17))]
)
@pytest.mark.parametrize("order", [1, 3])
def test_resampling_matches_nnunet(
    spacing: tuple[float, ...], new_shape: tuple[int, ...], order: int
) -> None:
    resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    data = (gaussian_filter(rng.normal(size=(1, 20, 30, 25)), (0, 1, 2, 2)) * 100).astype(
        np.float32
    )
    target = (1.5, 1.5, 1.5)
    reference = resampling.resample_data_or_seg_to_shape(
        data,
        new_shape,
        spacing,
        target,
        is_seg=False,
        order=order,
        order_z=0,
        force_separate_z=None,
    )
    ours = resample(
        torch.from_numpy(data), new_shape, spacing, target, ResamplingSpec(order, 0, None)
    ).numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-3


def test_submit_returns_futures_and_memory_bound_gives_clear_error(tmp_path: Path) -> None:
    folder = make_model_folder(
        tmp_path, SyntheticModel(spacing=(5.0, 3.0, 3.2), patch_size=(16, 16, 16))
    )
    model = load_model(folder)
    volumes = [
        volume_from_phantom(
            PhantomOptions(seed=s, shape=(20, 32, 36), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
        )
        for s in (0, 1, 2)
    ]
    with Segmenter(model, SegmenterConfig(batch_size=4, max_series_in_flight=2)) as segmenter:
        futures = [segmenter.submit(v) for v in volumes]
        results = [f.result() for f in futures]
        single = segmenter.segment(volumes[1])
    for volume, maps in zip(volumes, results, strict=True):
        assert maps[0].array.shape == volume.shape
    assert np.array_equal(results[1][0].array, single[0].array)
    with Segmenter(model, SegmenterConfig(memory_limit_gb=1e-6)) as segmenter:
        with pytest.raises(InferenceError, match="memory_limit_gb"):
            segmenter.segment(volumes[0])
