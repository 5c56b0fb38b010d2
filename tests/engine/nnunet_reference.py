"""Fixtures for the engine tests: synthetic nnU-Net folders, CTVolumes, nnU-Net's predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.engine.card import load_card
from omas_idc.engine.model import SegmentationModel, load_model
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.geometry import VolumeGeometry
from omas_idc.phantom import PhantomOptions, render_phantom
from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

torch = pytest.importorskip("torch")


def two_group_model(root: Path) -> SegmentationModel:
    """Two CADS tasks whose plans differ (two groups, so two jobs per series), tiny and 6 mm."""
    card = load_card("cads")
    for i, task_id in enumerate(("551", "559")):
        task = card.task(task_id)
        make_model_folder(
            root,
            SyntheticModel(
                dataset_id=int(task_id),
                dataset_name=task.dataset.split("_", 1)[1],
                labels=("a", "b"),
                trainer_name=task.trainer,
                plans_name=task.plans,
                patch_size=(8, 8, 8),
                spacing=(6.0, 6.0, 6.0),
                n_stages=2,
                mirror_axes=None,
                intensity=(40.0 + 10 * i, 250.0, -1000.0, 1500.0),  # two groups
                seed=i,
            ),
        )
    return load_model(card, weights_dir=root, tasks=["551", "559"])


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
    """nnU-Net's own nnUNetPredictor for a result folder, on the CPU."""
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from omas_idc.engine.nnunet_reference import nnunet_predictor as make

    return make(folder, folds, mirroring=mirroring, tile_step_size=tile_step_size)


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    """Dice of one label between two label maps (1.0 where absent from both)."""
    x, y = a == label, b == label
    total = int(x.sum() + y.sum())
    return 1.0 if total == 0 else 2.0 * int((x & y).sum()) / total
