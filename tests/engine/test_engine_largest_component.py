"""Cards may ask to keep each label's largest connected component (single-object structures)."""

from __future__ import annotations

import json

import numpy as np
import torch

from omas_idc.engine.card import load_card
from omas_idc.engine.recipes import keep_largest_components
from omas_idc.models import demo_card_path


def test_only_the_largest_component_of_each_label_survives() -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # the organ
    labels[15:17, 15:17, 15:17] = 1  # a stray blob of the same label
    labels[10:12, 2:4, 2:4] = 2  # another label, one component
    cleaned = keep_largest_components(torch.from_numpy(labels)).numpy()
    assert (cleaned[2:8, 2:8, 2:8] == 1).all()
    assert (cleaned[15:17, 15:17, 15:17] == 0).all()
    assert (cleaned == 2).sum() == 8
    assert cleaned.dtype == labels.dtype


def test_the_demo_card_asks_for_it_and_cads_does_not() -> None:
    assert json.loads(demo_card_path().read_text())["keep_largest_component"] is True
    assert load_card(demo_card_path()).keep_largest_component
    assert not load_card("cads").keep_largest_component
