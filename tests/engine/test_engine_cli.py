"""``omas-idc segment`` on a phantom series with a synthetic nnU-Net result folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.nifti import read_nifti_on_grid
from omas_idc.phantom import PhantomOptions, make_phantom

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_segment_writes_label_maps_on_the_source_grid_and_seg(tmp_path: Path) -> None:
    import pydicom

    phantom = make_phantom(
        tmp_path / "dicom",
        PhantomOptions(
            shape=(20, 40, 44),
            pixel_spacing=(9.0, 9.0),
            slice_spacing=8.0,
            orientation="coronal",
            patient_position="FFS",
            noise=0.0,
        ),
    )
    # labels named by catalog structure: any model may encode them as SEG
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
            "segment",
            str(phantom.files[0].parent),
            "--model",
            str(folder),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--seg",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "labels.json").read_text())
    assert summary["series_instance_uid"] == phantom.series_instance_uid
    (task,) = summary["tasks"]
    entry = summary["tasks"][task]
    assert entry["labels"] == {"1": "liver", "2": "spleen"}
    labels = read_nifti_on_grid(out / entry["file"], phantom.geometry)
    # the threshold model labels the body 1 and bone 2: compare with the phantom's own HU
    truth = np.digitize(phantom.hu, [-500.0, 150.0])
    agreement = float((labels == truth).mean())
    assert agreement > 0.95, agreement
    (seg_file,) = out.glob("seg_*.dcm")
    seg = pydicom.dcmread(seg_file)
    assert seg.Modality == "SEG"
    assert seg.SegmentationType == "LABELMAP"
    meanings = {s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in seg.SegmentSequence}
    assert meanings - {"Background"} == {"Liver", "Spleen"}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == phantom.series_instance_uid


def test_segment_reports_missing_weights_clearly(tmp_path: Path) -> None:
    phantom = make_phantom(
        tmp_path / "dicom", PhantomOptions(shape=(8, 16, 16), pixel_spacing=(3.0, 3.0))
    )
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(phantom.files[0].parent),
            "--model",
            "cads",
            "--out",
            str(tmp_path / "out"),
            "--weights-dir",
            str(tmp_path / "empty"),
            "--tasks",
            "551",
        ],
    )
    assert result.exit_code == 2
    assert "omas-idc models download cads" in result.output
