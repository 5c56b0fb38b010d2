"""nnU-Net ResEnc result folders with random weights: CADS's architecture at CADS's spacing.

CADS's 9 tasks are nnU-Net v2 ``nnUNetResEncUNetLPlans`` models at 1.5 mm. nnU-Net's
``nnUNetPlannerResEncL`` (``residual_encoder_unet_planners.py``, nnunetv2 2.x) gives a 1.5 mm
isotropic CT dataset (median shape 200-300 voxels per axis) a 192 x 192 x 192 patch and a
ResidualEncoderUNet of 6 stages: features ``min(320, 32 * 2**i)``, residual blocks
``(1, 3, 4, 6, 6, 6)`` in the encoder, one convolution per decoder stage, 3x3x3 kernels,
stride 2 on every axis below the first stage (102 million parameters). :data:`RESENC_L_CT_1P5MM`
is that plan; :func:`resenc_plan` derives the same topology for another patch size or a
narrower network (``base_features``), for tests.

:func:`make_resenc_folder` writes the folder with
:func:`omas_idc.engine.synthetic.make_model_folder` (``dataset.json``, ``plans.json`` in
nnU-Net's format), puts the plan's architecture into
``plans.json`` (the synthetic model doubles its features up to 4x and has 2 blocks per stage)
and saves a checkpoint of that network with He-initialised random weights.
:func:`make_cads_like_folders` does it for CADS's task ids, trainer, plans names and label
lists (from the ``cads`` card), so that ``load_model("cads", weights_dir=root)`` loads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError

__all__ = [
    "RESENC_L_CT_1P5MM",
    "ResEncPlan",
    "cads_label_names",
    "make_cads_like_folders",
    "make_resenc_folder",
    "resenc_plan",
]

#: nnU-Net's ResEnc planners: encoder blocks per stage (``UNet_blocks_per_stage_encoder``).
_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
#: nnU-Net's ``UNet_featuremap_min_edge_length``: no pooling below 4 voxels (8 before a pool).
_MIN_EDGE = 4


@dataclass(frozen=True)
class ResEncPlan:
    """The ``3d_fullres`` patch and ResidualEncoderUNet topology of a ResEnc plan.

    Attributes
    ----------
    patch_size
        Voxels of one sliding-window tile (array order).
    features_per_stage
        Convolution channels of each encoder stage.
    n_blocks_per_stage
        Residual blocks of each encoder stage.
    strides
        Downsampling of each stage (the first is ``(1, 1, 1)``).
    """

    patch_size: tuple[int, int, int]
    features_per_stage: tuple[int, ...]
    n_blocks_per_stage: tuple[int, ...]
    strides: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.features_per_stage)
        if not n == len(self.n_blocks_per_stage) == len(self.strides) or n < 2:
            raise ConfigurationError(
                "a ResEnc plan needs one feature count, block count and stride per stage "
                f"(at least 2 stages); got {self}"
            )

    @property
    def n_stages(self) -> int:
        """Encoder stages."""
        return len(self.features_per_stage)

    def arch_kwargs(self) -> dict[str, Any]:
        """The topology entries of ``plans.json``'s ``arch_kwargs`` (nnU-Net's names)."""
        n = self.n_stages
        return {
            "n_stages": n,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [[3, 3, 3]] * n,
            "strides": [list(s) for s in self.strides],
            "n_blocks_per_stage": list(self.n_blocks_per_stage),
            "n_conv_per_stage_decoder": [1] * (n - 1),
        }


def resenc_plan(
    patch_size: tuple[int, int, int], base_features: int = 32, max_features: int = 320
) -> ResEncPlan:
    """nnU-Net's ResEnc topology for an isotropic ``patch_size``.

    Pools (stride 2) on every axis while each pooled axis keeps at least 4 voxels, as nnU-Net's
    ``get_pool_and_conv_props`` does for isotropic spacing; features ``min(max_features,
    base_features * 2**i)``; encoder blocks ``(1, 3, 4, 6, 6, ...)``.

    Parameters
    ----------
    patch_size
        Tile size; every axis must be divisible by the same power of two.
    base_features, max_features
        nnU-Net's 32 and 320 for 3D; smaller for fast tests.

    Raises
    ------
    ConfigurationError
        If the axes do not allow the same number of poolings (an anisotropic patch).
    """
    pools = []
    for size in patch_size:
        count = 0
        while size % 2 == 0 and size // 2 >= _MIN_EDGE:
            size //= 2
            count += 1
        pools.append(count)
    if len(set(pools)) != 1 or pools[0] == 0:
        raise ConfigurationError(
            f"patch {patch_size} gives {pools} poolings per axis; use an isotropic patch whose "
            "axes are equal multiples of a power of two (e.g. 192 x 192 x 192)"
        )
    n = pools[0] + 1
    return ResEncPlan(
        patch_size=patch_size,
        features_per_stage=tuple(min(max_features, base_features * 2**i) for i in range(n)),
        n_blocks_per_stage=_BLOCKS[:n],
        strides=((1, 1, 1),) + ((2, 2, 2),) * (n - 1),
    )


#: CADS's networks: nnUNetResEncUNetLPlans ``3d_fullres`` for 1.5 mm CT (see the module docstring).
RESENC_L_CT_1P5MM = resenc_plan((192, 192, 192))


def make_resenc_folder(root: str | Path, spec: SyntheticModel, plan: ResEncPlan) -> Path:
    """Write an nnU-Net result folder whose network has ``plan``'s topology, random weights.

    Parameters
    ----------
    root
        Where ``Dataset{id}_{name}/{trainer}__{plans}__3d_fullres`` is created.
    spec
        Everything else (labels, spacing, names, normalisation, seed, folds); its
        ``architecture`` is taken as ``"resenc"`` and its ``patch_size`` as the plan's.

    Returns
    -------
    pathlib.Path
        The result folder.
    """
    import torch

    from omas_idc.engine.modelfolder import ModelConfiguration, ResamplingSpec
    from omas_idc.engine.network import build_network

    folds = spec.folds
    spec = replace(spec, architecture="resenc", patch_size=plan.patch_size, folds=())
    folder = make_model_folder(root, spec)
    plans = json.loads((folder / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config["architecture"]["arch_kwargs"].update(plan.arch_kwargs())
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    arch = config["architecture"]
    configuration = ModelConfiguration(
        name="3d_fullres",
        patch_size=plan.patch_size,
        spacing=spec.spacing,
        normalization="CTNormalization",
        use_mask_for_norm=False,
        data_resampling=ResamplingSpec(),
        probability_resampling=ResamplingSpec(order=1),
        network_class=arch["network_class_name"],
        network_kwargs=arch["arch_kwargs"],
        network_kwargs_import=tuple(arch["_kw_requires_import"]),
    )
    generator = torch.Generator().manual_seed(spec.seed)
    for fold in folds:
        network = build_network(configuration, len(spec.labels) + 1)
        with torch.no_grad():
            for name, param in network.named_parameters():
                if param.ndim > 1:  # He initialisation, as nnU-Net's trainer
                    fan_in = param[0].numel()
                    noise = torch.randn(param.shape, generator=generator)
                    param.copy_(noise * (2.0 / fan_in) ** 0.5)
                elif name.endswith("weight"):
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
                else:
                    param.copy_(0.1 * torch.randn(param.shape, generator=generator))
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(
            {
                "network_weights": network.state_dict(),
                "trainer_name": spec.trainer_name,
                "init_args": {"configuration": "3d_fullres"},
                "inference_allowed_mirroring_axes": spec.mirror_axes,
            },
            folder / f"fold_{fold}" / "checkpoint_final.pth",
        )
    return folder


def cads_label_names() -> dict[str, list[str]]:
    """CADS task id -> its label names in label order (the ``cads`` card's label table)."""
    from omas_idc.engine.card import load_card

    rows: dict[str, list[tuple[int, str]]] = {}
    for row in load_card("cads").labels:
        rows.setdefault(row.task, []).append((row.label, row.label_name))
    return {task: [name for _, name in sorted(labels)] for task, labels in rows.items()}


def make_cads_like_folders(
    root: str | Path,
    tasks: Sequence[str] | None = None,
    plan: ResEncPlan = RESENC_L_CT_1P5MM,
    spacing_mm: float = 1.5,
) -> list[Path]:
    """CADS's task folders with ``plan``'s network and random weights, under ``root``.

    Each task gets CADS's dataset id and name, trainer (``nnUNetTrainerNoMirroring``), plans
    name, its label names and a CT normalisation of its own (so that each task is its own group
    of the segmenter, as CADS's datasets are).

    Parameters
    ----------
    root
        The ``weights_dir`` to give ``load_model("cads", ...)``.
    tasks
        CADS task ids (all 9 when ``None``).
    plan
        The network (CADS's ResEnc-L by default; a smaller one for fast tests).
    spacing_mm
        The model spacing (CADS's 1.5 mm; the cads card resamples to 1.5 mm before it).

    Raises
    ------
    ConfigurationError
        For a task id the cads card does not have.
    """
    from omas_idc.choices import choose
    from omas_idc.engine.card import load_card

    card = load_card("cads")
    names = cads_label_names()
    chosen = [choose(t, sorted(names), "CADS task") for t in tasks] if tasks else sorted(names)
    folders = []
    for i, task_id in enumerate(chosen):
        task = card.task(task_id)
        spec = SyntheticModel(
            dataset_id=int(task_id),
            dataset_name=task.dataset.split("_", 1)[1],
            labels=tuple(names[task_id]),
            trainer_name=task.trainer,
            plans_name=task.plans,
            spacing=(spacing_mm, spacing_mm, spacing_mm),
            mirror_axes=None,
            intensity=(40.0 + i, 250.0, -1000.0, 1500.0),
            seed=i,
        )
        folders.append(make_resenc_folder(root, spec, plan))
    return folders
