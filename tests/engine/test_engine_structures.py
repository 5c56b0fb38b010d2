"""``structures``: only the tasks the named structures need run, and only they are written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import volume_from_phantom
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.engine.card import MergeSpec, ModelCard, load_card
from omas_idc.engine.model import load_model
from omas_idc.engine.segmenter import Segmenter
from omas_idc.engine.structures import parse_structures, select_structures
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")

#: task -> (labels named by catalog structure, thresholds (HU) of the threshold network)
PARTS = {
    "801": (("liver", "spleen"), (-150.0, 50.0)),  # the body's fat, contrast-enhanced organs
    "802": (("sternum",), (150.0,)),  # kidneys, blood, bone
}


def _card(root: Path, depends: dict[str, list[str]] | None = None) -> ModelCard:
    """A two-task card (no label table: its folders name the labels by structure)."""
    tasks = []
    for task, (labels, thresholds) in PARTS.items():
        spec = SyntheticModel(
            dataset_id=int(task),
            dataset_name=f"Part{task}",
            labels=labels,
            weights="threshold",
            thresholds_hu=thresholds,
            spacing=(5.0, 3.0, 3.2),
            patch_size=(16, 16, 16),
        )
        make_model_folder(root, spec)
        tasks.append(
            {
                "id": task,
                "dataset": f"Dataset{task}_Part{task}",
                "trainer": spec.trainer_name,
                "plans": spec.plans_name,
                "depends_on": (depends or {}).get(task, []),
            }
        )
    data = {"name": "parts", "recipe": "nnunet-native", "variants": {"local": {}}, "tasks": tasks}
    return dataclasses.replace(load_card(data), source=root / "card.json")


@pytest.fixture(scope="module")
def volume():  # type: ignore[no-untyped-def]
    return volume_from_phantom(
        PhantomOptions(shape=(20, 32, 36), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
    )


def test_a_structure_of_one_task_runs_only_that_task_and_writes_only_it(
    tmp_path: Path, volume
) -> None:  # type: ignore[no-untyped-def]
    card = _card(tmp_path)
    everything = Segmenter(load_model(card)).segment(volume)
    model = load_model(card, structures=["spleen"])
    assert [task.id for task in model.tasks] == ["801"]  # 802's network is not even loaded
    (spleen,) = Segmenter(model).segment(volume)
    assert spleen.task == "801"
    assert dict(spleen.labels) == {2: "spleen"}
    full = everything[0].array
    assert (full == 2).any()  # the phantom has both labels
    assert (full == 1).any()
    np.testing.assert_array_equal(spleen.array, np.where(full == 2, full, 0))


def test_dependencies_run_but_are_not_written(tmp_path: Path, volume) -> None:  # type: ignore[no-untyped-def]
    card = _card(tmp_path, depends={"802": ["801"]})
    model = load_model(card, structures=["sternum"])
    assert [task.id for task in model.tasks] == ["801", "802"]
    (sternum,) = Segmenter(model).segment(volume)
    assert (sternum.task, dict(sternum.labels)) == ("802", {1: "sternum"})
    assert sternum.present_labels() == [1]


def test_structures_of_a_merged_card_select_their_parts(tmp_path: Path, volume) -> None:  # type: ignore[no-untyped-def]
    card = dataclasses.replace(_card(tmp_path), merge=MergeSpec("whole", {"801": 0, "802": 2}))
    full = Segmenter(load_model(card)).segment(volume)[0].array
    model = load_model(card, structures=["sternum", "liver"])
    assert [task.id for task in model.tasks] == ["801", "802"]
    (whole,) = Segmenter(model).segment(volume)
    assert dict(whole.labels) == {1: "liver", 3: "sternum"}
    np.testing.assert_array_equal(whole.array, np.where(np.isin(full, [1, 3]), full, 0))
    only_bone = load_model(card, structures=["sternum"])
    assert [task.id for task in only_bone.tasks] == ["802"]


def test_card_label_rows_decide_which_part_of_totalseg_a_structure_needs() -> None:
    card = load_card("totalseg")
    selection = select_structures(card, ["liver", "heart", "rib_left_1"])
    assert selection.tasks == ("291", "293", "295")
    liver, heart, rib = (
        next(r.label for r in card.labels if r.structure == n)
        for n in ("liver", "heart", "rib_left_1")
    )
    assert selection.keep == {"total": frozenset({liver, heart, rib})}
    cads = select_structures(load_card("cads"), ["brain"])
    assert set(cads.tasks) >= {"553"}


def test_unknown_structure_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    card = _card(tmp_path)
    with pytest.raises(ConfigurationError, match="Did you mean 'spleen'"):
        load_model(card, structures=["splen"])
    totalseg = load_card("totalseg")
    with pytest.raises(ConfigurationError, match="Did you mean 'kidney_left'"):
        select_structures(totalseg, ["kidney_lft"])
    with pytest.raises(ConfigurationError, match="give one"):
        load_model(card, structures=["spleen"], tasks=["801"])


def test_names_come_comma_separated_or_repeated() -> None:
    assert parse_structures(["liver,spleen", " heart ", "liver"]) == ("liver", "spleen", "heart")
    assert parse_structures(None) == ()


def test_segment_cli_refuses_an_unknown_structure_with_exit_2(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model", SyntheticModel(labels=("liver", "spleen")))
    series = tmp_path / "series"
    series.mkdir()
    result = CliRunner().invoke(
        app,
        [
            *("segment", str(series), "--model", str(folder)),
            *("--out", str(tmp_path / "out"), "--structures", "livr"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "Did you mean 'liver'" in result.output
    assert not (tmp_path / "out" / "labels.json").exists()


@pytest.mark.slow
def test_segment_cli_writes_only_the_chosen_structure(tmp_path: Path) -> None:
    from omas_idc.phantom import make_phantom

    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(shape=(20, 32, 36), pixel_spacing=(9.0, 9.0), slice_spacing=8.0),
    )
    folder = make_model_folder(
        tmp_path / "model",
        SyntheticModel(
            labels=("liver", "spleen"),
            weights="threshold",
            thresholds_hu=(-500.0, 150.0),
            spacing=(8.0, 9.0, 9.0),
            patch_size=(16, 16, 16),
        ),
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            *("segment", str(phantom.files[0].parent), "--model", str(folder)),
            *("--out", str(out), "--structures", "spleen", "--seg"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "labels.json").read_text())
    assert summary["structures"] == ["spleen"]
    ((_task, entry),) = summary["tasks"].items()
    assert entry["labels"] == {"2": "spleen"}
    assert entry["present"] == [2]
    import pydicom

    (seg_file,) = out.glob("seg_*.dcm")
    meanings = {
        s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning
        for s in pydicom.dcmread(seg_file).SegmentSequence
    }
    assert meanings - {"Background"} == {"Spleen"}
