"""nnU-Net's own predictor as the engine's reference (tests and benchmarks).

:func:`nnunet_predictor` makes nnU-Net's ``nnUNetPredictor`` for a result folder;
:func:`float32_accumulators` removes its float16 sums. nnunetv2 is a test-only dependency of
omas-idc: this module imports it on use.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["float32_accumulators", "nnunet_predictor"]


def nnunet_predictor(
    folder: str | Path,
    folds: Sequence[str] = ("all",),
    *,
    mirroring: bool = False,
    tile_step_size: float = 0.5,
    device: str | torch.device = "cpu",
) -> Any:
    """nnU-Net's own ``nnUNetPredictor`` for a result folder, initialised from its files.

    As ``initialize_from_trained_model_folder`` does, but through ``manual_initialization``:
    nnU-Net's trainer-class lookup imports every trainer module, including the Primus ones that
    need timm (and torchvision), which omas-idc does not install. On CUDA the whole prediction
    stays on the device, as nnU-Net's default there.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from omas_idc.engine.checkpoint import load_checkpoint

    folder = Path(folder)
    target = torch.device(device)
    dataset_json = load_json(str(folder / "dataset.json"))
    plans = PlansManager(load_json(str(folder / "plans.json")))
    # The engine's own loader: weights only, never code (omas_idc.engine.checkpoint).
    checkpoints = [
        load_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pth") for fold in folds
    ]
    parameters = [dict(c.network_weights) for c in checkpoints]
    checkpoint = checkpoints[-1]
    config = plans.get_configuration(checkpoint.configuration)
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
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=target.type == "cuda",
        device=target,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans,
        config,
        parameters,
        dataset_json,
        checkpoint.trainer_name,
        checkpoint.inference_allowed_mirroring_axes,
    )
    return predictor


class _TorchWithFloat32Accumulators:
    """``torch`` as nnU-Net's predictor module sees it, with float32 instead of float16 zeros.

    The module allocates exactly two float16 tensors, with ``torch.zeros``: the Gaussian-weighted
    logit sums and the weight sums of the sliding window.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def zeros(*size: Any, dtype: Any = None, **kwargs: Any) -> Any:
        if dtype == torch.float16:
            dtype = torch.float32
        return torch.zeros(*size, dtype=dtype, **kwargs)


@contextlib.contextmanager
def float32_accumulators() -> Iterator[None]:
    """nnU-Net's predictor, unchanged except that it sums tile logits in float32 (as we do).

    nnU-Net accumulates ``logits * gaussian`` and ``gaussian`` in float16. Towards a tile's
    faces the Gaussian's weights fall to float16 subnormals (its corners to 6e-8, the smallest),
    so where a single tile covers a voxel, at the image's faces and corners, the weighted logits
    are rounded to a few steps of 6e-8 and the quotient can be off by 0.5; the low-index faces
    most, since the Gaussian peaks at ``size // 2`` (one voxel nearer the high face). Voxels
    with close logits there, like air under a barely trained network, flip. Our engine sums in
    float32; against this reference the window logic (padding, tile positions, Gaussian, crop)
    is compared without that rounding, and the label maps agree voxel for voxel.
    """
    module = importlib.import_module("nnunetv2.inference.predict_from_raw_data")
    # setattr: the untyped module does not declare its globals to mypy
    setattr(module, "torch", _TorchWithFloat32Accumulators())  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "torch", torch)  # noqa: B010
