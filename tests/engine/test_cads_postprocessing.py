"""CADS's post-processing, rule by rule, on constructed label maps (canonical S, A, R order).

Each test is built so that the rule off by one step fails it: a component of exactly
``min_voxels`` is kept and one of ``min_voxels - 1`` removed, box edges are checked on both
sides, the brain threshold at 1999 and 2000 voxels. The rules come from the shipped table
(``engine/cards/cads.postprocessing.csv``), the values from CADS's code (see
:mod:`omas_idc.engine.cads`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from omas_idc.engine.cads import apply_cads_rules, fill_holes, keep_components
from omas_idc.engine.cads_rules import (
    RULES_FILE,
    ComponentRule,
    cads_rules,
    read_cads_rules,
)
from omas_idc.engine.card import load_card
from omas_idc.errors import ConfigurationError

RULES = cads_rules()
COMPONENT_RULES = {(r.task, r.label): r for r in RULES.components}


def _blob(labels: np.ndarray, plane: int, n: int, value: int) -> None:
    """``n`` connected voxels of ``value`` in the S plane ``plane`` (row-major from a corner)."""
    rows = labels.shape[1] - 2
    width = labels.shape[2] - 2
    assert n <= rows * width
    flat = np.zeros(rows * width, dtype=bool)
    flat[:n] = True
    labels[plane, 1:-1, 1:-1][flat.reshape(rows, width)] = value


def _sizes(labels: np.ndarray, value: int) -> list[int]:
    from scipy import ndimage

    components, _ = ndimage.label(labels == value, structure=np.ones((3, 3, 3), dtype=bool))
    return sorted(np.bincount(components.ravel())[1:].tolist(), reverse=True)


def _plane_map(n_planes: int, side: int) -> np.ndarray:
    # blobs in planes 1, 4, 7, ...: two empty planes between them, never 26-connected
    return np.zeros((3 * n_planes + 1, side, side), dtype=np.uint8)


def _side(voxels: int) -> int:
    return int(np.ceil(np.sqrt(voxels))) + 3


@pytest.mark.parametrize(
    "rule", RULES.components, ids=[f"{r.task}-{r.label}-{r.structure}" for r in RULES.components]
)
def test_component_rule_keeps_min_voxels_and_removes_one_less(rule: ComponentRule) -> None:
    big, exact, below = rule.min_voxels + 100, rule.min_voxels, rule.min_voxels - 1
    labels = _plane_map(3, _side(big))
    _blob(labels, 1, big, rule.label)
    if exact > 0:
        _blob(labels, 4, exact, rule.label)
    if below > 0:
        _blob(labels, 7, below, rule.label)
    apply_cads_rules({rule.task: labels}, RULES)
    if rule.max_components is None:
        assert _sizes(labels, rule.label) == [s for s in (big, exact) if s > 0]
    else:
        # only the largest max_components survive, whatever their size
        assert rule.max_components == 1
        assert _sizes(labels, rule.label) == [big]


@pytest.mark.parametrize(
    "rule",
    [r for r in RULES.components if r.max_components is not None and r.min_voxels > 0],
    ids=lambda r: f"{r.task}-{r.label}-{r.structure}",
)
def test_single_component_rules_also_apply_min_voxels(rule: ComponentRule) -> None:
    kept = _plane_map(1, _side(rule.min_voxels))
    _blob(kept, 1, rule.min_voxels, rule.label)
    removed = _plane_map(1, _side(rule.min_voxels))
    _blob(removed, 1, rule.min_voxels - 1, rule.label)
    apply_cads_rules({rule.task: kept}, RULES)
    apply_cads_rules({rule.task: removed}, RULES)
    assert _sizes(kept, rule.label) == [rule.min_voxels]
    assert _sizes(removed, rule.label) == []


def test_humerus_and_scapula_keep_700_voxels_and_lose_400() -> None:
    """Task 554: CADS removes humerus and scapula components below 500 voxels (not 1000)."""
    for label in (1, 2, 3, 4):
        labels = _plane_map(3, 42)
        _blob(labels, 1, 1500, label)
        _blob(labels, 4, 700, label)
        _blob(labels, 7, 400, label)
        apply_cads_rules({"554": labels}, RULES)
        assert _sizes(labels, label) == [1500, 700]
    # the clavicula (label 5) keeps CADS's 1000
    labels = _plane_map(2, 42)
    _blob(labels, 1, 1500, 5)
    _blob(labels, 4, 700, 5)
    apply_cads_rules({"554": labels}, RULES)
    assert _sizes(labels, 5) == [1500]


#: CADS's ``labels_info`` (cads/dataset_utils/postprocessing.py at the card's commit), by its
#: label names: (autofix, max_cc). The table must say exactly this, label by label.
CADS_LABELS_INFO = {
    "551": {
        **dict.fromkeys(["spleen", "kidney_right", "kidney_left"], (1000, None)),
        "gallbladder": (20, None),
        "liver": (2200, None),
        "stomach": (1000, None),
        "aorta": (1000, None),
        "inferior_vena_cava": (500, None),
        "pancreas": (1000, None),
        **dict.fromkeys(
            [
                "lung_upper_lobe_left",
                "lung_lower_lobe_left",
                "lung_upper_lobe_right",
                "lung_middle_lobe_right",
                "lung_lower_lobe_right",
            ],
            (300, None),
        ),
    },
    "553": {
        "esophagus": (1000, None),
        **dict.fromkeys(
            [
                "trachea",
                "heart_myocardium",
                "heart_atrium_left",
                "heart_ventricle_left",
                "heart_atrium_right",
                "heart_ventricle_right",
                "brain",
                "colon",
                "face",
            ],
            (100, None),
        ),
        **dict.fromkeys(["iliac_artery_left", "iliac_artery_right"], (10, None)),
        **dict.fromkeys(["iliac_vena_left", "iliac_vena_right"], (500, None)),
        "small_bowel": (150, None),
        "urinary_bladder": (1500, None),
    },
    "554": {
        **dict.fromkeys(
            ["humerus_left", "humerus_right", "scapula_left", "scapula_right"], (500, None)
        ),
        **dict.fromkeys(
            [
                "clavicula_left",
                "clavicula_right",
                "femur_left",
                "femur_right",
                "hip_left",
                "hip_right",
                "sacrum",
                "gluteus_maximus_left",
                "gluteus_maximus_right",
                "gluteus_medius_left",
                "gluteus_medius_right",
                "gluteus_minimus_left",
                "gluteus_minimus_right",
                "autochthon_left",
                "autochthon_right",
                "iliopsoas_left",
                "iliopsoas_right",
            ],
            (1000, None),
        ),
    },
    "556": {
        **dict.fromkeys(
            ["spinal_canal", "larynx", "heart", "bowel_bag", "sigmoid", "rectum"], (1000, None)
        ),
        **dict.fromkeys(["left_mammary_gland", "right_mammary_gland"], (0, 1)),
        "sternum": (1500, 1),
        **dict.fromkeys(
            [
                "right psoas major",
                "left psoas major",
                "right rectus abdominis",
                "left rectus abdominis",
            ],
            (1000, None),
        ),
    },
    "559": {
        "subcutaneous_tissue": (4000, None),
        "muscle": (4000, None),
        "abdominal_cavity": (200, 1),
        "bones": (200, None),
        "pericardium": (1000, 1),
        "spinal_cord": (500, None),
    },
}


def test_component_rules_are_cads_labels_info_label_by_label() -> None:
    names = {(r.task, r.label): r.label_name for r in load_card("cads").labels}
    table: dict[str, dict[str, tuple[int, int | None]]] = {}
    for rule in RULES.components:
        table.setdefault(rule.task, {})[names[rule.task, rule.label]] = (
            rule.min_voxels,
            rule.max_components,
        )
    assert table == CADS_LABELS_INFO


def test_component_rules_cover_exactly_cads_labels() -> None:
    """The labels CADS leaves alone (commented out in its labels_info, or tasks it skips)."""
    keys = RULES.keys()
    assert {t for t, _ in keys} == {"551", "553", "554", "556", "559"}
    unruled = {
        ("551", 9),  # portal_vein_and_splenic_vein
        ("551", 11),
        ("551", 12),  # adrenal glands
        ("553", 8),  # pulmonary_artery
        ("553", 15),  # duodenum
        ("556", 7),  # prostate
        ("556", 8),  # seminal_vesicle
        ("559", 4),  # thoracic_cavity
        ("559", 6),
        ("559", 8),
        ("559", 9),
    }
    assert not keys & unruled
    labels = {t: _plane_map(1, 8) for t in ("551", "552", "553", "555", "556", "559")}
    for task, label in unruled:
        labels[task][1, 1 + label % 6, 1] = label
    labels["552"][1, 2, 2] = 3
    labels["555"][1, 2, 2] = 7
    before = {t: a.copy() for t, a in labels.items()}
    apply_cads_rules(labels, RULES)
    for task in labels:
        np.testing.assert_array_equal(labels[task], before[task])


def test_components_are_26_connected() -> None:
    """Two cubes meeting at one corner are one component (26-connectivity, TPTBox's 3)."""
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[1:9, 1:9, 1:9] = 3  # abdominal_cavity: one component of >= 200 voxels
    labels[9:17, 9:17, 9:17] = 3
    apply_cads_rules({"559": labels}, RULES)
    assert int((labels == 3).sum()) == 2 * 512
    labels[9, 9, 9] = 0  # now apart (the corner voxel gone): the smaller one goes
    apply_cads_rules({"559": labels}, RULES)
    assert int((labels == 3).sum()) == 512


def test_components_equal_in_size_keep_the_first_in_scan_order() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 9
    labels[6:8, 6:8, 6:8] = 9
    keep_components(labels, 9, 0, 1)
    assert labels[1, 1, 1] == 9
    assert labels[6, 6, 6] == 0


# -- hole filling (task 556, mammary glands) ------------------------------------------------


def _shell(shape: tuple[int, int, int], lo: int, hi: int, value: int) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[lo:hi, lo:hi, lo:hi] = value
    labels[lo + 1 : hi - 1, lo + 1 : hi - 1, lo + 1 : hi - 1] = 0
    return labels


@pytest.mark.parametrize("gland", [9, 10])
def test_mammary_gland_enclosed_background_is_filled_other_labels_stay(gland: int) -> None:
    labels = _shell((14, 14, 14), 2, 12, gland)
    labels[6, 6, 6] = 7  # prostate inside the gland: kept (TPTBox 0.3.0 fills background only)
    apply_cads_rules({"556": labels}, RULES)
    inside = labels[3:11, 3:11, 3:11]
    assert int((inside == gland).sum()) == inside.size - 1
    assert labels[6, 6, 6] == 7


def test_fill_into_any_overwrites_enclosed_labels() -> None:
    labels = _shell((14, 14, 14), 2, 12, 9)
    labels[6, 6, 6] = 7
    fill_holes(labels, 9, ("3d",), "any")
    assert (labels[2:12, 2:12, 2:12] == 9).all()


@pytest.mark.parametrize("axis", ["S", "A", "R"])
def test_mammary_gland_tube_is_filled_by_the_slice_pass_across_its_axis(axis: str) -> None:
    """A tube open at both ends has no 3D hole: only slices across its axis close it."""
    tube = np.zeros((16, 16, 16), dtype=np.uint8)
    tube[:, 3:13, 3:13] = 9
    tube[:, 5:11, 5:11] = 0  # a square tube along S, open at both ends of the array
    order = {"S": (0, 1, 2), "A": (1, 0, 2), "R": (2, 1, 0)}[axis]
    labels = np.transpose(tube, order).copy()
    apply_cads_rules({"556": labels}, RULES)
    assert int((labels == 9).sum()) == 16 * 10 * 10
    rule = next(f for f in RULES.fills if f.label == 9)
    without = np.transpose(tube, order).copy()
    fill_holes(without, 9, tuple(p for p in rule.passes if p != axis), rule.into)
    assert int((without == 9).sum()) == 16 * (100 - 36)


def test_mammary_gland_fill_passes_are_cads_order() -> None:
    for rule in RULES.fills:
        assert (rule.task, rule.passes, rule.into) == (
            "556",
            ("3d", "S", "R", "A", "3d"),
            "background",
        )
    assert {r.label for r in RULES.fills} == {9, 10}


def test_mammary_gland_keeps_its_largest_component_whatever_its_size() -> None:
    labels = _plane_map(2, 10)
    labels[1, 1, 1] = 9  # a lone voxel: kept (min_voxels 0)
    apply_cads_rules({"556": labels}, RULES)
    assert _sizes(labels, 9) == [1]
    _blob(labels, 4, 5, 9)
    apply_cads_rules({"556": labels}, RULES)
    assert _sizes(labels, 9) == [5]


def test_fill_happens_before_the_component_rule() -> None:
    """A hollow gland (shell 488 voxels) filled to 512 outranks a solid 500-voxel blob."""
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[1:9, 1:9, 1:9] = 9
    labels[2:8, 2:8, 2:8] = 0
    labels[15:20, 15:25, 15:25] = 9  # 500 voxels
    apply_cads_rules({"556": labels}, RULES)
    assert _sizes(labels, 9) == [512]


# -- 557 / 558: boxes around task 553's brain, 558's fallback on task 552 ----------------------


def _brain(shape: tuple[int, int, int], corner: tuple[int, int, int], size=(14, 13, 12)):
    labels = np.zeros(shape, dtype=np.uint8)
    s, a, r = corner
    labels[s : s + size[0], a : a + size[1], r : r + size[2]] = 9  # 2184 voxels
    return labels


def _box_case(task: str) -> tuple[dict[str, np.ndarray], tuple[int, int, int], tuple[int, ...]]:
    half_r, half_a, half_s = RULES.boxes[task].half_size_ras
    shape = (2 * half_s + 12, 2 * half_a + 12, 2 * half_r + 12)
    corner = (half_s - 1, half_a - 1, half_r - 1)
    brain = _brain(shape, corner)
    # centroid corner + (6.5, 6, 5.5): CADS truncates it to corner + (6, 6, 5)
    centre = (corner[0] + 6, corner[1] + 6, corner[2] + 5)
    arrays = {"552": np.zeros(shape, np.uint8), "553": brain, task: np.zeros(shape, np.uint8)}
    return arrays, centre, (half_s, half_a, half_r)


@pytest.mark.parametrize("task", ["557", "558"])
def test_head_tasks_are_kept_in_a_box_around_the_brain_centroid(task: str) -> None:
    arrays, centre, half = _box_case(task)
    target = arrays[task]
    expected = {}
    for axis in range(3):
        for offset, kept in (
            (-half[axis], True),
            (-half[axis] - 1, False),
            (half[axis] - 1, True),
            (half[axis], False),
        ):
            point = list(centre)
            point[axis] += offset
            target[tuple(point)] = 1
            expected[tuple(point)] = kept
    apply_cads_rules(arrays, RULES)
    got = {p: bool(target[p] == 1) for p in expected}
    assert got == expected


def test_brain_box_half_sizes_are_cads() -> None:
    assert RULES.boxes["557"].half_size_ras == (100, 100, 133)
    assert RULES.boxes["558"].half_size_ras == (100, 100, 200)
    for box in RULES.boxes.values():
        assert (box.reference_task, box.reference_label, box.min_reference_voxels) == (
            "553",
            9,
            2000,
        )


@pytest.mark.parametrize(("brain_voxels", "kept"), [(1999, False), (2000, True)])
def test_557_needs_2000_brain_voxels(brain_voxels: int, kept: bool) -> None:
    brain = np.zeros((30, 40, 60), dtype=np.uint8)
    _blob(brain, 15, brain_voxels, 9)
    head = np.zeros_like(brain)
    head[15, 20, 30] = 4
    apply_cads_rules({"553": brain, "557": head}, RULES)
    assert bool(head[15, 20, 30] == 4) is kept


def test_the_box_reads_task_553_after_its_own_post_processing() -> None:
    """1950 + 60 voxels of brain: the 60-voxel piece goes (brain min 100), leaving < 2000."""
    brain = _plane_map(2, 60)
    _blob(brain, 1, 1950, 9)
    _blob(brain, 4, 60, 9)
    head = np.zeros_like(brain)
    head[2, 20, 20] = 4
    apply_cads_rules({"553": brain, "557": head}, RULES)
    assert int((brain == 9).sum()) == 1950
    assert not head.any()


def test_558_without_brain_keeps_from_the_lowest_of_t4_to_c1_up() -> None:
    shape = (40, 10, 10)
    vertebrae = np.zeros(shape, dtype=np.uint8)
    vertebrae[5:9, 4, 4] = 13  # T5: not among 14-24
    vertebrae[12:16, 4, 4] = 14  # T4: lowest slice 12
    vertebrae[30:34, 4, 4] = 24  # C1
    neck = np.zeros(shape, dtype=np.uint8)
    neck[:, 2, 2] = 20
    apply_cads_rules({"552": vertebrae, "553": np.zeros(shape, np.uint8), "558": neck}, RULES)
    assert np.flatnonzero(neck[:, 2, 2]).tolist() == list(range(12, 40))
    assert RULES.fallbacks["558"].reference_labels == tuple(range(14, 25))
    assert "557" not in RULES.fallbacks


def test_558_without_brain_or_neck_is_emptied_and_557_without_brain_too() -> None:
    shape = (20, 10, 10)
    vertebrae = np.zeros(shape, dtype=np.uint8)
    vertebrae[2:6, 4, 4] = 13  # only T5
    head, neck = np.ones(shape, np.uint8), np.ones(shape, np.uint8)
    apply_cads_rules(
        {"552": vertebrae, "553": np.zeros(shape, np.uint8), "557": head, "558": neck}, RULES
    )
    assert not head.any()
    assert not neck.any()


def test_a_head_task_without_its_reference_task_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="553"):
        apply_cads_rules({"557": np.zeros((4, 4, 4), np.uint8)}, RULES)


