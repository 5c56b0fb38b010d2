"""``omas-idc demo`` as README's first command: offline, the whole pipeline, valid DICOM."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omas_idc.testing import validators
from omas_idc.train.demo import DEMO_STRUCTURES


def _without_network() -> tuple[list[str], str]:
    """``unshare -rn``: a private network namespace with no interface but loopback, down.

    Returns the command prefix, and why it is empty where ``unshare -rn`` is unavailable.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return [], "no unshare command (util-linux) on this machine"
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        why = probe.stderr.strip() or f"exit status {probe.returncode}"
        return [], f"`unshare -rn` fails here (user namespaces not allowed?): {why}"
    return [unshare, "-rn"], ""


@pytest.fixture(scope="module")
def isolation() -> tuple[list[str], str]:
    """The prefix the demo runs under, and why it is empty (see :func:`_without_network`)."""
    return _without_network()


#: Printed by the shell that then becomes the demo process (``exec``): the network
#: interfaces that process sees.
_PROBE = "import socket; print('interfaces', socket.if_nameindex())"


@dataclass(frozen=True)
class DemoRun:
    """One ``omas-idc demo`` process: where it wrote, what it printed, how it ended."""

    out: Path
    returncode: int
    stdout: str
    stderr: str
    isolated: bool  # run in a network namespace of its own (``unshare -rn``)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, isolation: tuple[list[str], str]) -> DemoRun:
    """``omas-idc demo`` run without network where ``unshare -rn`` works (elsewhere with the
    network: only the offline test is then skipped, not the others).

    Under ``unshare -rn`` a shell prints the interfaces it sees and then ``exec``s the demo,
    so the demo is that very process, in that namespace.
    """
    out = tmp_path_factory.mktemp("demo") / "omas-idc-demo"
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    prefix, _ = isolation
    command = [script, "demo", "--out", str(out)]
    if prefix:
        probe = f'{shlex.quote(sys.executable)} -c "{_PROBE}" && exec "$@"'
        command = [*prefix, "sh", "-c", probe, "sh", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    return DemoRun(out, result.returncode, result.stdout, result.stderr, bool(prefix))


@pytest.fixture(scope="module")
def demo_output(demo_run: DemoRun) -> tuple[Path, str]:
    """The demo's output folder and stdout, after a successful run."""
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    return demo_run.out, demo_run.stdout


def _series_folder(out: Path) -> Path:
    (done,) = out.glob("omas-demo/*/*/*/DONE.json")
    return done.parent


def test_demo_ran_without_network(demo_run: DemoRun, isolation: tuple[list[str], str]) -> None:
    _, why = isolation
    if not demo_run.isolated:
        pytest.skip(f"cannot show that the demo works offline: {why}")
    lines = demo_run.stdout.splitlines()
    # The demo process itself had loopback only (and down): no way to reach any server.
    assert lines[0] == "interfaces [(1, 'lo')]", demo_run.stdout[:500]
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    flat = " ".join(demo_run.stdout.split())
    assert re.search(r"\b1 done, 0 failed\b", flat), flat
    folder = _series_folder(demo_run.out)
    marker = json.loads((folder / "DONE.json").read_text())
    assert any(name.startswith("seg_") for name in marker["outputs"])
    assert "sr.dcm" in marker["outputs"]
    assert str(folder) in demo_run.stdout.replace("\n", "")  # the demo names its outputs


def test_demo_writes_every_output_of_a_series(demo_output: tuple) -> None:
    out, stdout = demo_output
    folder = _series_folder(out)
    assert str(folder.name) in stdout.replace("\n", "")
    marker = json.loads((folder / "DONE.json").read_text())
    names = set(marker["outputs"])
    assert {"sr.dcm", "qa.parquet", "preview_axial.png", "preview_coronal.png"} <= names
    assert any(n.startswith("seg_") and n.endswith(".dcm") for n in names)
    assert names == {p.name for p in folder.iterdir()} - {"DONE.json"}
    for name in ("preview_axial.png", "preview_coronal.png"):
        image = np.asarray(Image.open(folder / name).convert("RGB"))
        # An overlay in catalog colours, not a grey CT slice only.
        assert (np.ptp(image.astype(int), axis=2) > 60).mean() > 0.001


def test_demo_seg_and_sr_pass_dciodvfy(demo_output: tuple) -> None:
    folder = _series_folder(demo_output[0])
    segs = sorted(folder.glob("seg_*.dcm"))
    for seg in segs:
        assert validators.dciodvfy_errors(seg) == [], seg.name
    # The SR references LABELMAP segments: dicom3tools' lag is checked, not ignored.
    assert validators.sr_dciodvfy_errors(folder / "sr.dcm") == []


def test_demo_finds_every_structure_and_reports_it(demo_output: tuple) -> None:
    folder = _series_folder(demo_output[0])
    table = pd.read_parquet(folder / "qa.parquet")
    present = table[table.status == "present"]
    assert set(present.structure) == set(DEMO_STRUCTURES)
    assert (present.components == 1).all()
    assert not present.flag_wrong_side.any()
    (seg_path,) = folder.glob("seg_*.dcm")
    seg = hd.seg.segread(seg_path)
    labels = {d.SegmentLabel for d in seg.SegmentSequence if d.SegmentNumber != 0}
    assert len(labels) == len(DEMO_STRUCTURES)
    sr = hd.sr.srread(folder / "sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert {g.tracking_identifier for g in groups} == set(DEMO_STRUCTURES)


def test_demo_outputs_honour_the_umask(demo_output: tuple) -> None:
    """A release folder shared with a group or served by a web server must be readable: files
    get the mode an ordinary open() gives under the umask (0644 with 022), not mkstemp's 0600."""
    out, _ = demo_output
    mask = os.umask(0)
    os.umask(mask)
    files = [p for p in out.rglob("*") if p.is_file() and ".omas-idc-work" not in p.parts]
    assert any(p.name == "DONE.json" for p in files)
    assert any(p.suffix == ".dcm" for p in files)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~mask}, modes
