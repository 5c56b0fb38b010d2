"""``omas-idc segment --model demo``: the packaged demo model is a built-in card like cads and
totalseg, for every command (it used to be known to ``run`` only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omas_idc.catalog import load_catalog
from omas_idc.cli import app
from omas_idc.phantom import PhantomOptions, make_phantom

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_segment_with_the_demo_model_writes_its_label_map_and_a_coded_seg(
    tmp_path: Path,
) -> None:
    import pydicom

    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(seed=3, shape=(40, 36, 40), pixel_spacing=(8.0, 8.0), slice_spacing=8.0),
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(phantom.files[0].parent),
            *("--model", "demo", "--out", str(out), "--device", "cpu", "--threads", "1"),
            "--seg",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "labels.json").read_text())
    assert document["model"] == "omas-demo"
    catalog = load_catalog()
    demo_labels = {str(k): s.name for k, s in catalog.labels_for("omas-demo", "900").items()}
    assert document["tasks"]["900"]["labels"] == demo_labels
    assert document["tasks"]["900"]["present"]  # the phantom's organs are found
    assert (out / "omas-demo_900.nii.gz").is_file()
    seg = pydicom.dcmread(out / "seg_omas-demo_900.dcm")
    coded = set()
    for segment in seg.SegmentSequence:
        code = segment.SegmentedPropertyTypeCodeSequence[0]
        if (code.CodingSchemeDesignator, code.CodeValue) == ("DCM", "125040"):
            continue  # the LABELMAP's background segment
        modifier = code.get("SegmentedPropertyTypeModifierCodeSequence")
        structure = catalog.by_codes(code.CodeValue, modifier[0].CodeValue if modifier else None)
        assert segment.SegmentAlgorithmName == "omas-demo"
        coded.add(structure.name)
    assert coded == set(demo_labels.values())


def test_segment_refuses_a_card_that_names_a_path(tmp_path: Path) -> None:
    card = {
        "name": "escape",
        "recipe": "nnunet-native",
        "variants": {"local": {"licence": "CC0-1.0"}},
        "tasks": [{"id": "1", "dataset": "../../x", "trainer": "t", "plans": "p"}],
    }
    (tmp_path / "card.json").write_text(json.dumps(card))
    phantom = make_phantom(
        tmp_path / "ct",
        PhantomOptions(seed=3, shape=(6, 16, 16), pixel_spacing=(20.0, 20.0), slice_spacing=20.0),
    )
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(phantom.files[0].parent),
            *("--model", str(tmp_path / "card.json"), "--out", str(tmp_path / "out")),
        ],
        catch_exceptions=False,
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert "must be a plain name" in result.output
    assert not (tmp_path / "out").exists()
