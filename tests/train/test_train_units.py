"""Units of training: losses, nnU-Net's intensity statistics, planner, config, augmentation,
patch sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.errors import ConfigurationError
from omas_idc.train.config import PlansConfig, load_train_config

torch = pytest.importorskip("torch")

from omas_idc.train.augment import AugmentationParams, augment_patch  # noqa: E402
from omas_idc.train.data import TrainingCase  # noqa: E402
from omas_idc.train.intensity import foreground_intensity_properties  # noqa: E402
from omas_idc.train.losses import exclusion_loss, marginal_loss, plain_loss  # noqa: E402
from omas_idc.train.planner import configuration_from_plans, make_plans  # noqa: E402
from omas_idc.train.sampling import PatchSampler  # noqa: E402


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 6, 6, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6, 6), generator=g)
    return logits, target


def test_marginal_loss_equals_plain_loss_when_everything_is_annotated() -> None:
    logits, target = _batch()
    annotated = torch.ones(2, 4, dtype=torch.bool)
    absent = torch.zeros(2, 4, dtype=torch.bool)
    assert torch.allclose(
        marginal_loss(logits, target, annotated, absent), plain_loss(logits, target), atol=1e-6
    )


def test_marginal_loss_does_not_punish_unannotated_structures_on_background() -> None:
    logits, target = _batch(1)
    target = torch.where(target == 3, torch.zeros_like(target), target)  # 3 is unannotated
    annotated = torch.tensor([[True, True, True, False]] * 2)
    absent = torch.zeros(2, 4, dtype=torch.bool)
    loss = marginal_loss(logits, target, annotated, absent)
    loss.backward()
    # moving probability from background to the unannotated class 3 changes nothing
    shifted = logits.detach().clone()
    shifted[:, 3] = torch.logaddexp(shifted[:, 0], shifted[:, 3])
    shifted[:, 0] = -30.0
    moved = marginal_loss(shifted, target, annotated, absent)
    assert abs(float(moved) - float(loss.detach())) < 1e-4
    # while plain cross-entropy punishes it
    assert float(plain_loss(shifted, target)) > float(plain_loss(logits.detach(), target)) + 1.0


def test_structures_declared_absent_are_pushed_down_everywhere() -> None:
    logits, target = _batch(2)
    target = torch.where(target == 3, torch.zeros_like(target), target)
    annotated = torch.tensor([[True, True, True, False]] * 2)
    unknown = torch.zeros(2, 4, dtype=torch.bool)
    absent = torch.tensor([[False, False, False, True]] * 2)
    for mask in (unknown, absent):
        logits.grad = None
        marginal_loss(logits, target, annotated, mask, dice_weight=0.0).backward()
        assert logits.grad is not None
        grad = logits.grad[:, 3][target == 0]
        if mask is unknown:
            # merged with background: descent never lowers class 3 where the label says 0
            assert float(grad.max()) <= 0.0
        else:
            # known absent: descent lowers class 3 at every background voxel
            assert float(grad.min()) > 0.0
    exc = exclusion_loss(logits, target, annotated, absent)
    assert 0.0 < float(exc.detach()) < 1.0


def test_intensity_properties_are_nnunets(tmp_path: Path) -> None:
    fingerprint = pytest.importorskip(
        "nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor"
    )
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(3):
        image = rng.normal(40, 200, size=(20, 24, 28)).astype(np.float32)
        labels = (rng.random((20, 24, 28)) < 0.2).astype(np.uint8)
        cases.append((image, labels))
    total = 30_000
    ours = foreground_intensity_properties(cases, total_samples=total)
    extractor = fingerprint.DatasetFingerprintExtractor
    samples = [
        extractor.collect_foreground_intensities(labels[None], image[None], num_samples=total // 3)[
            0
        ][0]
        for image, labels in cases
    ]
    values = np.concatenate(samples)
    p005, p995 = np.percentile(values, (0.5, 99.5))
    assert ours["mean"] == pytest.approx(float(np.mean(values)), rel=1e-6)
    assert ours["std"] == pytest.approx(float(np.std(values)), rel=1e-6)
    assert ours["percentile_00_5"] == pytest.approx(float(p005), rel=1e-6)
    assert ours["percentile_99_5"] == pytest.approx(float(p995), rel=1e-6)


def test_planner_gives_a_network_the_engine_builds() -> None:
    from omas_idc.engine.network import build_network

    plans = make_plans(
        PlansConfig(spacing=(5.0, 1.5, 1.5), patch_size=(20, 100, 90), features=4, max_features=16),
        dataset_name="Dataset999_T",
        spacings=[(5.0, 1.5, 1.5)],
        shapes=[(40, 200, 200)],
        intensity={"mean": 0, "std": 1, "percentile_00_5": -1, "percentile_99_5": 1},
    )
    config = configuration_from_plans(plans)
    arch = config.network_kwargs
    strides = np.asarray(arch["strides"])
    assert strides[:, 0].prod() < strides[:, 1].prod()  # the thick axis is pooled less
    assert arch["kernel_sizes"][0][0] == 1  # and starts with in-plane kernels
    for axis in range(3):
        assert config.patch_size[axis] % strides[:, axis].prod() == 0
    network = build_network(config, 3)
    out = network(torch.zeros(1, 1, *config.patch_size))
    assert tuple(out.shape) == (1, 3, *config.patch_size)


def test_config_toml_and_helpful_errors(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text(
        """
