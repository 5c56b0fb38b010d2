"""Interrupted and resumed training ends with the weights of a straight run; export format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from omas_idc.engine.checkpoint import load_checkpoint  # noqa: E402
from omas_idc.engine.model import load_model  # noqa: E402
from omas_idc.train.demo import demo_config  # noqa: E402
from omas_idc.train.export import export_model  # noqa: E402
from omas_idc.train.trainer import Trainer, prepare_data  # noqa: E402

DATASETS = {
    "a": ((11, 12), ("liver", "spleen")),
    "b": ((21,), ("spleen", "kidney_left", "kidney_right")),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("tiny")
    config = demo_config(
        out,
        iterations=8,
        spacing=12.0,
        shape=(32, 24, 32),
        patch_size=(16, 16, 16),
        datasets=DATASETS,
        structures=("liver", "spleen", "kidney_left", "kidney_right"),
        seed=3,
    )
    config = replace(config, training=replace(config.training, checkpoint_every=2))
    return config, prepare_data(config, intensity_samples=20_000)


def test_resumed_training_equals_straight_training(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, data = tiny
    straight = Trainer(data, config.training, tmp_path / "straight")
    straight.fit()

    first = Trainer(data, config.training, tmp_path / "resumed")
    first.fit(stop_after=5)  # killed after iteration 5: the last checkpoint is at 4
    del first
    second = Trainer(data, config.training, tmp_path / "resumed")
    assert second.load_state()
    assert second.iteration == 4
    second.fit()

    assert second.iteration == straight.iteration == 8
    a, b = straight.network.state_dict(), second.network.state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6
    assert second.losses == pytest.approx(straight.losses, abs=1e-6)


def test_resume_refuses_another_runs_checkpoint(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from omas_idc.errors import TrainingError

    config, data = tiny
    Trainer(data, config.training, tmp_path).fit(stop_after=2)
    other = replace(config.training, seed=99)
    with pytest.raises(TrainingError, match="another run"):
        Trainer(data, other, tmp_path).load_state()


def test_export_is_an_nnunet_result_folder_the_engine_loads(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, data = tiny
    trainer = Trainer(data, config.training, tmp_path / "run")
    trainer.fit(stop_after=2)
    folder = export_model(trainer, tmp_path / "model", name="tiny", task_id="900")
    assert folder.name == "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {
        "background": 0,
        "liver": 1,
        "spleen": 2,
        "kidney_left": 3,
        "kidney_right": 4,
    }
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["file_ending"] == ".nii.gz"
    checkpoint = load_checkpoint(folder / "fold_all" / "checkpoint_final.pth")  # safe loading
    assert checkpoint.configuration == "3d_fullres"
    assert checkpoint.inference_allowed_mirroring_axes is None
    # the trainer named in the checkpoint is a class nnU-Net has
    import importlib.util

    spec = importlib.util.find_spec(
        "nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring"
    )
    if spec is not None and spec.origin is not None:
        assert f"class {checkpoint.trainer_name}(" in Path(spec.origin).read_text()
    plans = json.loads((folder / "plans.json").read_text())
    properties = plans["foreground_intensity_properties_per_channel"]["0"]
    assert properties["percentile_00_5"] < properties["mean"] < properties["percentile_99_5"]
    model = load_model(tmp_path / "model" / "card.json")
    assert model.card.name == "tiny"
    assert dict(model.tasks[0].folder.labels) == {
        1: "liver",
        2: "spleen",
        3: "kidney_left",
        4: "kidney_right",
    }
    weights = model.tasks[0].networks[0].state_dict()
    for key, value in trainer.network.state_dict().items():
        assert torch.equal(weights[key], value)


def test_exported_folder_segments_like_nnunet_predictor(  # type: ignore[no-untyped-def]
    tiny, tmp_path: Path, nnunet_segment
) -> None:
    pytest.importorskip("nnunetv2")
    import numpy as np

    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
    from omas_idc.phantom import PhantomOptions, render_phantom
    from omas_idc.train.evaluate import dice, volume_from_array

    config, data = tiny
    trainer = Trainer(data, config.training, tmp_path / "run")
    trainer.fit()
    folder = export_model(trainer, tmp_path / "model", name="tiny", task_id="900")
    # another grid, spacing and orientation than the training phantoms: resampling both ways
    geometry, hu, _labels, _structures = render_phantom(
        PhantomOptions(
            seed=901,
            shape=(30, 40, 48),
            pixel_spacing=(8.0, 9.0),
            slice_spacing=10.0,
            patient_position="FFS",
        )
    )
    volume = volume_from_array(hu, geometry)
    with Segmenter(
        load_model(tmp_path / "model" / "card.json"), SegmenterConfig(threads=1)
    ) as ours:
        mine = ours.segment(volume)[0].array
    theirs = nnunet_segment(folder, volume)
    exact = nnunet_segment(folder, volume, float32_accumulators=True)

    assert mine.shape == theirs.shape == exact.shape == hu.shape
    assert len(np.unique(mine)) >= 3  # a label map with structure, not one class everywhere
    # The barely trained network's logits are close in the air around the phantom, where
    # nnU-Net's float16 logit sums flip voxels at the image's faces; summing in float32 as we
    # do, nnU-Net gives our label map voxel for voxel, the faces included.
    faces = np.ones(hu.shape, dtype=bool)
    faces[2:-2, 2:-2, 2:-2] = False
    assert np.mean(mine == exact) >= 0.9999
    assert np.mean((mine == exact)[faces]) >= 0.9995
    for label in range(1, data.num_classes):
        if (mine == label).any() or (theirs == label).any():
            assert dice(mine == label, theirs == label) >= 0.99, label
    assert np.mean(mine == theirs) >= 0.99
