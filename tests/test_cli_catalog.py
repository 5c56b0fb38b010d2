"""``omas-idc catalog list`` and ``omas-idc catalog validate``."""

from __future__ import annotations

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
    assert "ok: 183 structures" in result.output
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
