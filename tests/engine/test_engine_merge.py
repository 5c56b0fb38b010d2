"""TotalSegmentator's recipe: its 5 parts combined into one 117-class ``total`` map."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import volume_from_phantom

from omas_idc.engine.card import MergeSpec, load_card
from omas_idc.engine.model import load_model
from omas_idc.engine.segmenter import Segmenter
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")


def test_totalseg_offsets_put_each_part_where_the_catalog_expects_it() -> None:
    from omas_idc.catalog import load_catalog

    card = load_card("totalseg")
    assert card.merge is not None
    assert card.merge.task == "total"
    catalog = load_catalog()
    total = catalog.labels_for("totalseg", "total")
    assert len(total) == 117
    first = {"291": "spleen", "292": "sacrum", "293": "heart", "294": "humerus_left"}
    first["295"] = "rib_left_1"
    for task, name in first.items():
        row = catalog.label_row("totalseg", "total", card.merge.offsets[task] + 1)
        assert row.label_name == name, task
    assert card.merge.offsets["295"] + 26 == 117  # 26 ribs and cartilages in part 5


def test_parts_are_combined_into_one_map_later_parts_on_top(tmp_path: Path) -> None:
    tasks = []
    for dataset_id, labels, thresholds in (
        (801, ("tissue", "organ"), (-150.0, 50.0)),  # the body's fat, contrast-enhanced organs
        (802, ("dense",), (150.0,)),  # kidneys, blood, bone
    ):
        spec = SyntheticModel(
            dataset_id=dataset_id,
            dataset_name=f"Part{dataset_id}",
            labels=labels,
            weights="threshold",
            thresholds_hu=thresholds,
            spacing=(5.0, 3.0, 3.2),
            patch_size=(16, 16, 16),
        )
        make_model_folder(tmp_path, spec)
        tasks.append(
            {
                "id": str(dataset_id),
                "dataset": f"Dataset{dataset_id}_Part{dataset_id}",
                "trainer": spec.trainer_name,
                "plans": spec.plans_name,
            }
        )
    data = {"name": "parts", "recipe": "nnunet-native", "variants": {"local": {}}, "tasks": tasks}
    card = dataclasses.replace(load_card(data), source=tmp_path / "card.json")
    volume = volume_from_phantom(
        PhantomOptions(shape=(20, 32, 36), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
    )
    separate = Segmenter(load_model(card)).segment(volume)
    merged_card = dataclasses.replace(card, merge=MergeSpec("whole", {"801": 0, "802": 2}))
    (merged,) = Segmenter(load_model(merged_card)).segment(volume)

    assert merged.task == "whole"
    assert dict(merged.labels) == {1: "tissue", 2: "organ", 3: "dense"}
    expected = separate[0].array.copy()
    expected[separate[1].array == 1] = 3
    np.testing.assert_array_equal(merged.array, expected)
    assert set(merged.present_labels()) == {1, 2, 3}