[model]
name = "abdomen"
output = "out"

[plans]
spacing = [3.0, 3.0, 3.0]

[training]
iterations = 10

[[datasets]]
name = "livers"
format = "nifti"
images = "raw/imagesTr"
labels = "raw/labelsTr"
label_values = { 1 = "liver", 2 = "spleen" }
"""
    )
    config = load_train_config(path)
    assert config.labels == ("liver", "spleen")
    assert config.model.output == tmp_path / "out"
    assert config.datasets[0].label_values == {1: "liver", 2: "spleen"}
    path.write_text(path.read_text().replace("iterations = 10", "iteratons = 10"))
    with pytest.raises(ConfigurationError, match="Did you mean 'iterations'"):
        load_train_config(path)
    path.write_text(path.read_text().replace("iteratons", "loss = 'marginl'\niterations"))
    with pytest.raises(ConfigurationError, match="Did you mean 'marginal'"):
        load_train_config(path)


def test_augmentation_without_spatial_change_is_an_exact_crop() -> None:
    params = AugmentationParams(p_spatial=0.0, p_noise=0, p_brightness=0, p_contrast=0, p_gamma=0)
    patch = (8, 10, 12)
    source = params.source_size(patch)
    data = torch.arange(float(np.prod(source))).reshape(1, *source)
    labels = (data[0] % 7).to(torch.uint8)
    out, seg = augment_patch(data, labels, patch, params, np.random.default_rng(0))
    offset = [(s - p) // 2 for s, p in zip(source, patch, strict=True)]
    region = tuple(slice(o, o + p) for o, p in zip(offset, patch, strict=True))
    assert torch.equal(out[0], data[0][region])
    assert torch.equal(seg, labels[region])
    # a spatial transform with identity parameters samples the same voxels
    identity = AugmentationParams(
        p_spatial=1.0,
        rotation_degrees=0,
        tilt_degrees=0,
        scale=(1.0, 1.0),
        p_noise=0,
        p_brightness=0,
        p_contrast=0,
        p_gamma=0,
    )
    out2, seg2 = augment_patch(data, labels, patch, identity, np.random.default_rng(0))
    assert torch.allclose(out2[0], data[0][region], atol=1e-3)
    assert torch.equal(seg2, labels[region])


def test_patches_reach_every_voxel_and_place_structures_anywhere_in_the_patch() -> None:
    # A volume as long as the region spatial augmentation cuts (1.5 x the patch) along one
    # axis: unless the region may reach past the volume (nnU-Net's need_to_pad), every patch
    # is cut at the same place along that axis, and a network learns where in the patch a
    # structure lies instead of what it looks like (it then misses it in sliding windows).
    params = AugmentationParams(p_spatial=0.0, p_noise=0, p_brightness=0, p_contrast=0, p_gamma=0)
    patch = (8, 8, 8)
    shape = (20, params.source_size(patch)[1], 20)
    data = 1.0 + torch.arange(float(np.prod(shape))).reshape(1, *shape)  # 0 is padding
    labels = torch.zeros(shape, dtype=torch.uint8)
    labels[8:12, 4:8, 8:12] = 1
    annotated = np.array([True, True])
    case = TrainingCase(
        name="box",
        dataset="d",
        data=data,
        labels=labels,
        annotated=annotated,
        absent=np.zeros(2, dtype=bool),
        class_locations={1: np.argwhere(labels.numpy() == 1).astype(np.int64)},
    )
    sampler = PatchSampler([case], patch, 4, 0.5, np.random.default_rng(0), params)
    origins: set[tuple[int, ...]] = set()
    structure_offsets: set[tuple[int, ...]] = set()
    for _ in range(50):
        batch = sampler.sample()
        for values, target in zip(batch.data, batch.target, strict=True):
            origins.add(tuple(int(v) for v in np.unravel_index(int(values[0, 0, 0, 0]) - 1, shape)))
            if target.any():
                structure_offsets.add(tuple(int(v) for v in target.nonzero().min(0).values))
    for axis in range(3):
        # the patch reaches both ends of the volume ...
        reached = {origin[axis] for origin in origins}
        assert min(reached) == 0
        assert max(reached) == shape[axis] - patch[axis]
        # ... and the structure is seen at many places of the patch
        assert len({offset[axis] for offset in structure_offsets}) >= 4
