"""The TotalSegmentator cards reproduce TotalSegmentator 2.18's `total` models and settings.

The expected values below are data read from TotalSegmentator's code at tag v2.18.0 (commit
184fa4765456492b2ab81a981cc387465906b003, wasserth/TotalSegmentator):

- ``totalsegmentator/map_tasks_config.py``: ``TASK_CONFIGS["total"]["sub_modes"]`` (default:
  tasks 291-295 at 1.5 mm, trainer ``nnUNetTrainerNoMirroring``; fast: task 297 at 3 mm and
  fastest: task 298 at 6 mm, trainer ``nnUNetTrainer_4000epochs_NoMirroring``),
  ``DEFAULT_CONFIG`` (``3d_fullres``, folds ``[0]``) and ``TASK_ID_WEIGHTS_CONFIGS`` (folder
  names, release ``v2.0.0-weights``);
- ``totalsegmentator/python_api.py`` ``totalsegmentator(plans="nnUNetPlans")``;
- ``totalsegmentator/nnunet.py`` ``nnUNet_predict_image``: ``step_size = 0.8`` for the tasks
  ``total``, ``total_v3`` and ``total_mr``;
- ``totalsegmentator/map_to_binary.py``: ``class_map["total"]`` (117 classes),
  ``class_map_5_parts`` and ``map_taskid_to_partname_ct``.
"""

from __future__ import annotations

import pytest

from omas_idc.catalog import load_catalog
from omas_idc.engine.card import load_card

TOTALSEGMENTATOR_COMMIT = "184fa4765456492b2ab81a981cc387465906b003"
WEIGHTS = "https://github.com/wasserth/TotalSegmentator/releases/download/v2.0.0-weights/"

#: class_map["total"]: 117 classes; a few values at the parts' boundaries.
TOTAL_CLASSES = 117
TOTAL_SPOTS = {
    1: "spleen",
    24: "kidney_cyst_right",
    25: "sacrum",
    26: "vertebrae_S1",
    50: "vertebrae_C1",
    51: "heart",
    68: "iliac_vena_right",
    69: "humerus_left",
    91: "skull",
    92: "rib_left_1",
    117: "costal_cartilages",
}
#: class_map_5_parts by map_taskid_to_partname_ct: (classes, first name, last name).
TOTAL_PARTS = {
    "291": (24, "spleen", "kidney_cyst_right"),
    "292": (26, "sacrum", "vertebrae_C1"),
    "293": (18, "heart", "iliac_vena_right"),
    "294": (23, "humerus_left", "skull"),
    "295": (26, "rib_left_1", "costal_cartilages"),
}
DATASETS = {
    "291": "Dataset291_TotalSegmentator_part1_organs_1559subj",
    "292": "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
    "293": "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
    "294": "Dataset294_TotalSegmentator_part4_muscles_1559subj",
    "295": "Dataset295_TotalSegmentator_part5_ribs_1559subj",
    "297": "Dataset297_TotalSegmentator_total_3mm_1559subj",
    "298": "Dataset298_TotalSegmentator_total_6mm_1559subj",
}
#: card -> (task ids, spacing in mm, trainer)
CARDS = {
    "totalseg": (["291", "292", "293", "294", "295"], 1.5, "nnUNetTrainerNoMirroring"),
    "totalseg-3mm": (["297"], 3.0, "nnUNetTrainer_4000epochs_NoMirroring"),
    "totalseg-6mm": (["298"], 6.0, "nnUNetTrainer_4000epochs_NoMirroring"),
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_runs_totalsegmentator_2_18s_tasks_and_settings(name: str) -> None:
    card = load_card(name)
    task_ids, spacing, trainer = CARDS[name]
    assert [t.id for t in card.tasks] == task_ids
    assert card.recipe == "totalseg"
    assert card.spacing_mm == spacing
    assert card.tile_step_size == 0.8  # nnunet.py: step_size 0.8 for task "total"
    assert card.mirroring is False
    for task in card.tasks:
        assert task.dataset == DATASETS[task.id]
        assert (task.trainer, task.plans, task.configuration) == (
            trainer,
            "nnUNetPlans",
            "3d_fullres",
        )
        assert task.folds == ("0",)
        assert task.depends_on == ()
        assert {v: w.url for v, w in task.weights.items()} == {
            "open": f"{WEIGHTS}{DATASETS[task.id]}.zip"
        }
    assert card.reference["package_version"] == "2.18.0"
    assert card.reference["commit"] == TOTALSEGMENTATOR_COMMIT
    assert card.reference["repository"] == "https://github.com/wasserth/TotalSegmentator"


@pytest.mark.parametrize("name", sorted(CARDS))
def test_label_table_is_totalsegmentators_class_map_and_resolves_in_the_catalog(
    name: str,
) -> None:
    card = load_card(name)
    task = card.merge.task if card.merge is not None else card.tasks[0].id
    rows = {row.label: row for row in card.labels}
    assert sorted(rows) == list(range(1, TOTAL_CLASSES + 1))
    assert {row.task for row in card.labels} == {task}
    for label, label_name in TOTAL_SPOTS.items():
        assert rows[label].label_name == label_name, label
    catalog = load_catalog()
    assert name in catalog.models()
    structures = catalog.labels_for(name, task)
    assert sorted(structures) == sorted(rows)
    for label, row in rows.items():
        assert structures[label].name == row.structure


def test_3mm_and_6mm_label_the_same_classes_as_the_five_parts() -> None:
    names = {
        name: [(row.label, row.label_name, row.structure) for row in load_card(name).labels]
        for name in CARDS
    }
    assert names["totalseg-3mm"] == names["totalseg"] == names["totalseg-6mm"]


def test_part_offsets_follow_totalsegmentators_five_part_class_maps() -> None:
    card = load_card("totalseg")
    assert card.merge is not None
    rows = {row.label: row.label_name for row in card.labels}
    for task, (count, first, last) in TOTAL_PARTS.items():
        offset = card.merge.offsets[task]
        assert (rows[offset + 1], rows[offset + count]) == (first, last), task
    assert sum(count for count, _, _ in TOTAL_PARTS.values()) == TOTAL_CLASSES
