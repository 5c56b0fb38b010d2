"""Model families are data: a card and its label rows load together, join a catalog made for
that model only, and a card naming a path outside its folder is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omas_idc.catalog import LabelRow, load_catalog
from omas_idc.cli import app
from omas_idc.engine.card import load_card
from omas_idc.errors import CatalogError, ConfigurationError, ModelError
from omas_idc.run.config import ModelSettings
from omas_idc.run.engine_setup import model_catalog

LABELS = "model,task,label,label_name,structure\n"


def _card(**task: Any) -> dict[str, Any]:
    return {
        "name": "my-organs",
        "version": "0.1",
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
                **task,
            }
        ],
    }


def _family(folder: Path, rows: str, **task: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(_card(**task)))
    (folder / "labels.csv").write_text(LABELS + rows)
    return folder


def test_a_family_folder_brings_its_label_rows_into_a_catalog_of_its_own(tmp_path: Path) -> None:
    folder = _family(
        tmp_path / "family", "my-organs,902,1,soft,liver\nmy-organs,902,2,dense,spleen\n"
    )
    card = load_card(folder)
    assert card == load_card(folder / "card.json")
    assert card.source == folder / "card.json"
    assert [(r.label, r.label_name, r.structure) for r in card.labels] == [
        (1, "soft", "liver"),
        (2, "dense", "spleen"),
    ]
    shipped = load_catalog()
    catalog = model_catalog(ModelSettings(name=str(folder)))
    assert "my-organs" not in shipped.models()  # the shipped catalog is never changed
    assert catalog.models() == (*shipped.models(), "my-organs")
    assert catalog.by_model_label("my-organs", "902", 2) is shipped.by_name("spleen")
    resolved = catalog.resolve_labels("my-organs", "902", {1: "soft", 2: "dense"})
    assert [s.name for s in resolved.values()] == ["liver", "spleen"]
    with pytest.raises(CatalogError, match="calls it 'spleen'"):
        catalog.resolve_labels("my-organs", "902", {1: "spleen"})


def test_builtin_families_are_in_the_shipped_catalog_and_the_demo_is_one() -> None:
    shipped = load_catalog()
    for name in ("cads", "totalseg", "demo"):
        card = load_card(name)
        assert card.labels
        assert model_catalog(ModelSettings(name=name)) is shipped
        assert {r.model for r in card.labels} == {card.name}
    demo = load_card("demo")
    assert demo.name == "omas-demo"
    assert demo.source is not None
    assert demo.source.name == "card.json"
    assert [r.structure for r in demo.labels] == [
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
        "heart",
        "urinary_bladder",
        "hip_left",
        "hip_right",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "../../outside"),
        ("dataset", "/etc"),
        ("dataset", "Dataset902\\..\\x"),
        ("dataset", ".."),
        ("configuration", "3d_fullres/../../x"),
        ("trainer", "a/b"),
    ],
)
def test_a_card_naming_a_path_instead_of_a_name_is_refused(
    tmp_path: Path, field: str, value: str
) -> None:
    folder = _family(tmp_path / "family", "my-organs,902,1,soft,liver\n", **{field: value})
    with pytest.raises(ConfigurationError, match=f"'{field}' must be a plain name"):
        load_card(folder)


def test_a_label_table_outside_the_card_folder_is_refused(tmp_path: Path) -> None:
    folder = _family(tmp_path / "family", "my-organs,902,1,soft,liver\n")
    (folder / "card.json").write_text(json.dumps({**_card(), "labels": "../labels.csv"}))
    with pytest.raises(ConfigurationError, match="'labels' must be a plain name"):
        load_card(folder)


def test_label_rows_must_be_the_cards_and_name_catalog_structures(tmp_path: Path) -> None:
    other_task = _family(tmp_path / "a", "my-organs,903,1,soft,liver\n")
    with pytest.raises(ModelError, match="every row must be of model 'my-organs'"):
        load_card(other_task)
    unknown = _family(tmp_path / "b", "my-organs,902,1,soft,livr\n")
    with pytest.raises(CatalogError, match="Did you mean 'liver'"):
        model_catalog(ModelSettings(name=str(unknown)))
    twice = _family(tmp_path / "c", "my-organs,902,1,soft,liver\nmy-organs,902,1,dense,spleen\n")
    with pytest.raises(CatalogError, match="label 1 is given to both"):
        model_catalog(ModelSettings(name=str(twice)))


def test_a_family_cannot_take_over_a_builtin_familys_labels() -> None:
    cads = load_card("cads")
    changed = [dataclasses.replace(cads.labels[0], structure="liver"), *cads.labels[1:]]
    with pytest.raises(CatalogError, match="already maps the labels of model 'cads'"):
        load_catalog().with_labels(changed)
    extra = LabelRow("cads", "551", 18, "extra", "liver")
    with pytest.raises(CatalogError, match="already maps"):
        load_catalog().with_labels([*cads.labels, extra])


def test_models_list_shows_the_packaged_demo_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["models", "list", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "omas-demo / demo" in result.output
    assert "1/1 (packaged)" in result.output
    assert "cads" in result.output


def test_unknown_model_suggests_the_demo_alias() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean 'demo'"):
        load_card("dmo")


def test_catalog_validate_checks_a_familys_label_table(tmp_path: Path) -> None:
    good = _family(tmp_path / "good", "my-organs,902,1,soft,liver\nmy-organs,902,2,dense,spleen\n")
    result = CliRunner().invoke(
        app, ["catalog", "validate", "--family", str(good)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "my-organs" in result.output
    gap = _family(tmp_path / "gap", "my-organs,902,1,soft,liver\nmy-organs,902,3,dense,spleen\n")
    result = CliRunner().invoke(
        app, ["catalog", "validate", "--family", str(gap)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "my-organs 902: [labels] label 2 is not mapped" in result.output
