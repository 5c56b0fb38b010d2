"""``omas-idc train --config CONFIG.toml`` end to end, with a user's ResEnc ``plans.json``.

A user who planned with nnU-Net's residual-encoder planner brings the plans; the command
trains a few iterations on NIfTI and phantom datasets, writes an nnU-Net result folder named
after those plans, and the engine loads it and segments a phantom.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from omas_idc.engine.card import load_card  # noqa: E402
from omas_idc.engine.model import load_model  # noqa: E402
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig  # noqa: E402
from omas_idc.nifti import write_nifti  # noqa: E402
from omas_idc.phantom import PhantomOptions, render_phantom  # noqa: E402
from omas_idc.train.evaluate import volume_from_array  # noqa: E402

SPACING = 12.0
PLANS_NAME = "nnUNetResEncUNetMPlans"


def _resenc_plans() -> dict[str, Any]:
    """A small plans.json in the form nnU-Net's ResEnc planner writes (2d and 3d_fullres)."""

    def architecture(conv: str, kernels: list[list[int]], strides: list[list[int]]) -> Any:
        n = len(strides)
        return {
            "network_class_name": (
                "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
            ),
            "arch_kwargs": {
                "n_stages": n,
                "features_per_stage": [4 * 2**i for i in range(n)],
                "conv_op": conv,
                "kernel_sizes": kernels,
                "strides": strides,
                "n_blocks_per_stage": [1, 2, 2][:n],
                "n_conv_per_stage_decoder": [1] * (n - 1),
                "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        }

    resampling = {
        f"resampling_fn_{key}": "resample_data_or_seg_to_shape" for key in ("data", "seg")
    } | {"resampling_fn_probabilities": "resample_data_or_seg_to_shape"}
    common = {
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "batch_dice": True,
        **resampling,
    }
    return {
        "dataset_name": "Dataset321_UserPlanned",
        "plans_name": PLANS_NAME,
        "original_median_spacing_after_transp": [SPACING] * 3,
        "original_median_shape_after_transp": [32, 24, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "2d": {
                **common,
                "data_identifier": f"{PLANS_NAME}_2d",
                "patch_size": [24, 32],
                "spacing": [SPACING, SPACING],
                "architecture": architecture(
                    "torch.nn.modules.conv.Conv2d", [[3, 3], [3, 3]], [[1, 1], [2, 2]]
                ),
            },
            "3d_fullres": {
                **common,
                "data_identifier": f"{PLANS_NAME}_3d_fullres",
                "patch_size": [16, 16, 16],
                "spacing": [SPACING] * 3,
                "architecture": architecture(
                    "torch.nn.modules.conv.Conv3d",
                    [[3, 3, 3]] * 3,
                    [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                ),
            },
        },
        "experiment_planner_used": "nnUNetPlannerResEncM",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 0.0, "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0}
        },
    }


def _options(seed: int, **extra: Any) -> PhantomOptions:
    return PhantomOptions(
        seed=seed,
        shape=(32, 24, 32),
        pixel_spacing=(SPACING, SPACING),
        slice_spacing=SPACING,
        **extra,
    )


def _write_nifti_dataset(folder: Path, seeds: tuple[int, ...]) -> dict[int, str]:
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir(parents=True)
    values: dict[int, str] = {}
    for seed in seeds:
        geometry, hu, labels, structures = render_phantom(_options(seed))
        write_nifti(
            folder / "imagesTr" / f"case{seed}_0000.nii.gz",
            np.rint(hu).astype(np.int16),
            geometry,
        )
        write_nifti(folder / "labelsTr" / f"case{seed}.nii.gz", labels, geometry)
        values = {i + 1: s.name for i, s in enumerate(structures)}
    return {value: name for value, name in values.items() if name in ("liver", "spleen")}


CONFIG = """\
[model]
name = "user-resenc"
dataset_id = 321
dataset_name = "UserPlanned"
labels = ["liver", "spleen", "kidney_left", "kidney_right"]
output = "model"

[plans]
file = "plans.json"

[training]
iterations = 3
optimizer = "adamw"
learning_rate = 0.001
threads = 1
checkpoint_every = 2

[[datasets]]
name = "livers_and_spleens"
format = "nifti"
images = "raw/imagesTr"
labels = "raw/labelsTr"
label_values = {label_values}

[[datasets]]
name = "kidneys"
format = "phantom"
structures = ["kidney_left", "kidney_right"]
phantom_seeds = [53]
phantom_spacing = 12.0
phantom_shape = [32, 24, 32]
"""


def test_train_command_with_a_users_resenc_plans_writes_a_model_the_engine_runs(
    tmp_path: Path,
) -> None:
    values = _write_nifti_dataset(tmp_path / "raw", (51, 52))
    (tmp_path / "plans.json").write_text(json.dumps(_resenc_plans(), indent=2))
    table = "{ " + ", ".join(f'{k} = "{v}"' for k, v in values.items()) + " }"
    (tmp_path / "train.toml").write_text(CONFIG.replace("{label_values}", table))
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))

    result = subprocess.run(
        [script, "train", "--config", str(tmp_path / "train.toml")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    folder = (
        tmp_path
        / "model"
        / "Dataset321_UserPlanned"
        / (f"nnUNetTrainerNoMirroring__{PLANS_NAME}__3d_fullres")
    )
    assert str(folder) in result.stdout.replace("\n", "")
    plans = json.loads((folder / "plans.json").read_text())
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    assert architecture == _resenc_plans()["configurations"]["3d_fullres"]["architecture"]
    # the normalisation is the data's, not the placeholder the user's file held
    properties = plans["foreground_intensity_properties_per_channel"]["0"]
    assert properties["percentile_99_5"] > 100.0
    dataset = json.loads((folder / "dataset.json").read_text())
    assert list(dataset["labels"]) == [
        "background",
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
    ]

    model = load_model(tmp_path / "model" / "card.json")
    network = model.tasks[0].networks[0]
    assert type(network).__name__ == "ResidualEncoderUNet"
    # The export is a model family: its card names its label table, rows -> catalog structures.
    rows = load_card(tmp_path / "model" / "card.json").labels
    assert [(r.task, r.label, r.structure) for r in rows] == [
        (str(model.tasks[0].card.id), value, name)
        for value, name in enumerate(["liver", "spleen", "kidney_left", "kidney_right"], 1)
    ]
    geometry, hu, _labels, _structures = render_phantom(
        _options(54, orientation="axial", patient_position="FFS")
    )
    volume = volume_from_array(hu, geometry)
    with Segmenter(model, SegmenterConfig(threads=1)) as segmenter:
        (labelmap,) = segmenter.segment(volume)
    assert labelmap.model == "user-resenc"
    assert labelmap.array.shape == hu.shape
    assert dict(labelmap.labels) == {1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right"}
    assert set(np.unique(labelmap.array)) <= {0, 1, 2, 3, 4}
