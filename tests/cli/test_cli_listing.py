"""``--format json|tsv`` of ``models list`` and ``status``: what a script reads from a pipe or
an 80-column terminal, in full (the rich tables fold or cut UIDs, paths and messages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.cli.listing import tsv_cell
from omas_idc.cli.models import MODEL_COLUMNS
from omas_idc.cli.run import STATUS_COLUMNS
from omas_idc.run.state import RunState

NARROW = {"COLUMNS": "80"}

#: 64-character UIDs (the DICOM maximum), which no 80-column table shows beside other columns.
DONE_UID = "1.2.826.0.1.3680043.8.498.1000000000000000000000000000000000000001"
FAILED_UID = "1.2.826.0.1.3680043.8.498.2000000000000000000000000000000000000002"
REFUSED_UID = "1.2.826.0.1.3680043.8.498.3000000000000000000000000000000000000003"
PENDING_UID = "1.2.826.0.1.3680043.8.498.4000000000000000000000000000000000000004"


def _tsv(text: str) -> list[dict[str, str]]:
    header, *lines = text.rstrip("\n").split("\n")
    keys = header.split("\t")
    return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines]


def _unescape(cell: str) -> str:
    out, chars = [], iter(cell)
    for c in chars:
        out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[next(chars)] if c == "\\" else c)
    return "".join(out)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A run's work folder: one series done, one failed, one refused, one pending."""
    folder = tmp_path / "a-work-folder-with-a-long-name-that-no-narrow-table-shows-in-full"
    refs = [
        (uid, {"series_instance_uid": uid, "patient_id": f"P-{i}", "collection_id": "nlst"})
        for i, uid in enumerate((DONE_UID, FAILED_UID, REFUSED_UID, PENDING_UID))
    ]
    with RunState(folder / "state.sqlite") as state:
        state.add_series(refs)
        state.mark_running(DONE_UID, "fetch")
        state.mark_done(DONE_UID, [f"nlst/P-0/seg_{DONE_UID}.dcm", "nlst/P-0/DONE.json"], {})
        state.mark_running(FAILED_UID, "fetch")
        state.mark_failed(
            FAILED_UID, "fetch", "FetchError", "timeout", "s5cmd timed out\tafter 60 s\nretry"
        )
        state.mark_failed(
            REFUSED_UID, "read", "SeriesGeometryError", "gap", "a gap of 3 slices", permanent=True
        )
    return folder


def test_status_as_json_lists_every_series_with_full_uids(work: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(work), "--format", "json"], env=NARROW)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert [tuple(item) for item in items] == [STATUS_COLUMNS] * 4  # stable keys
    assert [(i["series_instance_uid"], i["status"]) for i in items] == [
        (DONE_UID, "done"),
        (FAILED_UID, "failed"),
        (REFUSED_UID, "refused"),
        (PENDING_UID, "pending"),
    ]
    done, failed, refused, pending = items
    assert done["outputs"] == [f"nlst/P-0/seg_{DONE_UID}.dcm", "nlst/P-0/DONE.json"]
    assert (failed["error_class"], failed["reason"], failed["attempts"]) == (
        "FetchError",
        "timeout",
        1,
    )
    assert failed["message"] == "s5cmd timed out\tafter 60 s\nretry"
    assert (refused["stage"], refused["reason"]) == ("read", "gap")
    assert (pending["patient_id"], pending["collection_id"]) == ("P-3", "nlst")
    assert pending["study_instance_uid"] is None  # not in this selection's records


def test_status_as_tsv_is_one_line_per_series_with_full_values(work: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(work), "--format", "tsv"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n", 1)[0].split("\t") == list(STATUS_COLUMNS)
    rows = _tsv(result.stdout)
    assert [r["series_instance_uid"] for r in rows] == [
        DONE_UID,
        FAILED_UID,
        REFUSED_UID,
        PENDING_UID,
    ]
    assert rows[0]["outputs"] == f"nlst/P-0/seg_{DONE_UID}.dcm,nlst/P-0/DONE.json"
    # A tab or newline inside a message is escaped, so the row stays one line.
    assert rows[1]["message"] == "s5cmd timed out\\tafter 60 s\\nretry"
    assert _unescape(rows[1]["message"]) == "s5cmd timed out\tafter 60 s\nretry"
    assert rows[3]["study_instance_uid"] == ""  # null
    assert "\x1b" not in result.stdout


def test_status_table_is_unchanged_by_default(work: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(work)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "4 series: 1 pending" in result.output
    assert "failed (retried by the next run)" in result.output


def test_status_rejects_an_unknown_format(work: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(work), "--format", "tvs"], env=NARROW)
    assert result.exit_code == 2
    assert "unknown format 'tvs'" in result.output
    assert "Did you mean 'tsv'?" in result.output


def test_models_as_json_and_tsv_name_the_full_cache_path(tmp_path: Path) -> None:
    cache = tmp_path / "a-weights-cache-folder-with-a-long-name-that-no-narrow-table-shows"
    args = ["models", "list", "--cache-dir", str(cache)]
    table = CliRunner().invoke(app, args, env=NARROW)
    assert table.exit_code == 0, table.output
    assert str(cache) not in table.output  # the premise: the table cuts it

    result = CliRunner().invoke(app, [*args, "--format", "json"], env=NARROW)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert {tuple(item) for item in items} == {MODEL_COLUMNS}
    by_key = {(i["model"], i["variant"]): i for i in items}
    cads = by_key[("cads", "reference")]
    assert cads["default_variant"] is True
    assert (cads["tasks"], cads["installed"], cads["packaged"]) == (9, 0, False)
    assert cads["location"] == str(cache)
    assert "LICENSE_MODEL" in cads["licence"]  # the full licence text, never cut
    demo = by_key[("omas-demo", "local")]
    assert demo["aliases"] == ["demo"]
    assert (demo["installed"], demo["tasks"], demo["sha256_known"]) == (1, 1, None)
    assert (Path(demo["location"]) / "card.json").is_file()

    result = CliRunner().invoke(app, [*args, "--format", "tsv"], env=NARROW)
    assert result.exit_code == 0, result.output
    rows = _tsv(result.stdout)
    assert [(r["model"], r["variant"]) for r in rows] == list(by_key)
    assert {r["location"] for r in rows if r["packaged"] == "false"} == {str(cache)}
    demo_row = next(r for r in rows if r["model"] == "omas-demo")
    assert (demo_row["aliases"], demo_row["sha256_known"]) == ("demo", "")


def test_models_reject_an_unknown_format() -> None:
    result = CliRunner().invoke(app, ["models", "list", "--format", "jason"], env=NARROW)
    assert result.exit_code == 2
    assert "Did you mean 'json'?" in result.output


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (3, "3"),
        (["a", "b"], "a,b"),
        ({"model": "cads", "task": "551", "label": 3}, "cads/551/3"),
        ("C:\\path\twith\ttabs\r\n", "C:\\\\path\\twith\\ttabs\\r\\n"),
    ],
)
def test_tsv_cells_are_one_line_and_lossless(value: object, cell: str) -> None:
    assert tsv_cell(value) == cell
    if isinstance(value, str):
        assert _unescape(cell) == value
