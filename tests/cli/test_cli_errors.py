"""Every command ends a bad input with one classified line and the exit code of the contract.

The contract (README "Exit codes", :mod:`omas_idc.cli.errors`): 2 for a configuration or
input error, 1 for what a retry may fix and for bugs; no traceback unless ``-v`` asks for one
for a bug; error text printed as it is, never read as rich markup.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.cli.errors import exit_code_for
from omas_idc.errors import (
    CatalogError,
    ConfigurationError,
    EncodingError,
    FetchError,
    InferenceError,
    ModelError,
    PublishError,
    QAError,
    SelectionError,
    SeriesGeometryError,
    UnsupportedSeriesError,
)
from omas_idc.phantom import PhantomOptions, make_phantom


def _omas_idc(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    wide = {**os.environ, "COLUMNS": "250"}  # rich wraps at the terminal width
    return subprocess.run([script, *args], capture_output=True, text=True, check=False, env=wide)


def _help_commands(text: str) -> set[str]:
    """The command names of rich's "Commands" panel in ``--help`` output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Commands" in line and "─" in line)
    names = set()
    for line in lines[start + 1 :]:
        if line.startswith("╰"):
            break
        match = re.match(r"^│ (\S+)\s", line)  # a wrapped description starts further right
        if match:
            names.add(match.group(1))
    return names


def test_help_lists_exactly_the_registered_commands() -> None:
    registered = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"run", "qa", "encode", "batch", "models", "demo"} <= registered
    result = _omas_idc("--help")
    assert result.returncode == 0, result.stderr
    listed = _help_commands(result.stdout)
    assert listed == registered, (listed - registered, registered - listed)


def test_every_registered_command_is_classified() -> None:
    """classify_app wrapped every command and every command of every group."""

    def callbacks(group: object) -> list[tuple[str, object]]:
        found = []
        for name, command in group.commands.items():  # type: ignore[attr-defined]
            if hasattr(command, "commands"):
                found += callbacks(command)
            else:
                found.append((name, command.callback))
        return found

    unwrapped = [
        name
        for name, callback in callbacks(get_command(app))
        if not getattr(callback, "_omas_classified", False)
    ]
    assert unwrapped == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("x"), 2),
        (SelectionError("x"), 2),
        (SeriesGeometryError("x"), 2),
        (UnsupportedSeriesError("x"), 2),
        (EncodingError("x"), 2),
        (QAError("x"), 2),
        (CatalogError("x"), 2),
        (ModelError("x"), 2),
        (FileNotFoundError(2, "No such file", "a.dcm"), 2),
        (ValueError("bad"), 2),
        (EOFError("truncated"), 2),
        (FetchError("x"), 1),
        (InferenceError("x"), 1),
        (PublishError("x"), 1),
        (ConnectionResetError("reset"), 1),
        (KeyError("bug"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_exit_codes_follow_the_run_contract(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "ct"
    make_phantom(folder, PhantomOptions(seed=3, shape=(8, 24, 28)))
    return folder


def test_markup_in_a_user_path_is_printed_verbatim(series: Path, tmp_path: Path) -> None:
    """A SEG path holding rich markup and a bracketed list: shown as typed, exit 2."""
    folder = tmp_path / "[red]x"
    folder.mkdir()
    seg = folder / "[bold]seg[italic] ['1.2.3', '4.5'].dcm"  # rich would drop the tags
    seg.write_bytes(b"")
    result = _omas_idc("qa", str(series), str(seg), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "QAError (unreadable-seg)" in result.stderr
    assert str(seg) in result.stderr.replace("\n", "")
    assert not (tmp_path / "out" / "sr.dcm").exists()


def test_markup_in_an_error_of_a_nifti_is_printed_verbatim(series: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels[bold][1.2.3].nii.gz"
    labels.write_bytes(b"plain text, not gzip")
    result = _omas_idc(
        "encode", str(series), str(labels), "--task", "551", "--out", str(tmp_path / "o")
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "EncodingError (unreadable-labels)" in result.stderr
    assert str(labels) in result.stderr.replace("\n", "")


def test_a_bug_is_one_line_asking_for_a_report_and_a_traceback_with_v(
    series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omas_idc.read

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an [italic]internal[/italic] failure")

    monkeypatch.setattr(omas_idc.read, "read_series", broken)
    arguments = ["qa", str(series), str(series / "CT0001.dcm"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "internal error (RuntimeError): an [italic]internal[/italic] failure" in text
    assert "bug in omas-idc: please report it" in text
    assert "Traceback" not in result.output
    verbose = CliRunner().invoke(app, ["-v", *arguments])
    assert verbose.exit_code == 1
    assert isinstance(verbose.exception, RuntimeError)  # raised: Python prints the traceback


def test_an_input_error_nobody_classified_names_the_file(
    series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError from a stage that did not classify it: exit 2 and the file, no traceback."""
    import omas_idc.read

    missing = tmp_path / "gone" / "CT0001.dcm"

    def unreadable(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", str(missing))

    monkeypatch.setattr(omas_idc.read, "read_series", unreadable)
    arguments = ["qa", str(series), str(series / "CT0001.dcm"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"InputError (FileNotFoundError): [Errno 2] No such file or directory: '{missing}'" in (
        text
    )
    assert "check the path" in text
