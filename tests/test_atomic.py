"""The one atomic-write helper: all or nothing, honouring the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from omas_idc.atomic import atomic_copy, atomic_output, atomic_write_text, atomic_write_with


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_file_has_the_mode_of_the_umask(tmp_path: Path, umask_022: None) -> None:
    target = atomic_write_text(tmp_path / "sub" / "report.json", "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.umask(0o077)
    again = atomic_write_text(tmp_path / "private.json", "{}")
    assert stat.S_IMODE(again.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "table.tsv", "old\n")

    class Boom(RuntimeError):
        pass

    def write_half() -> None:
        with atomic_output(target) as stream:
            stream.write(b"half of the new")
            raise Boom

    with pytest.raises(Boom):
        write_half()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]


def test_copy_and_path_writers_are_atomic_too(tmp_path: Path, umask_022: None) -> None:
    source = atomic_write_text(tmp_path / "a.txt", "payload")
    copied = atomic_copy(source, tmp_path / "out" / "b.txt")
    assert copied.read_text() == "payload"

    seen: list[str] = []

    def write(path: Path) -> None:
        seen.append(path.name)
        path.write_text("via a path")

    made = atomic_write_with(tmp_path / "c.nii.gz", write, suffix=".nii.gz")
    assert made.read_text() == "via a path"
    assert seen[0].startswith(".c.nii.gz.")
    assert seen[0].endswith(".nii.gz")
    assert stat.S_IMODE(made.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
