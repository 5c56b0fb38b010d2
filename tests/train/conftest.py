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
    """nnU-Net's own ``nnUNetPredictor`` for a result folder, on the CPU."""
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from omas_idc.engine.nnunet_reference import nnunet_predictor

    return nnunet_predictor(folder, (fold,))
