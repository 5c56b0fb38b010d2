"""``omas-idc release-labels`` end to end: two datasets annotating different subsets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from release_helpers import (
    ABDOMEN,
    ABSENT,
    GRID,
    NOT_ANNOTATED,
    PRESENT,
    THORAX,
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
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import read_series


def _omas_idc(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    return subprocess.run([script, *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, phantom: Phantom) -> dict:
    root = tmp_path_factory.mktemp("cli")
    labels = root / "labels"
    labels.mkdir()
    # The thorax dataset's series is found in --dicom by the content of its image.
    chest = make_phantom(
        root / "dicom" / "chest",
        PhantomOptions(seed=2, patient_position="FFS", **GRID),  # type: ignore[arg-type]
    )
    save_in_convention(
        labels / "chest_ct.nii.gz",
        read_series(chest.files[0].parent).hu,
        chest.geometry.affine,
        Convention("canonical", canonical=True),
    )
    save_in_convention(
        labels / "chest.nii.gz",
        relabel(chest, THORAX),
        chest.geometry.affine,
        Convention("canonical", canonical=True),
    )
    save_in_convention(
        labels / "abd.nii.gz",
        relabel(phantom, ABDOMEN),
        phantom.geometry.affine,
        Convention("permuted", axes=(1, 0, 2), flips=(False, False, True)),
    )
    coarse = phantom.geometry.affine.copy()
    coarse[:3, 0] *= 1.05
    save_in_convention(labels / "coarse.nii.gz", relabel(phantom, ABDOMEN), coarse, Convention("x"))
    write_tables(
        root / "tables",
        {"abdomen": ("MANUAL", ABDOMEN), "thorax": ("SEMIAUTOMATIC", THORAX)},
    )
    series_dir = str(phantom.files[0].parent)
    write_manifest(
        root / "manifest.csv",
        [
            {
                "case_id": "abd-1",
                "dataset": "abdomen",
                "labels": "abd.nii.gz",
                "series_dir": series_dir,
            },
            {
                "case_id": "chest-1",
                "dataset": "thorax",
                "labels": "chest.nii.gz",
                "image": "chest_ct.nii.gz",
            },
            {
                "case_id": "abd-2",
                "dataset": "abdomen",
                "labels": "coarse.nii.gz",
                "series_dir": series_dir,
            },
        ],
    )
    return {"root": root, "chest": chest}


def _run(project: dict, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    root = project["root"]
    return _omas_idc(
        "release-labels",
        "--labels",
        str(root / "labels"),
        "--manifest",
        str(root / "manifest.csv"),
        "--label-tables",
        str(root / "tables"),
        "--dicom",
        str(root / "dicom"),
        "--out",
        str(root / out),
        "--timestamp",
        "2026-02-03T04:05:06",
        *extra,
    )


def test_the_cli_releases_two_datasets_and_records_the_refusal(
    project: dict, phantom: Phantom, catalog: Catalog
) -> None:
    result = _run(project, "out")
    assert result.returncode == 1, result.stderr  # one case refused
    assert "grid-spacing" in result.stderr
    out = project["root"] / "out"
    outcomes = {o["case_id"]: o for o in json.loads((out / "outcomes.json").read_text())}
    assert {k: (o["status"], o["reason"]) for k, o in outcomes.items()} == {
        "abd-1": ("done", ""),
        "chest-1": ("done", ""),
        "abd-2": ("refused", "grid-spacing"),
    }
    assert outcomes["chest-1"]["series_match"] == "content"
    chest: Phantom = project["chest"]
    chest_volume = read_series(chest.files[0].parent)
    names = seg_label_names(Path(outcomes["chest-1"]["seg_path"]), chest_volume, catalog)
    present = [n for n, v in THORAX.items() if np.any(relabel(chest, THORAX) == v)]
    assert present
    np.testing.assert_array_equal(names, truth_names(chest, present))
    for path in (outcomes["chest-1"]["seg_path"], outcomes["chest-1"]["sr_path"]):
        assert dciodvfy_errors(Path(path)) == []
    # Each case reports the union of both tables: the other dataset's structures are
    # "not annotated", never "absent".
    statuses = sr_statuses(Path(outcomes["chest-1"]["sr_path"]), catalog)
    assert {n: statuses[n] for n in ABDOMEN} == dict.fromkeys(ABDOMEN, NOT_ANNOTATED)
    assert {n: statuses[n] for n in THORAX} == {
        n: PRESENT if n in present else ABSENT for n in THORAX
    }
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    assert sorted({r["case_id"] for r in rows}) == ["abd-1", "chest-1"]
    assert len(rows) == 2 * (len(ABDOMEN) + len(THORAX))


def test_a_rerun_is_byte_identical_and_the_labelmap_layout_reads_back(
    project: dict, phantom: Phantom, catalog: Catalog
) -> None:
    root = project["root"]
    if not (root / "out").exists():
        _run(project, "out")
    _run(project, "again")
    for path in sorted((root / "out" / "cases").rglob("*.dcm")):
        twin = root / "again" / path.relative_to(root / "out")
        assert twin.read_bytes() == path.read_bytes(), path.name
    result = _run(project, "labelmap", "--layout", "labelmap")
    assert result.returncode == 1
    seg = root / "labelmap" / "cases" / "abd-1" / "seg_abdomen.dcm"
    assert dciodvfy_errors(seg) == []
    names = seg_label_names(seg, read_series(phantom.files[0].parent), catalog)
    np.testing.assert_array_equal(
        names, truth_names(phantom, ["liver", "spleen", "kidney_right", "kidney_left"])
    )
