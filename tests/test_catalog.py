"""The structure catalog: every model label resolves, the coding follows DICOM Part 16, and the
validator catches each kind of bad row."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest

from omas_idc.catalog import (
    Catalog,
    Code,
    LabelRow,
    Structure,
    builtin_labels,
    default_structures_path,
    load_catalog,
    part16,
    read_structures_csv,
    validate_structures,
)
from omas_idc.errors import CatalogError

LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    return read_structures_csv(default_structures_path())


@pytest.fixture(scope="module")
def labels() -> list[LabelRow]:
    return builtin_labels()


@pytest.fixture(scope="module")
def coding(shared_reference: Path) -> Path:
    return shared_reference / "coding"


def _replace(rows: list[Structure], name: str, **changes: object) -> list[Structure]:
    return [dataclasses.replace(s, **changes) if s.name == name else s for s in rows]  # type: ignore[arg-type]


def _by_name(rows: list[Structure], name: str) -> Structure:
    return next(s for s in rows if s.name == name)


def _rules(rows: list[Structure], name: str | None = None) -> set[str]:
    report = validate_structures(rows)
    return {i.rule for i in report.errors if name is None or i.name == name}


# --- the shipped catalog ------------------------------------------------------------------


def test_shipped_catalog_passes_every_rule_and_its_sources_check_out(
    structures: list[Structure], labels: list[LabelRow], coding: Path
) -> None:
    assert {row.model for row in labels} == {
        "cads",
        "totalseg",
        "totalseg-3mm",
        "totalseg-6mm",
        "totalseg-v3",
        "totalseg-v3-small",
        "totalseg-v3-3mm",
        "totalseg-v3-6mm",
        "omas-demo",
    }
    report = validate_structures(structures, labels, reference_dir=coding)
    assert report.errors == []
    assert report.sources_checked


def test_every_cads_class_resolves_to_its_structure(coding: Path) -> None:
    catalog = load_catalog()
    rows = [
        line.split("\t")
        for line in (coding / "cads_classes.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(rows) == 167
    for _, internal, _, task, label, _ in rows:
        by_number = catalog.by_model_label("cads", int(task), int(label))
        assert by_number is catalog.by_model_label("cads", task, internal)
        assert catalog.label_row("cads", task, int(label)).label_name == internal
        assert catalog.label_of(by_number.name, "cads") == catalog.label_row("cads", task, internal)
    assert sum(len(catalog.labels_for("cads", t)) for t in range(551, 560)) == 167


def test_every_totalsegmentator_total_class_resolves(shared_data: Path) -> None:
    class_map = json.loads(
        (
            shared_data / "totalsegmentator/tests/reference_files/totalseg_class_map_EXTRACTED.json"
        ).read_text()
    )["total"]
    catalog = load_catalog()
    assert len(class_map) == 117
    for label, name in class_map.items():
        structure = catalog.by_model_label("totalseg", "total", int(label))
        row = catalog.label_of(structure.name, "totalseg")
        assert row is not None
        assert row.label_name == name
    assert list(catalog.labels_for("totalseg", "total")) == list(range(1, 118))


def test_each_cads_idc_disagreement_is_resolved_with_a_reason(coding: Path) -> None:
    catalog = load_catalog()
    lines = (coding / "cads_vs_idc_mapping_differences.tsv").read_text().splitlines()
    rows = list(csv.DictReader((x for x in lines if not x.startswith("#")), delimiter="\t"))
    assert len(rows) == 14
    for row in rows:
        task = next(t for t in range(551, 560) if row["structure"] in _cads_names(catalog, t))
        s = catalog.by_model_label("cads", task, row["structure"])
        assert "CADS-IDC disagreement" in s.notes, s.name
        assert row["cads_type_code"] in s.notes
        assert row["idc_type_code"] in s.notes
        assert s.type.value in s.notes
        assert "taken" in s.notes


def _cads_names(catalog: Catalog, task: int) -> set[str]:
    return {
        catalog.label_row("cads", task, label).label_name
        for label in catalog.labels_for("cads", task)
    }


def test_outside_part16_types_are_listed_with_a_source(structures: list[Structure]) -> None:
    outside = [s for s in structures if s.outside_part16]
    assert 25 <= len({s.type.value for s in outside}) <= 40  # ribs, gluteal muscles, ...
    assert {"48535007", "206007", "68455001", "74281007"} <= {s.type.value for s in outside}
    for s in outside:
        assert part16.concepts(s.type.scheme, s.type.value) == ()
        assert s.outside_part16_source
        assert s.outside_part16_source.endswith(".csv")


def test_left_and_right_differ_by_laterality_not_by_text() -> None:
    catalog = load_catalog()
    left = catalog.by_model_label("totalseg", "total", "kidney_left")
    right = catalog.by_model_label("cads", 551, "kidney_right")
    assert left.type == right.type
    assert (left.type_modifier, right.type_modifier) == (LEFT, RIGHT)
    assert catalog.by_codes("64033007", "7771000") is left
    assert catalog.by_codes(right.type, right.type_modifier) is right
    cyst = catalog.by_codes("367643001", region="64033007", region_modifier="24028007")
    assert cyst.name == "kidney_cyst_right"


def test_misspelt_gluteus_minimus_is_corrected() -> None:
    s = load_catalog().by_name("gluteus_minimus_left")
    assert s.type.meaning == "Gluteus minimus muscle"


def test_one_row_serves_both_models_where_they_segment_the_same_structure() -> None:
    catalog = load_catalog()
    thyroid = catalog.by_model_label("cads", 558, "OAR_Glnd_Thyroid")
    assert thyroid is catalog.by_model_label("totalseg", "total", "thyroid_gland")
    assert catalog.by_model_label("cads", 551, 1) is catalog.by_model_label("totalseg", "total", 1)


def test_body_outline_has_a_part16_code_and_no_model_label() -> None:
    body = load_catalog().by_name("body")
    assert (body.type.value, body.type.meaning) == ("38266002", "Entire body")
    assert load_catalog().labels_of(body.name) == ()
    assert "Structure of" in body.notes


def test_unmapped_label_is_an_error_with_a_fix() -> None:
    catalog = load_catalog()
    with pytest.raises(CatalogError, match="not in the structure catalog"):
        catalog.by_model_label("cads", 551, 18)
    with pytest.raises(CatalogError, match="no task '999'"):
        catalog.by_model_label("cads", 999, 1)
    with pytest.raises(CatalogError, match="Did you mean 'totalseg'"):
        catalog.labels_for("totalseg2", "total")
    with pytest.raises(CatalogError, match="no structure in the catalog is coded"):
        catalog.by_codes("64033007")


def test_load_catalog_is_cached() -> None:
    assert load_catalog() is load_catalog()


# --- the validator on bad rows --------------------------------------------------------------


def test_misspelt_meaning_is_reported(structures: list[Structure]) -> None:
    s = _by_name(structures, "gluteus_minimus_left")
    rows = _replace(
        structures, s.name, type=dataclasses.replace(s.type, meaning="Gluteus minius muscle")
    )
    report = validate_structures(rows)
    assert [i.rule for i in report.errors] == ["spelling"]
    assert "minimus" in report.errors[0].message


def test_swapped_laterality_is_reported(structures: list[Structure]) -> None:
    assert "laterality" in _rules(_replace(structures, "kidney_left", type_modifier=RIGHT))


def test_sided_type_with_the_other_sides_modifier_is_reported(
    structures: list[Structure],
) -> None:
    right_subclavian = Code("29700009", "SCT", "Right Subclavian Artery")
    rows = _replace(structures, "subclavian_artery_left", type=right_subclavian)
    issues = validate_structures(rows).errors
    assert any("names the right side" in i.message for i in issues)


def test_pair_with_different_types_is_reported(structures: list[Structure]) -> None:
    second_rib = _by_name(structures, "rib_right_2").type
    rows = _replace(structures, "rib_right_1", type=second_rib)
    assert {"laterality", "duplicate"} <= _rules(rows)


def test_entire_concepts_are_reported(structures: list[Structure]) -> None:
    entire_gluteus = Code("181674001", "SCT", "Gluteus maximus muscle")  # IDC's hidden 'Entire'
    rows = _replace(structures, "gluteus_maximus_left", type=entire_gluteus)
    assert "entire" in _rules(rows, "gluteus_maximus_left")
    entire_vein = Code("53603007", "SCT", "Entire pulmonary vein (great vessel) (body structure)")
    assert "entire" in _rules(_replace(structures, "pulmonary_vein", type=entire_vein))


def test_duplicate_codes_are_reported(structures: list[Structure]) -> None:
    liver = _by_name(structures, "liver")
    issues = validate_structures(_replace(structures, "spleen", type=liver.type)).errors
    assert [(i.rule, i.name) for i in issues] == [("duplicate", "liver")]
    assert "spleen" in issues[0].message


def test_meaning_other_than_part16s_is_reported(structures: list[Structure]) -> None:
    liver = _by_name(structures, "liver")
    rows = _replace(structures, "liver", type=dataclasses.replace(liver.type, meaning="Hepar"))
    issues = [i for i in validate_structures(rows).errors if i.rule == "part16-meaning"]
    assert len(issues) == 1
    assert "'Liver'" in issues[0].message


def test_placeholder_code_is_reported(structures: list[Structure]) -> None:
    rows = _replace(structures, "liver", type=Code("1234567", "SCT", "Unknown"))
    assert "code" in _rules(rows, "liver")
    rows = _replace(structures, "liver", type=Code("10200005", "SCT", "Liver"))  # bad check digit
    assert "code" in _rules(rows, "liver")


def test_unmapped_label_is_reported(structures: list[Structure], labels: list[LabelRow]) -> None:
    rows = [row for row in labels if row.structure != "sacrum"]  # CADS 554/11 and total 25
    issues = [i for i in validate_structures(structures, rows).errors if i.rule == "labels"]
    assert {str(i) for i in issues} == {
        "cads 554: [labels] label 11 is not mapped",
        "totalseg total: [labels] label 25 is not mapped",
        "totalseg-3mm 297: [labels] label 25 is not mapped",
        "totalseg-6mm 298: [labels] label 25 is not mapped",
        "totalseg-v3 total_v3: [labels] label 25 is not mapped",
        "totalseg-v3-small total_v3: [labels] label 25 is not mapped",
        "totalseg-v3-3mm 836: [labels] label 25 is not mapped",
        "totalseg-v3-6mm 837: [labels] label 25 is not mapped",
    }


def test_label_of_an_unknown_structure_is_reported(
    structures: list[Structure], labels: list[LabelRow]
) -> None:
    rows = [s for s in structures if s.name != "sacrum"]
    issues = [i for i in validate_structures(rows, labels).errors if i.rule == "labels"]
    assert {str(i) for i in issues} == {
        "cads 554: [labels] label 11 (sacrum) names the unknown structure 'sacrum'. Did you "
        "mean 'sternum'?",
        "totalseg total: [labels] label 25 (sacrum) names the unknown structure 'sacrum'. Did "
        "you mean 'sternum'?",
        "totalseg-3mm 297: [labels] label 25 (sacrum) names the unknown structure 'sacrum'. "
        "Did you mean 'sternum'?",
        "totalseg-6mm 298: [labels] label 25 (sacrum) names the unknown structure 'sacrum'. "
        "Did you mean 'sternum'?",
        *(
            f"{task}: [labels] label 25 (sacrum) names the unknown structure 'sacrum'. "
            "Did you mean 'sternum'?"
            for task in (
                "totalseg-v3 total_v3",
                "totalseg-v3-small total_v3",
                "totalseg-v3-3mm 836",
                "totalseg-v3-6mm 837",
            )
        ),
    }
    with pytest.raises(CatalogError, match="not in the catalog"):
        Catalog(rows, labels)


def test_repeated_label_and_label_name_are_reported(
    structures: list[Structure], labels: list[LabelRow]
) -> None:
    spleen = next(r for r in labels if r.model == "cads" and r.structure == "spleen")
    twice = dataclasses.replace(spleen, structure="liver")
    issues = validate_structures(structures, [*labels, twice]).errors
    assert [(i.rule, i.name) for i in issues if i.rule == "labels"] == [
        ("labels", "liver"),
        ("labels", "cads 551"),
    ]
    with pytest.raises(CatalogError, match="cads task 551 label 1 is given to both"):
        Catalog(structures, [*labels, twice])


def test_wrong_label_name_against_the_cads_class_list_is_reported(
    structures: list[Structure], labels: list[LabelRow], coding: Path
) -> None:
    rows = [
        dataclasses.replace(r, label_name="milz") if r.label_name == "spleen" else r for r in labels
    ]
    issues = validate_structures(structures, rows, reference_dir=coding).errors
    assert [str(i) for i in issues] == [
        "spleen: [labels] cads task 551 label 1 is not 'milz' in cads_classes.txt"
    ]


def test_code_outside_part16_needs_a_source_that_gives_it(
    structures: list[Structure], coding: Path
) -> None:
    rows = _replace(structures, "rib_left_1", outside_part16_source=None)
    assert "outside-part16" in _rules(rows, "rib_left_1")
    wrong_meaning = Code("48535007", "SCT", "Rib one")
    rows = _replace(structures, "rib_left_1", type=wrong_meaning)
    issues = validate_structures(rows, reference_dir=coding).errors
    assert any(i.rule == "outside-part16" and i.name == "rib_left_1" for i in issues)
    rows = _replace(structures, "liver", outside_part16_source="cads_snomed_mapping.csv")
    assert "outside-part16" in _rules(rows, "liver")


def test_category_outside_cid7150_is_reported(structures: list[Structure]) -> None:
    body_structure = Code("123037004", "SCT", "Body structure (body structure)")
    assert "category" in _rules(_replace(structures, "liver", category=body_structure))


def test_indistinct_colours_in_one_label_map_are_reported(
    structures: list[Structure], labels: list[LabelRow]
) -> None:
    left = _by_name(structures, "kidney_left")
    rows = _replace(structures, "kidney_right", color_rgb=left.color_rgb)
    issues = validate_structures(rows, labels).errors
    assert {i.rule for i in issues} == {"color"}
    label_maps = {re.search(r"in the (.+) label map", i.message).group(1) for i in issues}  # type: ignore[union-attr]
    assert label_maps == {
        "cads 551",
        "totalseg total",
        "totalseg-3mm 297",
        "totalseg-6mm 298",
        "totalseg-v3 total_v3",
        "totalseg-v3-small total_v3",
        "totalseg-v3-3mm 836",
        "totalseg-v3-6mm 837",
        "omas-demo 900",
    }
    assert "kidney_right" in str(issues[0])
    assert "kidney_left" in str(issues[0])


def test_catalog_refuses_ambiguous_lookups(structures: list[Structure]) -> None:
    liver = _by_name(structures, "liver")
    with pytest.raises(CatalogError, match="each must identify one structure"):
        Catalog(_replace(structures, "spleen", type=liver.type))


def test_row_without_a_type_is_refused(tmp_path: Path) -> None:
    text = default_structures_path().read_text().splitlines()
    header, first = text[0], text[1].split(",")
    columns = header.split(",")
    for part in ("code", "scheme", "meaning"):
        first[columns.index(f"type_{part}")] = ""
    path = tmp_path / "catalog.csv"
    path.write_text("\n".join([header, ",".join(first)]) + "\n")
    with pytest.raises(CatalogError, match="never a placeholder"):
        read_structures_csv(path)
