"""Released annotations: SEGs equal the truth, validators accept them, statuses are right."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pyarrow.parquet as pq
import pytest
from release_helpers import (
    ABDOMEN,
    ABSENT,
    NOT_ANNOTATED,
    PRESENT,
    THORAX,
    Convention,
    dciodvfy_errors,
    pixelmed_errors,
    relabel,
    save_in_convention,
    seg_label_names,
    sr_segment_groups,
    sr_statuses,
    truth_names,
    write_manifest,
    write_tables,
)

from omas_idc.catalog.model import Catalog
from omas_idc.phantom import Phantom
from omas_idc.read import read_series
from omas_idc.release import (
    CaseOutcome,
    ReleaseOptions,
    SeriesIndex,
    load_label_tables,
    read_manifest,
    release_annotations,
)
from omas_idc.volume import CTVolume

#: The phantom at this grid has no vertebrae_L1 and no vertebrae_T12.
ABDOMEN_PRESENT = ["liver", "spleen", "kidney_right", "kidney_left"]
THORAX_PRESENT = ["heart", "aorta", "lung_upper_lobe_left"]


@pytest.fixture(scope="module")
def release(
    tmp_path_factory: pytest.TempPathFactory, phantom: Phantom, catalog: Catalog
) -> tuple[Path, dict[str, CaseOutcome], CTVolume]:
    root = tmp_path_factory.mktemp("release")
    labels = root / "labels"
    labels.mkdir()
    affine = phantom.geometry.affine
    save_in_convention(
        labels / "abd.nii.gz", relabel(phantom, ABDOMEN), affine, Convention("ras", canonical=True)
    )
    save_in_convention(
        labels / "tho.nii.gz",
        relabel(phantom, THORAX),
        affine,
        Convention("dcm2niix", flips=(False, True, False)),
    )
    save_in_convention(
        labels / "empty.nii.gz", np.zeros(phantom.labels.shape, np.uint8), affine, Convention("x")
    )
    shifted = affine.copy()
    shifted[:3, 3] += 0.5 * shifted[:3, 2]
    save_in_convention(labels / "shift.nii.gz", relabel(phantom, ABDOMEN), shifted, Convention("x"))
    stray = relabel(phantom, ABDOMEN)
    stray[0, 0, 0] = 42
    save_in_convention(labels / "stray.nii.gz", stray, affine, Convention("x"))
    tables = write_tables(
        root / "tables", {"abdomen": ("MANUAL", ABDOMEN), "thorax": ("SEMIAUTOMATIC", THORAX)}
    )
    series_dir = str(phantom.files[0].parent)
    uid = phantom.series_instance_uid
    manifest = write_manifest(
        root / "manifest.csv",
        [
            {
                "case_id": "abd",
                "dataset": "abdomen",
                "labels": "abd.nii.gz",
                "series_dir": series_dir,
            },
            {
                "case_id": "shift",
                "dataset": "abdomen",
                "labels": "shift.nii.gz",
                "series_dir": series_dir,
            },
            {
                "case_id": "tho",
                "dataset": "thorax",
                "labels": "tho.nii.gz",
                "series_instance_uid": uid,
            },
            {
                "case_id": "stray",
                "dataset": "abdomen",
                "labels": "stray.nii.gz",
                "series_dir": series_dir,
            },
            {
                "case_id": "empty",
                "dataset": "thorax",
                "labels": "empty.nii.gz",
                "series_dir": series_dir,
            },
        ],
    )
    outcomes = release_annotations(
        read_manifest(manifest, labels),
        load_label_tables(tables, catalog),
        SeriesIndex(phantom.files[0].parent.parent),
        catalog,
        ReleaseOptions(out=root / "out", timestamp=datetime(2026, 5, 6, 7, 8, 9)),
    )
    volume = read_series(phantom.files[0].parent)
    return root / "out", {o.case_id: o for o in outcomes}, volume


def test_bad_cases_are_refused_with_a_reason_and_the_others_released(release: tuple) -> None:
    out, outcomes, _ = release
    assert {k: (o.status, o.reason) for k, o in outcomes.items()} == {
        "abd": ("done", ""),
        "shift": ("refused", "grid-offset"),
        "tho": ("done", ""),
        "stray": ("refused", "unknown-label"),
        "empty": ("done", ""),
    }
    assert "[42]" in outcomes["stray"].message
    recorded = json.loads((out / "outcomes.json").read_text())
    assert [r["case_id"] for r in recorded] == ["abd", "shift", "tho", "stray", "empty"]
    assert recorded[1]["reason"] == "grid-offset"
    assert recorded[1]["error_class"] == "ReleaseError"
    assert outcomes["tho"].series_match == "uid"
    assert outcomes["abd"].series_match == "series-dir"
    assert not (out / "cases" / "shift").exists()
    # A case whose annotated structures are all absent has no SEG, only its SR.
    assert outcomes["empty"].seg_path == ""
    assert Path(outcomes["empty"].sr_path).is_file()


@pytest.mark.parametrize(("case", "present"), [("abd", ABDOMEN_PRESENT), ("tho", THORAX_PRESENT)])
def test_seg_read_back_equals_the_truth_on_the_dicom_grid(
    release: tuple, phantom: Phantom, catalog: Catalog, case: str, present: list[str]
) -> None:
    _, outcomes, volume = release
    names = seg_label_names(Path(outcomes[case].seg_path), volume, catalog)
    np.testing.assert_array_equal(names, truth_names(phantom, present))


def test_segs_and_srs_pass_dciodvfy(release: tuple) -> None:
    _, outcomes, _ = release
    paths = [Path(o.seg_path) for o in outcomes.values() if o.seg_path]
    paths += [Path(o.sr_path) for o in outcomes.values() if o.sr_path]
    assert len(paths) == 5
    for path in paths:
        assert dciodvfy_errors(path) == [], path


def test_manual_and_semiautomatic_segs_say_who_annotated(release: tuple) -> None:
    _, outcomes, _ = release
    manual = hd.seg.segread(outcomes["abd"].seg_path)
    assert {str(s.SegmentAlgorithmType) for s in manual.SegmentSequence} == {"MANUAL"}
    assert all("SegmentAlgorithmName" not in s for s in manual.SegmentSequence)
    assert str(manual.ContentCreatorName) == "Doe^Jane"
    semi = hd.seg.segread(outcomes["tho"].seg_path)
    for segment in semi.SegmentSequence:
        assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
        assert segment.SegmentAlgorithmName == "MONAI Label"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("MONAI Label", "0.8.1")
    # Distinct from model output and from each other: own series, own description.
    assert manual.SeriesInstanceUID != semi.SeriesInstanceUID
    assert manual.SeriesDescription == "abdomen manual annotations"
    assert semi.SeriesDescription == "thorax semiautomatic annotations"


def _expected(present: list[str], absent: list[str]) -> dict[str, str]:
    universe = [*ABDOMEN, *THORAX]
    return {
        name: PRESENT if name in present else ABSENT if name in absent else NOT_ANNOTATED
        for name in universe
    }


EXPECTED = {
    "abd": _expected(ABDOMEN_PRESENT, ["vertebrae_L1"]),
    "tho": _expected(THORAX_PRESENT, ["vertebrae_T12"]),
    "empty": _expected([], list(THORAX)),
}


@pytest.mark.parametrize("case", ["abd", "tho", "empty"])
def test_the_sr_records_the_status_of_every_structure(
    release: tuple, catalog: Catalog, case: str
) -> None:
    _, outcomes, _ = release
    sr_path = Path(outcomes[case].sr_path)
    assert sr_statuses(sr_path, catalog) == EXPECTED[case]
    groups = sr_segment_groups(sr_path)
    present = sorted(n for n, s in EXPECTED[case].items() if s == PRESENT)
    assert sorted(groups) == present
    if present:
        seg = hd.seg.segread(outcomes[case].seg_path)
        for name, (sop, number, status) in groups.items():
            assert sop == seg.SOPInstanceUID
            assert status == PRESENT
            assert seg.get_segment_description(number).SegmentLabel == name.replace("_", " ")


def test_the_annotations_table_has_every_structure_of_every_released_case(
    release: tuple,
) -> None:
    out, outcomes, _ = release
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    assert len(rows) == 3 * 9
    status_text = {
        "annotated_present": PRESENT,
        "annotated_absent": ABSENT,
        "not_annotated": NOT_ANNOTATED,
    }
    for case, expected in EXPECTED.items():
        mine = {r["structure"]: r for r in rows if r["case_id"] == case}
        assert {k: status_text[r["status"]] for k, r in mine.items()} == expected
        for name, row in mine.items():
            assert row["annotated"] == (expected[name] != NOT_ANNOTATED)
            assert (row["segment_number"] is not None) == (expected[name] == PRESENT)
            assert (row["volume_ml"] or 0) > 0 or expected[name] != PRESENT
    liver = next(r for r in rows if r["case_id"] == "abd" and r["structure"] == "liver")
    assert liver["label"] == ABDOMEN["liver"]
    assert liver["source_label_name"] == "LIVER"
    assert liver["annotation_type"] == "MANUAL"
    assert liver["licence"] == "CC BY 4.0"
    assert liver["seg_sop_instance_uid"] == str(
        hd.seg.segread(outcomes["abd"].seg_path).SOPInstanceUID
    )


def test_the_sr_passes_pixelmed(release: tuple) -> None:
    """One report with present, absent and not annotated structures, lateral ones included."""
    _, outcomes, _ = release
    assert pixelmed_errors(Path(outcomes["abd"].sr_path)) == []
