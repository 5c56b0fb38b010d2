"""The Slicer module's files, checked without Slicer: layout, UI file, terminology, commands.

The Widget cannot run here (it needs Slicer's Qt); what it relies on is checked instead: the
UI file is valid Qt Designer XML naming every widget the Widget uses (``self.ui.<name>``,
found with ``ast``), and the pure-Python parts of the Logic (terminology entries of every
catalog structure, the omas-idc command lines) run in the project's own venv.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from omas_idc.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "slicer"
MODULE_DIR = EXTENSION / "OmasIDC"
sys.path.insert(0, str(MODULE_DIR))

from OmasIDCLib.commands import SegmentOptions, fetch_commands, segment_command  # noqa: E402
from OmasIDCLib.install import install_requirements  # noqa: E402
from OmasIDCLib.jobs import Job, JobFailed, Step, classified_error  # noqa: E402
from OmasIDCLib.terminology import (  # noqa: E402
    CONTEXT_NAME,
    parse_terminology_entry,
    terminology_context,
    terminology_entry,
)


def _ui_widget_names() -> set[str]:
    tree = ET.parse(MODULE_DIR / "Resources" / "UI" / "OmasIDC.ui")
    return {w.get("name", "") for w in tree.iter("widget")}


def _widget_uses() -> set[str]:
    tree = ast.parse((MODULE_DIR / "OmasIDC.py").read_text(encoding="utf-8"))
    [widget] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OmasIDCWidget"]
    return {
        node.attr
        for node in ast.walk(widget)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


def test_extension_layout() -> None:
    """The files a Slicer extension has, and CMake lists every module file."""
    for path in (
        "CMakeLists.txt",
        "OmasIDC.s4ext",
        "OmasIDC/CMakeLists.txt",
        "OmasIDC/OmasIDC.py",
        "OmasIDC/Resources/UI/OmasIDC.ui",
        "OmasIDC/Resources/Icons/OmasIDC.png",
    ):
        assert (EXTENSION / path).is_file(), path
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    for script in sorted((MODULE_DIR / "OmasIDCLib").glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{script.name}" in cmake, script.name
    assert "add_subdirectory(OmasIDC)" in (EXTENSION / "CMakeLists.txt").read_text("utf-8")
    keys = {
        line.split()[0]
        for line in (EXTENSION / "OmasIDC.s4ext").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"scm", "scmurl", "build_subdirectory", "category", "description"} <= keys
    module = ast.parse((MODULE_DIR / "OmasIDC.py").read_text(encoding="utf-8"))
    classes = {n.name for n in module.body if isinstance(n, ast.ClassDef)}
    assert {"OmasIDC", "OmasIDCWidget", "OmasIDCLogic", "OmasIDCTest"} <= classes


def test_icon_is_a_small_png() -> None:
    data = (MODULE_DIR / "Resources" / "Icons" / "OmasIDC.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def test_ui_file_names_every_widget_the_widget_uses() -> None:
    names = _ui_widget_names()
    used = _widget_uses()
    assert len(used) > 15
    assert used <= names, f"missing in OmasIDC.ui: {sorted(used - names)}"


def test_ui_names_are_unique() -> None:
    tree = ET.parse(MODULE_DIR / "Resources" / "UI" / "OmasIDC.ui")
    names = [w.get("name") for w in tree.iter("widget")]
    assert len(names) == len(set(names))


def test_widget_is_the_only_qt_user() -> None:
    """Logic and Test must import with slicer-core alone: Qt only inside the Widget."""
    tree = ast.parse((MODULE_DIR / "OmasIDC.py").read_text(encoding="utf-8"))
    qt_modules = {"qt", "ctk", "slicer.qMRMLUtils"}
    for node in tree.body:
        inside_widget = isinstance(node, ast.ClassDef) and node.name == "OmasIDCWidget"
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                found = {a.name for a in sub.names} & qt_modules
            elif isinstance(sub, ast.ImportFrom):
                found = {sub.module} & qt_modules
            else:
                continue
            assert not found or inside_widget, f"line {sub.lineno} imports {found}"
    for path in (MODULE_DIR / "OmasIDCLib").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from) (qt|ctk)\b", text, re.M), path.name


@pytest.mark.parametrize("structure", load_catalog().structures, ids=lambda s: s.name)
def test_terminology_entry_carries_the_catalog_codes(structure: object) -> None:
    entry = terminology_entry(structure)  # type: ignore[arg-type]
    parts = parse_terminology_entry(entry)
    for field in ("category", "type", "type_modifier", "region", "region_modifier"):
        code = getattr(structure, field)
        expected = None if code is None else (code.scheme, code.value, code.meaning)
        assert parts[field] == expected, field
    assert parts["context"] == CONTEXT_NAME


def test_terminology_entry_format_is_slicers() -> None:
    """Seven '~' parts, codes as scheme^value^meaning, absent codes '^^' (Slicer's docs)."""
    kidney = load_catalog().by_name("kidney_left")
    assert terminology_entry(kidney) == (
        f"{CONTEXT_NAME}~SCT^{kidney.category.value}^{kidney.category.meaning}"
        "~SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^"
    )


def test_terminology_context_lists_every_structure() -> None:
    catalog = load_catalog()
    context = json.loads(json.dumps(terminology_context(catalog.structures)))
    listed = set()
    for category in context["SegmentationCodes"]["Category"]:
        for item in category["Type"]:
            modifiers = item.get("Modifier") or [None]
            for modifier in modifiers:
                listed.add(
                    (category["CodeValue"], item["CodeValue"], modifier and modifier["CodeValue"])
                )
    for s in catalog.structures:
        modifier = s.type_modifier.value if s.type_modifier else None
        key = (s.category.value, s.type.value, modifier)
        # A type listed with modifiers also stands without one (Slicer allows no modifier).
        assert (
            key in listed
            or (s.category.value, s.type.value, None) in listed
            or any(k[:2] == key[:2] for k in listed)
        ), s.name
    assert context["SegmentationCategoryTypeContextName"] == CONTEXT_NAME


def test_segment_command_maps_every_choice(tmp_path: Path) -> None:
    options = SegmentOptions(
        model="cads",
        tasks=("551", "552"),
        device="cuda",
        speed="quick",
        variant="open",
        weights_dir=tmp_path / "w",
        threads=4,
        export_seg=True,
    )
    argv = segment_command(tmp_path / "s", tmp_path / "o", options, python="py")
    assert argv[:4] == ["py", "-m", "omas_idc.cli", "segment"]
    text = " ".join(argv)
    for part in (
        "--model cads",
        "--device cuda",
        "--tasks 551 --tasks 552",
        "--variant open",
        f"--weights-dir {tmp_path / 'w'}",
        "--speed quick",
        "--threads 4",
        "--seg",
    ):
        assert part in text, part


def test_unknown_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one"):
        SegmentOptions(speed="fastest")


def test_segment_command_runs_omas_idc(tmp_path: Path) -> None:
    """omas-idc accepts every option the module passes: it gets as far as reading the series."""
    (tmp_path / "empty").mkdir()
    options = SegmentOptions(model="demo", speed="quick", threads=1, export_seg=True)
    argv = segment_command(tmp_path / "empty", tmp_path / "o", options)
    job = Job([Step("segment", argv)], tmp_path / "logs")
    with pytest.raises(JobFailed) as caught:
        job.wait(timeout=120)
    assert caught.value.error_class is not None, str(caught.value)  # omas-idc's, not typer's
    assert "No such option" not in job.log_path(0).read_text()


def test_fetch_commands_select_then_fetch(tmp_path: Path) -> None:
    select, fetch = fetch_commands("1.2.3", tmp_path, python="py")
    assert select[3:] == [
        "select",
        "--series-uid",
        "1.2.3",
        "--out",
        str(tmp_path / "selection.parquet"),
    ]
    assert fetch[3:5] == ["fetch", str(tmp_path / "selection.parquet")]


def test_failed_step_reports_the_classified_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    argv = segment_command(tmp_path / "empty", tmp_path / "o", SegmentOptions(model="demo"))
    job = Job([Step("segment", argv), Step("never", ["false"])], tmp_path / "logs")
    with pytest.raises(JobFailed) as caught:
        job.wait(timeout=120)
    assert re.match(r"^\w+Error \([^)]*\): ", str(caught.value)), str(caught.value)
    assert not job.log_path(1).exists()


def test_classified_error_picks_the_last_error_line() -> None:
    text = "warning\nSeriesGeometryError (gantry-tilt): 1.2: tilted\nTraceback"
    assert classified_error(text) == (
        "SeriesGeometryError (gantry-tilt): 1.2: tilted",
        "SeriesGeometryError",
    )
    assert classified_error("boom\n") == ("boom", None)
    usage = (
        "Usage: omas-idc segment\n\u256d\u2500 Error \u2500\u256e\n"
        "\u2502 Invalid value: no such path \u2502\n\u2570\u2500\u256f\n"
    )
    assert classified_error(usage) == ("Invalid value: no such path", None)


def test_install_keeps_an_installed_torch() -> None:
    args = install_requirements("omas-idc")
    assert args[0] == "omas-idc"
    assert any(a.startswith("torch==") for a in args)  # this venv has torch: pinned as is
