"""Manifests, label tables and annotated sets: refused with named reasons, never guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_helpers import ABDOMEN, Convention, relabel, save_in_convention, write_tables

from omas_idc.catalog.model import Catalog
from omas_idc.encode.annotation_sr import AnnotationStatus
from omas_idc.errors import ConfigurationError
from omas_idc.phantom import Phantom
from omas_idc.release import (
    ManifestCase,
    ReleaseError,
    SeriesIndex,
    annotation_statuses,
    load_label_tables,
    prepare_case,
    read_manifest,
    structure_universe,
)


def test_a_broken_label_table_refuses_its_cases_and_spares_the_other_datasets(
    tmp_path: Path, catalog: Catalog
) -> None:
    tables = write_tables(
        tmp_path,
        {
            "good": ("MANUAL", {"liver": 1}),
            "typo": ("MANUAL", {"livr": 1}),
            "twice": ("MANUAL", {"liver": 1, "spleen": 2}),
        },
    )
    (tables / "twice.csv").write_text("label,structure\n1,liver\n2,liver\n")
    registry = load_label_tables(tables, catalog)
    assert registry.get("good").labels[1].name == "liver"
    for name, reason in [
        ("typo", "unknown-structure"),
        ("twice", "bad-label-table"),
        ("absent", "unknown-dataset"),
    ]:
        with pytest.raises(ReleaseError) as info:
            registry.get(name, case_id="case-7")
        assert (info.value.reason, info.value.case_id) == (reason, "case-7")
    with pytest.raises(ReleaseError, match="Did you mean 'liver'"):
        registry.get("typo")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[datasets.semi]\nannotation_type = "SEMIAUTOMATIC"\n', "name their algorithm"),
        ('[datasets.cads]\nannotation_type = "MANUAL"\n', "another name"),
        ('[datasets.x]\nannotation_type = "GUESSED"\n', "MANUAL, SEMIAUTOMATIC"),
        ('[datasets.x]\nannotation_type = "MANUAL"\nannotater = "A"\n', "unknown keys"),
    ],
)
def test_invalid_dataset_metadata_stops_the_release(
    tmp_path: Path, catalog: Catalog, toml: str, message: str
) -> None:
    (tmp_path / "datasets.toml").write_text(toml)
    for name in ("semi", "cads", "x"):
        (tmp_path / f"{name}.csv").write_text("label,structure\n1,liver\n")
    with pytest.raises(ConfigurationError, match=message):
        load_label_tables(tmp_path, catalog)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("case_id,dataset,labels\na,d,a.nii\na,d,b.nii\n", "repeated"),
        ("case_id,dataset,labels\n../up,d,a.nii\n", "must be 1-64 letters"),
        ("case_id,dataset,labels,series\na,d,a.nii,1\n", "unknown columns"),
        ("case_id,dataset\na,d\n", "missing columns"),
    ],
)
def test_invalid_manifests_are_refused_as_a_whole(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        read_manifest(tmp_path / "m.csv", tmp_path)


@pytest.fixture
def case_setup(tmp_path: Path, phantom: Phantom, catalog: Catalog) -> tuple:
    registry = load_label_tables(
        write_tables(tmp_path / "tables", {"abdomen": ("MANUAL", ABDOMEN)}), catalog
    )
    return registry, phantom.files[0].parent


def _case(path: Path, series_dir: Path, structures: tuple[str, ...] | None = None) -> ManifestCase:
    return ManifestCase("c", "abdomen", path, series_dir=series_dir, structures=structures)


def test_a_case_that_annotated_fewer_structures_reports_the_others_as_not_annotated(
    tmp_path: Path, phantom: Phantom, catalog: Catalog, case_setup: tuple
) -> None:
    registry, series_dir = case_setup
    labels = relabel(phantom, {"liver": 1, "vertebrae_L1": 5})
    path = save_in_convention(
        tmp_path / "l.nii.gz", labels, phantom.geometry.affine, Convention("x")
    )
    prepared = prepare_case(
        _case(path, series_dir, ("liver", "vertebrae_L1")), registry, SeriesIndex(None)
    )
    universe = [catalog.by_name(n) for n in ABDOMEN]
    statuses = {
        s.structure.name: s.status
        for s in annotation_statuses(prepared.labelmap.array, prepared.annotated, universe, 3500.0)
    }
    assert statuses == {
        "liver": AnnotationStatus.PRESENT,
        "vertebrae_L1": AnnotationStatus.ABSENT,
        "spleen": AnnotationStatus.NOT_ANNOTATED,
        "kidney_right": AnnotationStatus.NOT_ANNOTATED,
        "kidney_left": AnnotationStatus.NOT_ANNOTATED,
    }


@pytest.mark.parametrize(
    ("structures", "values", "reason"),
    [
        (("liver", "heart"), None, "unknown-structure"),  # heart is not in the table
        (("liver",), None, "not-annotated-label"),  # the map holds the spleen too
        (None, "float", "bad-labels"),
        (None, "negative", "bad-labels"),
    ],
)
def test_label_maps_that_contradict_their_tables_are_refused(
    tmp_path: Path,
    phantom: Phantom,
    case_setup: tuple,
    structures: tuple[str, ...] | None,
    values: str | None,
    reason: str,
) -> None:
    registry, series_dir = case_setup
    labels: np.ndarray = relabel(phantom, {"liver": 1, "spleen": 2})
    if values == "float":
        labels = labels.astype(np.float32) * 0.5  # interpolated labels
    elif values == "negative":
        labels = labels.astype(np.int16) - 1
    path = save_in_convention(
        tmp_path / "l.nii.gz", labels, phantom.geometry.affine, Convention("x")
    )
    with pytest.raises(ReleaseError) as info:
        prepare_case(_case(path, series_dir, structures), registry, SeriesIndex(None))
    assert info.value.reason == reason


def test_the_structure_universe_is_the_union_of_the_tables_or_all_cads_structures(
    tmp_path: Path, catalog: Catalog
) -> None:
    registry = load_label_tables(
        write_tables(
            tmp_path, {"a": ("MANUAL", {"spleen": 1, "liver": 2}), "b": ("MANUAL", {"heart": 1})}
        ),
        catalog,
    )
    datasets = list(registry.datasets.values())
    union = structure_universe(catalog, datasets)
    rank = [s.name for s in catalog.structures]
    assert sorted(s.name for s in union) == ["heart", "liver", "spleen"]
    assert [s.name for s in union] == sorted((s.name for s in union), key=rank.index)
    cads = structure_universe(catalog, datasets, "cads")
    by_cads = {row.structure for row in catalog.labels if row.model == "cads"}
    assert {s.name for s in cads} == by_cads | {"heart", "liver", "spleen"}
    assert len(structure_universe(catalog, datasets, "catalog")) == len(catalog)
    with pytest.raises(ConfigurationError, match="universe must be one of"):
        structure_universe(catalog, datasets, "everything")


def test_a_labels_file_that_is_not_nifti_is_refused(tmp_path: Path, case_setup: tuple) -> None:
    registry, series_dir = case_setup
    (tmp_path / "l.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(ReleaseError) as info:
        prepare_case(_case(tmp_path / "l.nii.gz", series_dir), registry, SeriesIndex(None))
    assert info.value.reason == "bad-labels"
