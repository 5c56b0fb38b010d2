"""The real TotalSegmentator example: maps voxel for voxel, then is refused for its empty UIDs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from release_helpers import write_manifest

from omas_idc.catalog.model import Catalog
from omas_idc.errors import EncodingError
from omas_idc.release import (
    PreparedCase,
    ReleaseOptions,
    SeriesIndex,
    encode_case,
    load_label_tables,
    prepare_case,
    read_manifest,
    release_annotations,
    structure_universe,
)


@pytest.fixture(scope="module")
def example(shared_data: Path, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The example's files, a label table of TotalSegmentator's ``total`` task, a manifest."""
    references = next(shared_data.glob("totalsegmentator/**/example_ct_dicom")).parent
    classes = json.loads((references / "totalseg_class_map_EXTRACTED.json").read_text())["total"]
    root = tmp_path_factory.mktemp("totalseg")
    tables = root / "tables"
    tables.mkdir()
    rows = "".join(
        f"{value},{catalog.by_model_label('totalseg', 'total', int(value)).name},{name}\n"
        for value, name in classes.items()
    )
    (tables / "totalseg-example.csv").write_text("label,structure,source_name\n" + rows)
    (tables / "datasets.toml").write_text(
        "[datasets.totalseg-example]\n"
        'version = "85844d5"\n'
        'annotation_type = "AUTOMATIC"\n'
        'algorithm = "TotalSegmentator --fast --ml"\n'
        'licence = "Apache-2.0"\n'
    )
    manifest = write_manifest(
        root / "manifest.csv",
        [
            {
                "case_id": "example",
                "dataset": "totalseg-example",
                "labels": "example_seg_dicom.nii.gz",
                "series_dir": str(references / "example_ct_dicom"),
            }
        ],
    )
    return {
        "root": root,
        "cases": read_manifest(manifest, references),
        "registry": load_label_tables(tables, catalog),
        "nifti": references / "example_seg_dicom.nii.gz",
    }


@pytest.fixture(scope="module")
def prepared(example: dict) -> PreparedCase:
    return prepare_case(example["cases"][0], example["registry"], SeriesIndex(None))


def test_the_example_maps_onto_its_dicom_series_as_provenance_documents(
    example: dict, prepared: PreparedCase
) -> None:
    """PROVENANCE.md: NIfTI i = DICOM column, j = 511 - DICOM row, k = 0 the most inferior."""
    volume = prepared.volume
    assert volume.series_instance_uid == ""  # blanked by the anonymiser
    assert volume.shape == (20, 512, 512)
    assert volume.geometry.slice_positions[0][2] == pytest.approx(-804.5)
    assert volume.geometry.slice_positions[-1][2] == pytest.approx(-766.5)
    data = np.asarray(nib.load(example["nifti"]).dataobj)
    for k in range(20):
        np.testing.assert_array_equal(prepared.labelmap.array[k], data[:, ::-1, k].T)
    assert len(prepared.labelmap.present_labels()) == 31


def test_encoding_the_example_is_refused_for_its_empty_uids(
    example: dict, prepared: PreparedCase, catalog: Catalog
) -> None:
    universe = structure_universe(catalog, [prepared.dataset])
    with pytest.raises(EncodingError) as info:
        encode_case(prepared, catalog, universe, datetime(2026, 1, 1))
    assert info.value.reason == "empty-uids"
    outcomes = release_annotations(
        example["cases"],
        example["registry"],
        SeriesIndex(None),
        catalog,
        ReleaseOptions(out=example["root"] / "out", timestamp=datetime(2026, 1, 1)),
    )
    assert [(o.status, o.reason, o.error_class) for o in outcomes] == [
        ("refused", "empty-uids", "EncodingError")
    ]
    recorded = json.loads((example["root"] / "out" / "outcomes.json").read_text())
    assert recorded[0]["reason"] == "empty-uids"
    assert "Restore the UIDs" in recorded[0]["message"]
    assert not list((example["root"] / "out").rglob("*.dcm"))
