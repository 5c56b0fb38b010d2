"""Fixtures for the engine tests: synthetic nnU-Net folders, CTVolumes, nnU-Net's predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.geometry import VolumeGeometry
from omas_idc.testing.phantom import PhantomOptions, render_phantom
from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

torch = pytest.importorskip("torch")


def volume_from_phantom(options: PhantomOptions) -> CTVolume:
    """A CTVolume straight from the rendered phantom (no DICOM round trip)."""
    geometry, hu, _labels, _structures = render_phantom(options)
    return volume_from_array(np.round(hu).astype(np.int16), geometry)


def volume_from_array(hu: np.ndarray, geometry: VolumeGeometry) -> CTVolume:
    """A CTVolume with dummy references and header around an int16 array."""
    refs = tuple(
        SourceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i + 1}") for i in range(hu.shape[0])
    )
    header = SeriesHeader(
        series_instance_uid="1.2.3.4", study_instance_uid="1.2.3", frame_of_reference_uid="1.2.5"
    )
    return CTVolume(hu=hu, geometry=geometry, source_refs=refs, header=header)


def nnunet_predictor(
    folder: Path, folds: tuple[str, ...], mirroring: bool = False, tile_step_size: float = 0.5
):  # type: ignore[no-untyped-def]
    """nnU-Net's own nnUNetPredictor for a result folder.

    Initialised like ``initialize_from_trained_model_folder`` but through
    ``manual_initialization``: nnU-Net's trainer-class lookup imports every trainer module,
    including the Primus ones that need timm (and torchvision), which we do not install.
    """
    nnunet = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = load_json(str(folder / "dataset.json"))
    plans = PlansManager(load_json(str(folder / "plans.json")))
    parameters = []
    for fold in folds:
        checkpoint = torch.load(
            folder / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu", weights_only=False
        )
        parameters.append(checkpoint["network_weights"])
        trainer = checkpoint["trainer_name"]
        configuration = checkpoint["init_args"]["configuration"]
        axes = checkpoint.get("inference_allowed_mirroring_axes")
    config = plans.get_configuration(configuration)
    network = get_network_from_plans(
        config.network_arch_class_name,
        config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans, config, dataset_json),
        plans.get_label_manager(dataset_json).num_segmentation_heads,
        allow_init=False,
        deep_supervision=False,
    )
    network.load_state_dict(parameters[0])
    predictor = nnunet.nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.manual_initialization(network, plans, config, parameters, dataset_json, trainer, axes)
    return predictor


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    """Dice of one label between two label maps (1.0 where absent from both)."""
    x, y = a == label, b == label
    total = int(x.sum() + y.sum())
    return 1.0 if total == 0 else 2.0 * int((x & y).sum()) / total
