"""A new model family made of data files only, run end to end through ``omas-idc run``.

In a temporary folder: a card, its label rows (the model's own label names mapped to catalog
structures) and a threshold-weight nnU-Net v2 result folder. No code names the family: the SEG
and SR come out coded from the catalog rows its label table points to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

from omas_idc.catalog import load_catalog
from omas_idc.series_ref import write_selection

torch = pytest.importorskip("torch")

CARD = {
    "name": "my-organs",
    "version": "0.1",
    "description": "A user's model: soft tissue and dense tissue by threshold.",
    "recipe": "nnunet-native",
    "labels": "labels.csv",
    "variants": {"local": {"licence": "CC0-1.0"}},
    "tasks": [
        {
            "id": "902",
            "dataset": "Dataset902_MyOrgans",
            "trainer": "nnUNetTrainer",
            "plans": "nnUNetPlans",
            "configuration": "3d_fullres",
            "folds": ["all"],
        }
    ],
}
#: The model's own label names differ from the structures': the table decides the coding.
LABEL_ROWS = (
    "model,task,label,label_name,structure\n"
    "my-organs,902,1,soft,liver\n"
    "my-organs,902,2,dense,spleen\n"
)


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """card.json + labels.csv + Dataset902_MyOrgans/... written as files, nothing else."""
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    folder = tmp_path_factory.mktemp("family")
    make_model_folder(
        folder,
        SyntheticModel(
            dataset_id=902,
            dataset_name="MyOrgans",
            labels=("soft", "dense"),
            weights="threshold",
            thresholds_hu=(-200.0, 250.0),
            spacing=(20.0, 12.0, 12.0),
            patch_size=(8, 16, 16),
            folds=("all",),
        ),
    )
    (folder / "card.json").write_text(json.dumps(CARD, indent=2))
    (folder / "labels.csv").write_text(LABEL_ROWS)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("form", ["folder", "card"])
def test_a_family_of_data_files_runs_end_to_end_coded_from_the_catalog(
    family: Path,
    form: str,
    s3_server: str,
    s3_client: Any,
    idc_upload: Any,
    tmp_path: Path,
) -> None:
    _, upload_series, _ = idc_upload
    ref = upload_series(s3_client, tmp_path / "ct", 21)
    selection = tmp_path / "selection.parquet"
    write_selection([ref], selection)
    out = tmp_path / "out"
    model = family if form == "folder" else family / "card.json"
    command = [
        *(sys.executable, "-m", "omas_idc.cli", "run"),
        *("--selection", str(selection), "--model", str(model), "--out", str(out)),
        *("--work", str(tmp_path / "work"), "--device", "cpu", "--endpoint-url", s3_server),
        *("--timestamp", "2026-05-01T00:00:00"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

    series = out / ref.collection_id / ref.patient_id / ref.study_instance_uid
    series = series / ref.series_instance_uid
    names = {p.name for p in series.iterdir()}
    assert {"sr.dcm", "DONE.json"} <= names, names
    (seg_path,) = [series / n for n in names if n.startswith("seg_")]
    seg = pydicom.dcmread(seg_path)
    catalog = load_catalog()
    coded = {}
    for segment in seg.SegmentSequence:
        code = segment.SegmentedPropertyTypeCodeSequence[0]
        if (code.CodingSchemeDesignator, code.CodeValue) == ("DCM", "125040"):
            continue  # the LABELMAP's background segment
        assert segment.SegmentAlgorithmName == "my-organs"
        coded[segment.SegmentLabel] = (code.CodeValue, code.CodeMeaning)
    expected = {
        name: (catalog.by_name(name).type.value, catalog.by_name(name).type.meaning)
        for name in ("liver", "spleen")
    }
    assert coded == expected
    sr = pydicom.dcmread(series / "sr.dcm")
    assert sr.Modality == "SR"
    report = json.loads((tmp_path / "work" / "run-report-0-of-1.json").read_text())
    assert report["model"]["name"] == "my-organs"
    assert (report["done"], report["failed"]) == (1, 0)
