"""Fixtures for the training tests: the packaged demo model and nnU-Net's own predictor."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from omas_idc.engine.nnunet_reference import (
    float32_accumulators as float32_accumulators_of_nnunet,
)

if TYPE_CHECKING:
    from omas_idc.volume import CTVolume

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def demo_card() -> Path:
    """The packaged demo model's card (its nnU-Net folder lies beside it)."""
    from omas_idc.models import demo_card_path

    return demo_card_path()


@pytest.fixture(scope="session")
def nnunet_predictor() -> Any:
    """A function: result folder -> nnU-Net's own predictor for it."""
    return _nnunet_predictor_for


@pytest.fixture(scope="session")
def nnunet_segment() -> Any:
    """A function: (result folder, CTVolume) -> nnU-Net's label map on the volume's grid.

    nnU-Net is given the volume in RAS-canonical (S, A, R) order with its spacing, as its
    SimpleITK reader would give it a NIfTI export of the series, and its label map is turned
    back to the source orientation. With ``float32_accumulators=True`` nnU-Net sums the
    sliding window's logits in float32, as our engine does, instead of float16.
    """
    return _nnunet_segment


def _nnunet_segment(
    folder: Path, volume: CTVolume, float32_accumulators: bool = False
) -> npt.NDArray[np.integer]:
    from omas_idc.engine.preprocessing import CanonicalOrientation

    predictor = _nnunet_predictor_for(folder)
    orientation = CanonicalOrientation.of(volume.geometry)
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu).float()).numpy()[None]
    properties = {"spacing": list(orientation.spacing)}
    precision = (
        float32_accumulators_of_nnunet() if float32_accumulators else contextlib.nullcontext()
    )
    with precision:
        labels = predictor.predict_single_npy_array(canonical, properties)
    return np.asarray(orientation.to_source(labels))


def _nnunet_predictor_for(folder: Path, fold: str = "all") -> Any:
    """nnU-Net's own ``nnUNetPredictor`` for a result folder, initialised from its files.

    As ``initialize_from_trained_model_folder`` does, but through ``manual_initialization``:
    nnU-Net's trainer-class lookup imports every trainer module, including ones that need
    timm (and torchvision), which we do not install.
    """
    nnunet = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = load_json(str(folder / "dataset.json"))
    plans = PlansManager(load_json(str(folder / "plans.json")))
    checkpoint = torch.load(
        folder / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu", weights_only=False
    )
    config = plans.get_configuration(checkpoint["init_args"]["configuration"])
    network = get_network_from_plans(
        config.network_arch_class_name,
        config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans, config, dataset_json),
        plans.get_label_manager(dataset_json).num_segmentation_heads,
        allow_init=False,
        deep_supervision=False,
    )
    network.load_state_dict(checkpoint["network_weights"])
    predictor = nnunet.nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans,
        config,
        [checkpoint["network_weights"]],
        dataset_json,
        checkpoint["trainer_name"],
        checkpoint.get("inference_allowed_mirroring_axes"),
    )
    return predictor
