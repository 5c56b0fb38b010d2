"""The ``total_v3`` cards reproduce TotalSegmentator 2.18's ``total_v3`` models and settings.

The expected values below are data read from TotalSegmentator's code at tag v2.18.0 (commit
184fa4765456492b2ab81a981cc387465906b003, wasserth/TotalSegmentator); CI has no copy of that
code, so they are checked in here:

- ``totalsegmentator/map_tasks_config.py``: ``TASK_CONFIGS["total_v3"]["sub_modes"]`` (default:
  tasks 831-835 at 1.5 mm, trainer ``nnUNetTrainerNoMirroring``; fast: task 836 at 3 mm and
  fastest: task 837 at 6 mm, trainer ``nnUNetTrainer_4000epochs_NoMirroring``),
  ``DEFAULT_CONFIG`` (``3d_fullres``, folds ``[0]``) and ``TASK_ID_WEIGHTS_CONFIGS`` (folder
  names, release ``v3.0.0-weights``);
- ``totalsegmentator/python_api.py`` ``get_task_config``: ``model_size="small"`` with task
  ``total_v3`` sets the plans ``nnUNetResEncUNetLPlans_8`` (the default is ``nnUNetPlans``);
- ``totalsegmentator/libs.py`` ``download_pretrained_weights``: the zip URL is
  ``.../releases/download/{version}/{foldername}.zip`` whatever the plans;
- ``totalsegmentator/nnunet.py`` ``nnUNet_predict_image``: ``step_size = 0.8`` for ``total_v3``;
- ``totalsegmentator/map_to_binary.py``: ``class_map["total_v3"]`` (``class_map["total"]`` with
  label 26 ``vertebrae_L6`` instead of ``vertebrae_S1``), ``class_map_5_parts_total_v3`` and
  ``map_taskid_to_partname_ct_v3``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from omas_idc.catalog import load_catalog
from omas_idc.cli import app
from omas_idc.engine.card import load_card
from omas_idc.engine.structures import select_structures
from omas_idc.errors import ConfigurationError

TOTALSEGMENTATOR_COMMIT = "184fa4765456492b2ab81a981cc387465906b003"
WEIGHTS = "https://github.com/wasserth/TotalSegmentator/releases/download/v3.0.0-weights/"

#: class_map["total_v3"], label 1..117 in order (map_to_binary.py at the commit above).
TOTAL_V3_CLASSES = (
    "spleen",  # 1
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "liver",
    "stomach",  # 6
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",  # 11
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "esophagus",
    "trachea",  # 16
    "thyroid_gland",
    "small_bowel",
    "duodenum",
    "colon",
    "urinary_bladder",  # 21
    "prostate",
    "kidney_cyst_left",
    "kidney_cyst_right",
    "sacrum",  # 25
    "vertebrae_L6",  # 26
    "vertebrae_L5",  # 27
    "vertebrae_L4",
    "vertebrae_L3",
    "vertebrae_L2",
    "vertebrae_L1",  # 31
    "vertebrae_T12",
    "vertebrae_T11",
    "vertebrae_T10",
    "vertebrae_T9",
    "vertebrae_T8",  # 36
    "vertebrae_T7",
    "vertebrae_T6",
    "vertebrae_T5",
    "vertebrae_T4",
    "vertebrae_T3",  # 41
    "vertebrae_T2",
    "vertebrae_T1",
    "vertebrae_C7",
    "vertebrae_C6",
    "vertebrae_C5",  # 46
    "vertebrae_C4",
    "vertebrae_C3",
    "vertebrae_C2",
    "vertebrae_C1",
    "heart",  # 51
    "aorta",
    "pulmonary_vein",
    "brachiocephalic_trunk",
    "subclavian_artery_right",
    "subclavian_artery_left",  # 56
    "common_carotid_artery_right",
    "common_carotid_artery_left",
    "brachiocephalic_vein_left",
    "brachiocephalic_vein_right",
    "atrial_appendage_left",  # 61
    "superior_vena_cava",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "iliac_artery_left",
    "iliac_artery_right",  # 66
    "iliac_vena_left",
    "iliac_vena_right",
    "humerus_left",
    "humerus_right",
    "scapula_left",  # 71
    "scapula_right",
    "clavicula_left",
    "clavicula_right",
    "femur_left",
    "femur_right",  # 76
    "hip_left",
    "hip_right",
    "spinal_cord",
    "gluteus_maximus_left",
    "gluteus_maximus_right",  # 81
    "gluteus_medius_left",
    "gluteus_medius_right",
    "gluteus_minimus_left",
    "gluteus_minimus_right",
    "autochthon_left",  # 86
    "autochthon_right",
    "iliopsoas_left",
    "iliopsoas_right",
    "brain",
    "skull",  # 91
    "rib_left_1",
    "rib_left_2",
    "rib_left_3",
    "rib_left_4",
    "rib_left_5",  # 96
    "rib_left_6",
    "rib_left_7",
    "rib_left_8",
    "rib_left_9",
    "rib_left_10",  # 101
    "rib_left_11",
    "rib_left_12",
    "rib_right_1",
    "rib_right_2",
    "rib_right_3",  # 106
    "rib_right_4",
    "rib_right_5",
    "rib_right_6",
    "rib_right_7",
    "rib_right_8",  # 111
    "rib_right_9",
    "rib_right_10",
    "rib_right_11",
    "rib_right_12",
    "sternum",  # 116
    "costal_cartilages",
)
#: class_map_5_parts_total_v3 by map_taskid_to_partname_ct_v3: (classes, first name, last name).
TOTAL_V3_PARTS = {
    "831": (24, "spleen", "kidney_cyst_right"),
    "832": (26, "sacrum", "vertebrae_C1"),
    "833": (18, "heart", "iliac_vena_right"),
    "834": (23, "humerus_left", "skull"),
    "835": (26, "rib_left_1", "costal_cartilages"),
}
DATASETS = {
    "831": "Dataset831_TotalSegmentator_part1_organs_1830subj",
    "832": "Dataset832_TotalSegmentator_part2_vertebrae_1559subj",
    "833": "Dataset833_TotalSegmentator_part3_cardiac_1830subj",
    "834": "Dataset834_TotalSegmentator_part4_muscles_1830subj",
    "835": "Dataset835_TotalSegmentator_part5_ribs_1559subj",
    "836": "Dataset836_TotalSegmentator_total_3mm_1559subj",
    "837": "Dataset837_TotalSegmentator_total_6mm_1559subj",
}
PARTS = ["831", "832", "833", "834", "835"]
#: card -> (task ids, spacing in mm, trainer, plans, the label table's task)
CARDS = {
    "totalseg-v3": (PARTS, 1.5, "nnUNetTrainerNoMirroring", "nnUNetPlans", "total_v3"),
    "totalseg-v3-small": (
        PARTS,
        1.5,
        "nnUNetTrainerNoMirroring",
        "nnUNetResEncUNetLPlans_8",
        "total_v3",
    ),
    "totalseg-v3-3mm": (["836"], 3.0, "nnUNetTrainer_4000epochs_NoMirroring", "nnUNetPlans", "836"),
    "totalseg-v3-6mm": (["837"], 6.0, "nnUNetTrainer_4000epochs_NoMirroring", "nnUNetPlans", "837"),
}
#: SNOMED CT: 51282000 Vertebra (CID 7151), 122496007 Lumbar spine (the anatomic region); as
#: TotalSegmentator's mapping codes its vertebrae_lumbar (totalsegmentator_snomed_mapping.csv).
L6_TYPE, L6_REGION = "51282000", "122496007"


def test_the_checked_in_class_map_is_total_with_l6_for_s1() -> None:
    # the copy above against the totalseg card's class_map["total"]: only label 26 differs
    total = {row.label: row.label_name for row in load_card("totalseg").labels}
    assert len(TOTAL_V3_CLASSES) == 117
    differ = {
        label: (total[label], name)
        for label, name in enumerate(TOTAL_V3_CLASSES, start=1)
        if total[label] != name
    }
    assert differ == {26: ("vertebrae_S1", "vertebrae_L6")}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_runs_totalsegmentator_2_18s_total_v3_tasks_and_settings(name: str) -> None:
    card = load_card(name)
    task_ids, spacing, trainer, plans, _ = CARDS[name]
    assert [t.id for t in card.tasks] == task_ids
    assert card.recipe == "totalseg"
    assert card.version == "3.0.0"
    assert card.spacing_mm == spacing
    assert card.tile_step_size == 0.8  # nnunet.py: step_size 0.8 for task "total_v3"
    assert card.mirroring is False
    for task in card.tasks:
        assert task.dataset == DATASETS[task.id]
        assert (task.trainer, task.plans, task.configuration) == (trainer, plans, "3d_fullres")
        assert task.result_folder == f"{DATASETS[task.id]}/{trainer}__{plans}__3d_fullres"
        assert task.folds == ("0",)
        assert task.depends_on == ()
        # the same zips for both model sizes; no checksum until measured
        assert {v: (w.url, w.sha256) for v, w in task.weights.items()} == {
            "open": (f"{WEIGHTS}{DATASETS[task.id]}.zip", None)
        }
    assert card.reference["package_version"] == "2.18.0"
    assert card.reference["commit"] == TOTALSEGMENTATOR_COMMIT
    assert card.reference["repository"] == "https://github.com/wasserth/TotalSegmentator"
    assert "total_v3" in card.reference["task"]


@pytest.mark.parametrize("name", sorted(CARDS))
def test_label_table_is_class_map_total_v3_and_every_label_is_coded(name: str) -> None:
    card = load_card(name)
    task = CARDS[name][4]
    assert (card.merge.task if card.merge is not None else card.tasks[0].id) == task
    rows = {row.label: row for row in card.labels}
    assert {row.task for row in card.labels} == {task}
    assert {label: row.label_name for label, row in rows.items()} == dict(
        enumerate(TOTAL_V3_CLASSES, start=1)
    )
    catalog = load_catalog()
    structures = catalog.labels_for(name, task)
    assert {label: s.name for label, s in structures.items()} == dict(
        enumerate(TOTAL_V3_CLASSES, start=1)
    )
    for structure in structures.values():
        assert structure.type.scheme == "SCT"
        assert structure.type.value.isdigit()


def test_part_offsets_follow_the_total_v3_five_part_class_maps() -> None:
    for name in ("totalseg-v3", "totalseg-v3-small"):
        card = load_card(name)
        assert card.merge is not None
        rows = {row.label: row.label_name for row in card.labels}
        for task, (count, first, last) in TOTAL_V3_PARTS.items():
            offset = card.merge.offsets[task]
            assert (rows[offset + 1], rows[offset + count]) == (first, last), task
            assert card.merge.part_of(offset + count) == task
        assert sum(count for count, _, _ in TOTAL_V3_PARTS.values()) == 117


def test_vertebrae_l6_is_coded_as_a_lumbar_vertebra_and_told_apart() -> None:
    catalog = load_catalog()
    l6 = catalog.by_name("vertebrae_L6")
    assert (l6.type.value, l6.type.meaning) == (L6_TYPE, "Vertebra")
    assert l6.region is not None
    assert (l6.region.value, l6.region.meaning) == (L6_REGION, "Lumbar spine")
    assert l6.type_modifier is None
    # no other structure carries its codes: a SEG reader finds L6, not L5 or the sacrum
    same = [s.name for s in catalog if s.key == l6.key]
    assert same == ["vertebrae_L6"]
    assert catalog.by_name("vertebrae_L5").type.value != L6_TYPE
    # the v2 model's S1 stays where it was, with its own code
    assert catalog.label_row("totalseg", "total", 26).structure == "vertebrae_S1"
    assert catalog.label_row("totalseg-v3", "total_v3", 26).structure == "vertebrae_L6"


def test_models_list_shows_the_total_v3_cards(tmp_path: Path) -> None:
    args = ["models", "list", "--cache-dir", str(tmp_path / "cache"), "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tasks = {item["model"]: item["tasks"] for item in json.loads(result.stdout)}
    assert {name: tasks.get(name) for name in CARDS} == {
        name: len(task_ids) for name, (task_ids, *_) in CARDS.items()
    }


def test_structures_pick_the_part_that_labels_them() -> None:
    card = load_card("totalseg-v3")
    chosen = select_structures(card, ["vertebrae_L6", "vertebrae_L5"])
    assert chosen.tasks == ("832",)
    assert chosen.keep == {"total_v3": frozenset({26, 27})}
    both = select_structures(card, ["liver", "vertebrae_L6", "heart"])
    assert both.tasks == ("831", "832", "833")
    with pytest.raises(ConfigurationError, match="vertebrae_S1"):
        # not a class of total_v3: refused with the closest names
        select_structures(card, ["vertebrae_S1"])


def _write_blocks(folder: Path, blocks: dict[str, tuple[float, slice]]) -> None:
    """Replace the phantom's pixels: air, and per block its HU over a range of columns."""
    import pydicom

    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        hu = np.full((int(ds.Rows), int(ds.Columns)), -1000.0)
        for value, columns in blocks.values():
            hu[4:-4, columns] = value
        stored = np.round((hu - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
        ds.PixelData = stored.astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(path)


@pytest.mark.slow
def test_synthetic_weights_run_through_segment_with_structures(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import pydicom

    from omas_idc.phantom import PhantomOptions, make_phantom
    from omas_idc.testing.reference_models import card_folders, threshold_spec

    card = load_card("totalseg-v3")
    # only part 832's folder exists: loading any other part would fail
    root = card_folders(card, tmp_path / "weights", tasks=["832"], patch_size=(16, 16, 16))
    thresholds = threshold_spec(card, card.task("832")).thresholds_hu
    # label k of the part wins between its threshold and the next: L6 is label 2, L5 label 3
    mid = {k: (thresholds[k - 1] + thresholds[k]) / 2 for k in (2, 3)}
    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(shape=(10, 24, 24), pixel_spacing=(4.0, 4.0), slice_spacing=4.0),
    )
    folder = phantom.files[0].parent
    _write_blocks(folder, {"L6": (mid[2], slice(3, 11)), "L5": (mid[3], slice(13, 21))})
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(folder),
            *("--model", "totalseg-v3", "--weights-dir", str(root), "--out", str(out)),
            *("--structures", "vertebrae_L6,vertebrae_L5", "--device", "cpu", "--threads", "1"),
            "--seg",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "labels.json").read_text())
    assert document["model"] == "totalseg-v3"
    assert set(document["tasks"]) == {"total_v3"}
    total_v3 = document["tasks"]["total_v3"]
    assert total_v3["labels"] == {"26": "vertebrae_L6", "27": "vertebrae_L5"}
    seg = pydicom.dcmread(out / "seg_totalseg-v3_total_v3.dcm")
    segments = {}
    for segment in seg.SegmentSequence:
        code = segment.SegmentedPropertyTypeCodeSequence[0]
        if (code.CodingSchemeDesignator, code.CodeValue) == ("DCM", "125040"):
            continue  # the LABELMAP's background segment
        region = segment.get("AnatomicRegionSequence")
        segments[segment.SegmentLabel] = (
            code.CodeValue,
            region[0].CodeValue if region else None,
            segment.SegmentAlgorithmName,
        )
    assert segments == {
        "vertebrae L6": (L6_TYPE, L6_REGION, "totalseg-v3"),
        "vertebrae L5": ("49668003", None, "totalseg-v3"),
    }
