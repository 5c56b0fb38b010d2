"""The reference harnesses' weights: one synthetic folder per card task, as the card names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.engine.card import load_card
from omas_idc.engine.model import load_model
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.phantom import make_phantom
from omas_idc.read import read_series
from omas_idc.testing.reference_models import card_folders, task_folder


@pytest.mark.parametrize("card_name", ["cads", "totalseg", "totalseg-3mm"])
def test_every_task_loads_under_its_card_names(tmp_path: Path, card_name: str) -> None:
    card = load_card(card_name)
    root = card_folders(card_name, tmp_path, patch_size=(16, 16, 16))
    model = load_model(card_name, weights_dir=root)
    assert [t.id for t in model.tasks] == [t.id for t in card.tasks]
    for task in model.tasks:
        assert task_folder(root, card_name, task.id).is_dir()
        # the label names nnU-Net's dataset.json gives are the card's label names, in order
        assert task.folder.configuration.spacing == (card.spacing_mm,) * 3
        assert len(task.folder.labels) >= 1


def test_threshold_weights_label_by_hu(tmp_path: Path) -> None:
    """Threshold folders label bone and soft tissue differently, and air as background."""
    root = card_folders("totalseg-6mm", tmp_path, patch_size=(16, 16, 16))
    model = load_model("totalseg-6mm", weights_dir=root)
    phantom = make_phantom(tmp_path / "dicom")
    volume = read_series(phantom.files[0].parent)
    with Segmenter(model, SegmenterConfig()) as segmenter:
        (labels,) = segmenter.segment(volume)
    hu = volume.hu
    air = labels.array[hu < -950]
    assert air.size > 0
    assert np.mean(air == 0) > 0.9
    assert len(np.unique(labels.array)) > 3
