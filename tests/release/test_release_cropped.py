"""Cropped annotations through the whole release: what the crop cannot see is not "absent".

A dataset that stored its labels cropped to part of the series annotated only that part. A
structure of its label table without voxels there may lie outside the crop, so the release
must not claim it is absent from the series; structures the crop cuts through keep the status
their voxels inside it give them.
"""

from __future__ import annotations

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
    Convention,
    dciodvfy_errors,
    relabel,
    save_in_convention,
    seg_label_names,
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

#: Slices 4-11 of 12, rows 3-39, columns 0-39, stored flipped and as canonical RAS. At the
#: test grid kidney_right lies in slices 2-3 (wholly outside), kidney_left in slices 2-4
#: (partly inside), liver and spleen in slices 4-5 (inside); vertebrae_L1 is nowhere.
CROP = Convention(
    "cropped-canonical",
    crop=(slice(4, 12), slice(3, 40), slice(0, 40)),
    flips=(True, True, False),
    canonical=True,
)
#: Zero slices, rows and columns around the whole grid: the annotation covers the series.
PAD = (2, 1, 3)


def _padded(truth: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(truth, [(p, p) for p in PAD])
    shifted = affine.copy()
    shifted[:3, 3] -= shifted[:3, :3] @ np.array(PAD[::-1], dtype=float)
    return padded, shifted


@pytest.fixture(scope="module")
def release(
    tmp_path_factory: pytest.TempPathFactory, phantom: Phantom, catalog: Catalog
) -> tuple[Path, dict[str, CaseOutcome], CTVolume]:
    root = tmp_path_factory.mktemp("release-cropped")
    labels = root / "labels"
    labels.mkdir()
    affine = phantom.geometry.affine
    truth = relabel(phantom, ABDOMEN)
    save_in_convention(labels / "crop.nii.gz", truth, affine, CROP)
    save_in_convention(labels / "full.nii.gz", truth, affine, Convention("dicom-order"))
    padded, padded_affine = _padded(truth, affine)
    save_in_convention(labels / "pad.nii.gz", padded, padded_affine, Convention("padded"))
    tables = write_tables(root / "tables", {"abdomen": ("MANUAL", ABDOMEN)})
    series_dir = str(phantom.files[0].parent)
    manifest = write_manifest(
        root / "manifest.csv",
        [
            {"case_id": c, "dataset": "abdomen", "labels": f"{c}.nii.gz", "series_dir": series_dir}
            for c in ("crop", "full", "pad")
        ],
    )
    outcomes = release_annotations(
        read_manifest(manifest, labels),
        load_label_tables(tables, catalog),
        SeriesIndex(None),
        catalog,
        ReleaseOptions(out=root / "out", timestamp=datetime(2026, 5, 6, 7, 8, 9)),
    )
    return root / "out", {o.case_id: o for o in outcomes}, read_series(phantom.files[0].parent)


def test_the_crop_really_cuts_the_structures_as_the_test_assumes(phantom: Phantom) -> None:
    truth = relabel(phantom, ABDOMEN)
    inside = truth[CROP.crop]
    outside = truth.copy()
    outside[CROP.crop] = 0
    assert not np.any(inside == ABDOMEN["kidney_right"])
    assert np.any(outside == ABDOMEN["kidney_right"])
    assert np.any(inside == ABDOMEN["kidney_left"])
    assert np.any(outside == ABDOMEN["kidney_left"])
    for name in ("liver", "spleen"):
        assert np.any(inside == ABDOMEN[name])
        assert not np.any(outside == ABDOMEN[name])
    assert not np.any(truth == ABDOMEN["vertebrae_L1"])


def test_cropped_padded_and_full_cases_are_released_and_pass_dciodvfy(release: tuple) -> None:
    _, outcomes, _ = release
    assert {k: (o.status, o.reason) for k, o in outcomes.items()} == {
        "crop": ("done", ""),
        "full": ("done", ""),
        "pad": ("done", ""),
    }
    for outcome in outcomes.values():
        for path in (outcome.seg_path, outcome.sr_path):
            assert Path(path).is_file()
            assert dciodvfy_errors(Path(path)) == [], path


def test_the_cropped_seg_holds_exactly_the_labels_inside_the_crop(
    release: tuple, phantom: Phantom, catalog: Catalog
) -> None:
    _, outcomes, volume = release
    names = seg_label_names(Path(outcomes["crop"].seg_path), volume, catalog)
    expected = np.full(names.shape, "", dtype=object)
    expected[CROP.crop] = truth_names(phantom, list(ABDOMEN))[CROP.crop]
    np.testing.assert_array_equal(names, expected)


STATUSES = {
    # Outside the crop: not known, so not annotated (never "absent"); partly inside: present.
    "crop": {
        "liver": PRESENT,
        "spleen": PRESENT,
        "kidney_left": PRESENT,
        "kidney_right": NOT_ANNOTATED,
        "vertebrae_L1": NOT_ANNOTATED,
    },
    # The annotation covers the series (padding included): absent means absent.
    "full": {**dict.fromkeys(ABDOMEN, PRESENT), "vertebrae_L1": ABSENT},
    "pad": {**dict.fromkeys(ABDOMEN, PRESENT), "vertebrae_L1": ABSENT},
}


@pytest.mark.parametrize("case", ["crop", "full", "pad"])
def test_structures_outside_the_crop_are_not_annotated_and_the_others_keep_their_status(
    release: tuple, catalog: Catalog, case: str
) -> None:
    out, outcomes, _ = release
    assert sr_statuses(Path(outcomes[case].sr_path), catalog) == STATUSES[case]
    codes = {"annotated_present": PRESENT, "annotated_absent": ABSENT}
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    table = {r["structure"]: r for r in rows if r["case_id"] == case}
    assert {n: codes.get(r["status"], NOT_ANNOTATED) for n, r in table.items()} == STATUSES[case]
    for name, row in table.items():
        assert row["annotated"] == (STATUSES[case][name] != NOT_ANNOTATED)
    counts = [STATUSES[case][n] for n in ABDOMEN]
    outcome = outcomes[case]
    assert (outcome.present, outcome.absent, outcome.not_annotated) == (
        counts.count(PRESENT),
        counts.count(ABSENT),
        counts.count(NOT_ANNOTATED),
    )


def test_a_structure_cut_by_the_crop_counts_only_its_voxels_inside(
    release: tuple, phantom: Phantom
) -> None:
    out, outcomes, _ = release
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    truth = relabel(phantom, ABDOMEN)
    for name in ("kidney_left", "liver"):
        label = ABDOMEN[name]
        crop = next(r for r in rows if r["case_id"] == "crop" and r["structure"] == name)
        full = next(r for r in rows if r["case_id"] == "full" and r["structure"] == name)
        assert crop["voxel_count"] == np.count_nonzero(truth[CROP.crop] == label)
        assert full["voxel_count"] == np.count_nonzero(truth == label)
    segments = {
        str(s.SegmentLabel) for s in hd.seg.segread(outcomes["crop"].seg_path).SegmentSequence
    }
    assert segments == {"liver", "spleen", "kidney left"}
