"""Every output says which reference a card reproduces and what the settings changed.

A release labelled TotalSegmentator must be TotalSegmentator's segmentation: the SEG's
algorithm version names the tool and version the card reproduces (from the card's
``reference`` block), and any speed setting that changes labels is written after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.engine.card import load_card
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.testing.reference_models import card_folders


def test_cards_name_their_reference() -> None:
    assert load_card("totalseg").algorithm_version() == "2.0.0 TotalSegmentator 2.18.0"
    assert load_card("totalseg-6mm").reference_label() == "TotalSegmentator 2.18.0"
    assert load_card("cads").algorithm_version() == "1.0.0 CADS 1.0.3@7480324"
    # the packaged demo reproduces no tool: its version alone
    assert load_card("demo").algorithm_version() == load_card("demo").version


@pytest.mark.parametrize(
    ("options", "suffix"),
    [
        ([], ""),
        (["--speed", "quick"], " crop+step0.75+labels+centred"),
        (["--wrapper-grid", "centred"], " centred"),
    ],
    ids=["reference", "quick", "centred"],
)
def test_seg_algorithm_version_names_reference_and_changes(
    tmp_path: Path, options: list[str], suffix: str
) -> None:
    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(shape=(24, 40, 40), pixel_spacing=(6.0, 6.0), slice_spacing=6.0),
    )
    weights = card_folders("totalseg-6mm", tmp_path / "weights", patch_size=(16, 16, 16))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(phantom.files[0].parent),
            "--model",
            "totalseg-6mm",
            "--weights-dir",
            str(weights),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--seg",
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    expected = "2.0.0 TotalSegmentator 2.18.0" + suffix
    assert json.loads((out / "labels.json").read_text())["model_version"] == expected
    (seg_file,) = out.glob("seg_*.dcm")
    (algorithm,) = (
        pydicom.dcmread(seg_file).SegmentSequence[1].SegmentationAlgorithmIdentificationSequence
    )
    assert algorithm.AlgorithmVersion == expected
