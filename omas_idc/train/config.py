"""Training configuration: frozen dataclasses, loaded from TOML (``omas-idc train --config``).

A configuration declares the model (its name, nnU-Net dataset id and the catalog structures it
segments), the plans (a ``plans.json`` or the parameters of our minimal planner), the training
recipe and the datasets. Each dataset says where its images and labels are and which catalog
structures it annotates; the other structures are treated as unknown in its samples (the
marginal loss, :mod:`omas_idc.train.losses`), or as absent where the dataset lists them in
``absent``.

Example
-------
.. code-block:: toml

    [model]
    name = "my-abdomen"
    dataset_id = 910
    dataset_name = "MyAbdomen"
    output = "models/my-abdomen"

    [plans]
    spacing = [3.0, 3.0, 3.0]
    patch_size = [64, 64, 64]

    [training]
    iterations = 20000
    device = "cuda"

    [[datasets]]
    name = "livers"
    format = "nifti"
    images = "raw/livers/imagesTr"
    labels = "raw/livers/labelsTr"
    label_values = { 1 = "liver" }

    [[datasets]]
    name = "kidneys"
    format = "dicom"
    images = "idc/kidneys/ct"      # one sub-folder per CT series
    labels = "idc/kidneys/seg"     # DICOM SEG files; segments matched by their codes
    structures = ["kidney_left", "kidney_right"]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omas_idc.choices import choose, suggestion
from omas_idc.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ARCHITECTURES",
    "DATASET_FORMATS",
    "LOSSES",
    "DatasetConfig",
    "ModelSpec",
    "PlansConfig",
    "TrainConfig",
    "TrainingConfig",
    "load_train_config",
]

DATASET_FORMATS = ("nifti", "dicom", "phantom")
LOSSES = ("marginal", "plain")
ARCHITECTURES = ("plain", "resenc")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    return choose(value, choices, what)


@dataclass(frozen=True)
class DatasetConfig:
    """One training dataset and the structures it annotates.

    Attributes
    ----------
    name
        A name for logs.
    format
        ``"nifti"`` (nnU-Net raw layout: ``images/{case}_0000.nii.gz``, ``labels/{case}.nii.gz``),
        ``"dicom"`` (``images``: one folder per CT series; ``labels``: DICOM SEG files, matched
        to their series by ReferencedSeriesSequence and to catalog structures by codes) or
        ``"phantom"`` (rendered phantoms, for tests and the demo model).
    images, labels
        Folders (see ``format``); unused for phantoms.
    structures
        Catalog structure names the dataset annotates. For NIfTI, the structures of
        ``label_values`` when empty; for DICOM, every segment found when empty.
    label_values
        NIfTI only: label value in the files -> catalog structure name. Values not listed are
        background (they are not annotated structures of this dataset).
    absent
        Structures known to be absent from every image of the dataset (exclusion); they are
        not merged with background by the marginal loss.
    phantom_seeds, phantom_spacing, phantom_shape
        Phantom only: the seeds to render, the voxel spacing (mm) and the grid (slices, rows,
        columns) of the axial HFS acquisitions.
    """

    name: str
    format: str
    images: Path | None = None
    labels: Path | None = None
    structures: tuple[str, ...] = ()
    label_values: Mapping[int, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    phantom_seeds: tuple[int, ...] = ()
    phantom_spacing: float = 6.0
    phantom_shape: tuple[int, int, int] = (64, 48, 64)

    def __post_init__(self) -> None:
        _choice(self.format, DATASET_FORMATS, "dataset format")
        if self.format in ("nifti", "dicom") and (self.images is None or self.labels is None):
            raise ConfigurationError(
                f"dataset {self.name!r}: {self.format} needs images and labels"
            )
        if self.format == "nifti" and not self.label_values:
            raise ConfigurationError(
                f"dataset {self.name!r}: NIfTI labels need label_values (value -> structure), "
                'e.g. label_values = { 1 = "liver" }'
            )
        if self.format == "phantom" and not self.phantom_seeds:
            raise ConfigurationError(f"dataset {self.name!r}: give phantom_seeds")
        overlap = set(self.absent) & set(self.annotated)
        if overlap:
            raise ConfigurationError(
                f"dataset {self.name!r}: {sorted(overlap)} are both annotated and absent"
            )

    @property
    def annotated(self) -> tuple[str, ...]:
        """The structures this dataset annotates (``structures``, else ``label_values``)."""
        if self.structures:
            return self.structures
        return tuple(dict.fromkeys(self.label_values.values()))


@dataclass(frozen=True)
class PlansConfig:
    """Where the plans come from: a user's ``plans.json``, or our minimal planner.

    Attributes
    ----------
    file
        An nnU-Net ``plans.json``; its ``configuration`` is used as is (spacing, patch size,
        network), only the foreground intensity properties are recomputed.
    configuration
        The configuration of ``file`` to train (``"3d_fullres"``).
    spacing
        Target spacing (mm) of the canonical (S, A, R) array; median of the data when ``None``.
    patch_size
        Patch size in voxels; from the median shape and ``max_patch_voxels`` when ``None``.
    max_patch_voxels
        Voxel budget of an automatic patch.
    architecture
        ``"plain"`` (PlainConvUNet) or ``"resenc"`` (ResidualEncoderUNet).
    features, max_features
        Features of the first stage, doubled per stage up to ``max_features``.
    max_stages
        Upper bound on encoder stages.
    batch_size
        Patches per iteration (recorded in the plans).
    """

    file: Path | None = None
    configuration: str = "3d_fullres"
    spacing: tuple[float, float, float] | None = None
    patch_size: tuple[int, int, int] | None = None
    max_patch_voxels: int = 128**3
    architecture: str = "plain"
    features: int = 32
    max_features: int = 320
    max_stages: int = 6
    batch_size: int = 2

    def __post_init__(self) -> None:
        _choice(self.architecture, ARCHITECTURES, "architecture")
        if self.features < 1 or self.max_features < self.features or self.max_stages < 2:
            raise ConfigurationError("need features >= 1, max_features >= features, stages >= 2")
        if self.batch_size < 1:
            raise ConfigurationError("batch_size must be >= 1")


@dataclass(frozen=True)
class TrainingConfig:
    """The training recipe.

    Attributes
    ----------
    iterations
        Optimiser steps in all.
    loss
        ``"marginal"`` (partial-label marginal loss) or ``"plain"`` (unannotated = background).
    dice_weight, exclusion_weight
        Weights of the (marginal) soft Dice term and of the exclusion term.
    optimizer, learning_rate, weight_decay
        ``"sgd"`` (nnU-Net's: Nesterov, momentum 0.99) or ``"adamw"``; the learning rate
        decays polynomially (exponent 0.9) to 0 at ``iterations``.
    foreground_oversampling
        Fraction of each batch's patches centred on an annotated voxel.
    augment
        Spatial (rotation, scaling) and intensity (noise, brightness, contrast, gamma)
        augmentation; never mirroring, which would swap left and right structures.
    seed
        Seeds torch, the data order and the augmentation.
    device, precision, threads
        Compute device; ``"auto"`` uses float16 mixed precision on CUDA and float32 elsewhere;
        torch intra-op threads while training (``None``: torch's setting).
    checkpoint_every
        Iterations between ``checkpoint_latest.pth`` saves (for resuming).
    """

    iterations: int = 1000
    loss: str = "marginal"
    dice_weight: float = 1.0
    exclusion_weight: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    weight_decay: float = 3e-5
    foreground_oversampling: float = 0.33
    augment: bool = True
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    threads: int | None = None
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        _choice(self.loss, LOSSES, "loss")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.precision, PRECISIONS, "precision")
        if self.iterations < 1 or self.checkpoint_every < 1:
            raise ConfigurationError("iterations and checkpoint_every must be >= 1")
        if not 0.0 <= self.foreground_oversampling <= 1.0:
            raise ConfigurationError("foreground_oversampling must lie in [0, 1]")


@dataclass(frozen=True)
class ModelSpec:
    """The model to produce.

    Attributes
    ----------
    name
        Model card name.
    dataset_id, dataset_name
        nnU-Net dataset folder ``Dataset{id:03d}_{name}``.
    labels
        Catalog structures, in label order (1..n); the union of the datasets' when empty.
    output
        Folder receiving ``card.json`` and the nnU-Net result folder.
    version, description, licence
        Recorded in the model card.
    keep_largest_component
        Ask the engine to keep only each label's largest connected component (single-object
        structures).
    """

    name: str
    dataset_id: int = 900
    dataset_name: str = "Omas"
    labels: tuple[str, ...] = ()
    output: Path = Path("model")
    version: str = "1.0.0"
    description: str = ""
    licence: str = ""
    keep_largest_component: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (see the module docstring for the TOML form)."""

    model: ModelSpec
    datasets: tuple[DatasetConfig, ...]
    plans: PlansConfig = field(default_factory=PlansConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigurationError("a training configuration needs at least one dataset")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"dataset names must be unique, got {names}")

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's structures in label order (1..n)."""
        if self.model.labels:
            return self.model.labels
        seen: dict[str, None] = {}
        for dataset in self.datasets:
            for name in dataset.annotated:
                seen.setdefault(name, None)
        return tuple(seen)


def _triple(value: Any, what: str, kind: type) -> Any:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ConfigurationError(f"{what} must be a list of three numbers, got {value!r}")
    return tuple(kind(v) for v in value)


def _path(value: Any, base: Path) -> Path | None:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _known(section: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            raise _unknown_key(key, allowed, where)


def _unknown_key(key: str, allowed: Sequence[str], where: str) -> ConfigurationError:
    return ConfigurationError(f"unknown key {key!r} in [{where}].{suggestion(key, allowed)}")


def train_config_from_dict(data: Mapping[str, Any], base: Path = Path()) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML; relative paths are taken from ``base``."""
    _known(data, ("model", "plans", "training", "datasets"), "top level")
    try:
        model_raw = dict(data["model"])
        _known(model_raw, [f for f in ModelSpec.__dataclass_fields__], "model")
        model = ModelSpec(
            name=str(model_raw["name"]),
            dataset_id=int(model_raw.get("dataset_id", 900)),
            dataset_name=str(model_raw.get("dataset_name", "Omas")),
            labels=tuple(str(v) for v in model_raw.get("labels", ())),
            output=_path(model_raw.get("output", "model"), base) or Path("model"),
            version=str(model_raw.get("version", "1.0.0")),
            description=str(model_raw.get("description", "")),
            licence=str(model_raw.get("licence", "")),
            keep_largest_component=bool(model_raw.get("keep_largest_component", False)),
        )
        plans_raw = dict(data.get("plans", {}))
        _known(plans_raw, [f for f in PlansConfig.__dataclass_fields__], "plans")
        plans_raw["file"] = _path(plans_raw.get("file"), base)
        plans_raw["spacing"] = _triple(plans_raw.get("spacing"), "plans.spacing", float)
        plans_raw["patch_size"] = _triple(plans_raw.get("patch_size"), "plans.patch_size", int)
        plans = PlansConfig(**plans_raw)
        training_raw = dict(data.get("training", {}))
        _known(training_raw, [f for f in TrainingConfig.__dataclass_fields__], "training")
        training = TrainingConfig(**training_raw)
        datasets = []
        for i, raw in enumerate(data.get("datasets", [])):
            raw = dict(raw)
            _known(raw, [f for f in DatasetConfig.__dataclass_fields__], f"datasets #{i + 1}")
            datasets.append(
                DatasetConfig(
                    name=str(raw.get("name", f"dataset{i + 1}")),
                    format=str(raw.get("format", "nifti")),
                    images=_path(raw.get("images"), base),
                    labels=_path(raw.get("labels"), base),
                    structures=tuple(str(v) for v in raw.get("structures", ())),
                    label_values={int(k): str(v) for k, v in raw.get("label_values", {}).items()},
                    absent=tuple(str(v) for v in raw.get("absent", ())),
                    phantom_seeds=tuple(int(v) for v in raw.get("phantom_seeds", ())),
                    phantom_spacing=float(raw.get("phantom_spacing", 6.0)),
                    phantom_shape=_triple(raw.get("phantom_shape", (64, 48, 64)), "shape", int),
                )
            )
    except KeyError as err:
        raise ConfigurationError(f"training configuration lacks {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"training configuration is malformed: {err}") from err
    return TrainConfig(model=model, datasets=tuple(datasets), plans=plans, training=training)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training configuration TOML file (relative paths from the file's folder).

    Raises
    ------
    ConfigurationError
        If the file is missing, is not TOML, or declares something invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"training configuration {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{path} is not valid TOML: {err}") from err
    return train_config_from_dict(data, path.parent)
