"""Segmented property types come from CID 7151 where Part 16 has the concept: a Part 16 type
outside CID 7151 is accepted only on the documented allow-list (issue 4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from omas_idc.catalog import (
    Code,
    Structure,
    default_structures_path,
    part16,
    read_structures_csv,
)
from omas_idc.catalog.validate import OUTSIDE_CID7151, validate_structures
from omas_idc.cli import catalog as catalog_cli

#: Part 16 has the uvula only as a head and neck site (CID 7601), not in CID 7151.
UVULA = Code("26140008", "SCT", "uvula")


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    return read_structures_csv(default_structures_path())


def _replace(rows: list[Structure], name: str, **changes: object) -> list[Structure]:
    return [dataclasses.replace(s, **changes) if s.name == name else s for s in rows]  # type: ignore[arg-type]


def _cid7151_issues(rows: list[Structure]) -> list[tuple[str, str]]:
    return [(i.name, i.message) for i in validate_structures(rows).errors if i.rule == "cid7151"]


def test_uvula_is_in_part16_but_not_in_cid7151() -> None:
    assert part16.concepts(UVULA.scheme, UVULA.value)
    assert (UVULA.scheme, UVULA.value) not in part16.cid_members(7151)


def test_shipped_out_of_cid7151_types_are_exactly_the_allow_list(
    structures: list[Structure],
) -> None:
    report = validate_structures(structures)
    assert report.errors == []
    outside = {s.name: s for s in report.outside_cid7151}
    assert set(outside) == set(OUTSIDE_CID7151)
    for name, (code, reason) in OUTSIDE_CID7151.items():
        s = outside[name]
        assert s.type.value == code
        assert part16.concepts(s.type.scheme, s.type.value), f"{name} is outside Part 16"
        assert "CID 7151" in reason
        assert "mapping" in reason  # where the code comes from
    in_part16 = [s for s in structures if part16.concepts(s.type.scheme, s.type.value)]
    for s in in_part16:
        if s.name not in OUTSIDE_CID7151:
            assert (s.type.scheme, s.type.value) in part16.cid_members(7151), s.name


def test_out_of_cid7151_type_off_the_allow_list_is_refused(
    structures: list[Structure],
) -> None:
    report = validate_structures(_replace(structures, "liver", type=UVULA))
    assert [(i.rule, i.name) for i in report.errors] == [("cid7151", "liver")]
    assert "not in CID 7151" in report.errors[0].message
    assert "OUTSIDE_CID7151" in report.errors[0].message
    assert "liver" in str(report.errors[0])


def test_allowed_row_with_another_out_of_cid7151_type_is_refused(
    structures: list[Structure],
) -> None:
    issues = _cid7151_issues(_replace(structures, "glottis", type=UVULA))
    assert len(issues) == 1
    name, message = issues[0]
    assert name == "glottis"
    assert "only with type 1307006" in message


def test_allowed_row_recoded_into_cid7151_passes(structures: list[Structure]) -> None:
    mouth = Code("123851003", "SCT", "Mouth")
    report = validate_structures(_replace(structures, "oral_cavity", type=mouth))
    assert report.errors == []
    assert "oral_cavity" not in {s.name for s in report.outside_cid7151}


def test_validate_command_refuses_a_catalog_with_an_unlisted_out_of_cid7151_type(
    tmp_path: Path,
) -> None:
    lines = default_structures_path().read_text().splitlines()
    columns = lines[0].split(",")
    for i, line in enumerate(lines):
        if line.startswith("liver,"):
            cells = line.split(",")
            cells[columns.index("type_code")] = UVULA.value
            cells[columns.index("type_meaning")] = UVULA.meaning
            lines[i] = ",".join(cells)
    bad = tmp_path / "catalog.csv"
    bad.write_text("\n".join(lines) + "\n")
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    catalog_cli.register(app)
    result = CliRunner().invoke(
        app, ["catalog", "validate", "--path", str(bad)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "liver: [cid7151]" in result.output