# -- the table: keyed by number, checked against the catalog -----------------------------------


def _table(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "rules.csv"
    path.write_text("task,label,structure,rule,parameters,source\n" + "\n".join(rows) + "\n")
    return path


def test_rule_table_names_a_structure_or_a_label_and_both_must_agree(tmp_path: Path) -> None:
    labels = load_card("cads").labels
    by_name = read_cads_rules(
        _table(tmp_path, "554,,humerus_left,components,min_voxels=500,x"), labels
    )
    assert by_name.components[0].label == 1
    with pytest.raises(ConfigurationError, match="humerus_right"):
        read_cads_rules(_table(tmp_path, "554,1,humerus_right,components,min_voxels=500,x"), labels)
    with pytest.raises(ConfigurationError, match="humerus_lft"):
        read_cads_rules(_table(tmp_path, "554,,humerus_lft,components,min_voxels=500,x"), labels)
    with pytest.raises(ConfigurationError, match="no label 99"):
        read_cads_rules(_table(tmp_path, "554,99,,components,min_voxels=500,x"), labels)
    with pytest.raises(ConfigurationError, match="'999'"):
        read_cads_rules(_table(tmp_path, "999,1,,components,min_voxels=500,x"), labels)
    with pytest.raises(ConfigurationError, match="min_volume"):
        read_cads_rules(_table(tmp_path, "554,1,,components,min_volume=500,x"), labels)
    with pytest.raises(ConfigurationError, match="no label 30"):
        read_cads_rules(
            _table(
                tmp_path,
                "558,,,reference_box,reference=553:30 min_reference_voxels=1 half_size_ras=1,1,1,x",
            ),
            labels,
        )


def test_the_card_records_the_cads_commit_and_the_rule_table() -> None:
    import json

    card = json.loads((RULES_FILE.parent / "cads.json").read_text())
    reference = card["reference"]
    assert reference["repository"] == "https://github.com/murong-xu/CADS"
    assert len(reference["commit"]) == 40
    assert reference["postprocessing_rules"] == RULES_FILE.name
    assert RULES_FILE.is_file()


def test_a_renamed_label_in_dataset_json_keeps_its_rule(tmp_path: Path) -> None:
    """The folder of task 554 calls its labels otherwise; the rules go by number."""
    import torch

    from omas_idc.engine.model import load_model
    from omas_idc.engine.recipes import postprocess
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    card = load_card("cads")
    task = card.task("554")
    make_model_folder(
        tmp_path,
        SyntheticModel(
            dataset_id=554,
            dataset_name=task.dataset.split("_", 1)[1],
            labels=tuple(f"Knochen {i}" for i in range(1, 22)),
            trainer_name=task.trainer,
            plans_name=task.plans,
            patch_size=(8, 8, 8),
            n_stages=2,
        ),
    )
    model = load_model(card, weights_dir=tmp_path, tasks=["554"])
    assert model.tasks[0].folder.labels[1] == "Knochen 1"
    labels = _plane_map(2, 42)
    _blob(labels, 1, 1500, 1)
    _blob(labels, 4, 400, 1)
    out = postprocess(model, {"554": torch.from_numpy(labels)}, (1.5, 1.5, 1.5))
    assert _sizes(out["554"].numpy(), 1) == [1500]
    off = postprocess(model, {"554": torch.from_numpy(labels)}, (1.5, 1.5, 1.5), enabled=False)
    assert _sizes(off["554"].numpy(), 1) == [1500, 400]


def test_a_cads_recipe_card_whose_labels_mean_other_structures_is_refused(tmp_path: Path) -> None:
    import torch

    from omas_idc.catalog.model import LabelRow
    from omas_idc.engine.model import SegmentationModel
    from omas_idc.engine.recipes import postprocess

    card = load_card("cads")
    swapped = tuple(
        dataclasses.replace(r, structure="humerus_right") if (r.task, r.label) == ("554", 1) else r
        for r in card.labels
    )
    assert all(isinstance(r, LabelRow) for r in swapped)
    model = SegmentationModel(
        card=dataclasses.replace(card, labels=swapped),
        tasks=[],
        variant="reference",
        device=torch.device("cpu"),
    )
    with pytest.raises(ConfigurationError, match="humerus_right"):
        postprocess(model, {"554": torch.zeros((2, 2, 2), dtype=torch.uint8)}, (1.5,) * 3)


def test_segment_no_postprocessing_keeps_what_cads_rules_remove(tmp_path: Path) -> None:
    """``omas-idc segment --model cads --no-postprocessing``: the networks' labels as they are;
    with the rules (554: components removed only), every label kept is one of those."""
    import json

    import nibabel as nib
    from typer.testing import CliRunner

    from omas_idc.cli import app
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
    from omas_idc.phantom import PhantomOptions, make_phantom

    task = load_card("cads").task("554")
    make_model_folder(
        tmp_path / "weights",
        SyntheticModel(
            dataset_id=554,
            dataset_name=task.dataset.split("_", 1)[1],
            labels=tuple(f"label {i}" for i in range(1, 22)),
            trainer_name=task.trainer,
            plans_name=task.plans,
            spacing=(6.0, 6.0, 6.0),
            seed=5,
        ),
    )
    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(seed=3, shape=(16, 20, 20), pixel_spacing=(8.0, 8.0), slice_spacing=8.0),
    )
    maps = {}
    for flag in ("--postprocessing", "--no-postprocessing"):
        out = tmp_path / flag
        result = CliRunner().invoke(
            app,
            [
                "segment",
                str(phantom.files[0].parent),
                *("--model", "cads", "--tasks", "554", "--out", str(out)),
                *("--weights-dir", str(tmp_path / "weights"), "--threads", "1"),
                flag,
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads((out / "labels.json").read_text())["postprocessing"] is (
            flag == "--postprocessing"
        )
        maps[flag] = np.asarray(nib.load(out / "cads_554.nii.gz").dataobj)
    on, off = maps["--postprocessing"], maps["--no-postprocessing"]
    assert (on[on > 0] == off[on > 0]).all()
    assert int((off > 0).sum()) > int((on > 0).sum())


def test_run_configuration_switches_postprocessing_off_for_the_engine() -> None:
    """``[model] postprocessing = false`` in a run's TOML (or ``run --no-postprocessing``)."""
    from omas_idc.run.config import RunConfig, config_from_dict
    from omas_idc.run.engine_setup import build_engine

    assert RunConfig().model.postprocessing is True
    settings = config_from_dict({"model": {"name": "demo", "postprocessing": False}}).model
    assert settings.postprocessing is False
    engine, _ = build_engine(dataclasses.replace(settings, device="cpu"))
    with engine:
        assert engine.config.postprocessing is False
    overridden = RunConfig().with_overrides(model={"postprocessing": False})
    assert overridden.model.postprocessing is False
