"""``omas-idc catalog list`` and ``omas-idc catalog validate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from omas_idc.catalog import default_structures_path
from omas_idc.cli import catalog as catalog_cli


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    catalog_cli.register(app)
    return app


def test_validate_passes_and_lists_codes_outside_part16(
    app: typer.Typer, shared_reference: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["catalog", "validate", "--reference-dir", str(shared_reference / "coding")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "types outside DICOM Part 16" in result.output
    assert "rib_left_1" in result.output
    assert "cads_snomed_mapping.csv" in result.output
    assert "ok: 184 structures" in result.output
    assert "sources not checked" not in result.output


def test_validate_fails_on_a_broken_catalog(app: typer.Typer, tmp_path: Path) -> None:
    text = default_structures_path().read_text()
    bad = tmp_path / "catalog.csv"
    bad.write_text(text.replace("Gluteus minimus muscle", "Gluteus minius muscle", 1))
    result = CliRunner().invoke(
        app, ["catalog", "validate", "--path", str(bad)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "[spelling]" in result.output
    assert "minimus" in result.output


def test_list_one_task_shows_its_label_map(app: typer.Typer) -> None:
    result = CliRunner().invoke(
        app, ["catalog", "list", "--model", "cads", "--task", "551"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "17 structures" in result.output
    assert "kidney_left" in result.output
    assert "vertebrae_L5" not in result.output


def test_list_rejects_an_unknown_task(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["catalog", "list", "--model", "cads", "--task", "600"])
    assert result.exit_code != 0
    assert "no task '600'" in result.output


NARROW = {"COLUMNS": "80"}


def _longest_name() -> str:
    from omas_idc.catalog import load_catalog

    return max((s.name for s in load_catalog()), key=len)


def test_the_table_cuts_long_names_in_80_columns(app: typer.Typer) -> None:
    # The reason for --format: the table in a narrow terminal or a pipe is not for scripts.
    result = CliRunner().invoke(app, ["catalog", "list"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert _longest_name() not in result.output


def test_list_as_json_gives_every_structure_with_full_names_and_codes(app: typer.Typer) -> None:
    from omas_idc.catalog import load_catalog

    result = CliRunner().invoke(app, ["catalog", "list", "--format", "json"], env=NARROW)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    catalog = load_catalog()
    assert [item["name"] for item in items] == [s.name for s in catalog]
    assert {tuple(item) for item in items} == {catalog_cli.STRUCTURE_COLUMNS}  # stable keys
    by_name = {item["name"]: item for item in items}
    assert _longest_name() in by_name
    kidney = by_name["kidney_left"]
    assert (kidney["type_scheme"], kidney["type_value"], kidney["type_meaning"]) == (
        "SCT",
        "64033007",
        "Kidney",
    )
    assert (kidney["type_modifier_value"], kidney["type_modifier_meaning"]) == ("7771000", "Left")
    assert kidney["region_value"] is None
    assert kidney["color_rgb"] == list(catalog.by_name("kidney_left").color_rgb)
    assert {"model": "cads", "task": "551", "label": 3, "label_name": "kidney_left"} in kidney[
        "labels"
    ]
    assert {label["model"] for label in kidney["labels"]} >= {"cads", "totalseg"}
    assert all(item["label"] is None for item in items)  # a label value only with --task
    assert "[" not in kidney["type_meaning"]  # no rich markup


def test_list_one_task_as_tsv_is_its_label_map_one_row_each(app: typer.Typer) -> None:
    from omas_idc.catalog import load_catalog

    result = CliRunner().invoke(
        app, ["catalog", "list", "--model", "cads", "--task", "551", "--format", "tsv"], env=NARROW
    )
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.rstrip("\n").split("\n")
    assert tuple(header.split("\t")) == catalog_cli.STRUCTURE_COLUMNS
    rows = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    expected = load_catalog().labels_for("cads", "551")
    assert {int(r["label"]): r["name"] for r in rows} == {k: s.name for k, s in expected.items()}
    kidney = next(r for r in rows if r["name"] == "kidney_left")
    assert kidney["labels"] == "cads/551/3/kidney_left"  # only --model's labels
    assert kidney["type_modifier_meaning"] == "Left"
    assert kidney["region_value"] == ""  # null
    assert kidney["outside_part16"] == "false"
    assert "\x1b" not in result.stdout  # no colour


@pytest.mark.parametrize(
    ("given", "hint"), [("jsno", "Did you mean 'json'?"), ("foo", "['json', 'table', 'tsv']")]
)
def test_list_rejects_an_unknown_format_with_a_suggestion(
    app: typer.Typer, given: str, hint: str
) -> None:
    result = CliRunner().invoke(app, ["catalog", "list", "--format", given], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"unknown format {given!r}" in result.output
    assert hint in result.output
