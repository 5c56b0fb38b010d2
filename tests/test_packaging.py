"""The wheel ships the package data: templates are readable from a non-editable install, and
the wheel alone (in a fresh venv, outside the checkout, without network) runs ``omas-idc demo``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from the checkout without network (hatchling is in [test])."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
    )
    (built,) = wheel_dir.glob("omas_idc-*.whl")
    return built


@pytest.mark.slow
def test_templates_ship_inside_the_wheel(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "omas_idc/_data/dicom_templates/structures.csv" in names
    assert "omas_idc/_data/pipelines/README.md" in names
    assert "omas_idc/py.typed" in names
    assert "omas_idc/_data/pipelines/nlst.toml" in names
    assert "omas_idc/engine/cards/cads.json" in names
    # The built-in families' label tables (model families are data).
    assert "omas_idc/engine/cards/cads.labels.csv" in names
    assert "omas_idc/engine/cards/totalseg.labels.csv" in names
    assert "omas_idc/models/demo/labels.csv" in names
    # The demo model (omas-idc demo) ships inside the wheel, small.
    assert "omas_idc/models/demo/card.json" in names
    checkpoints = [n for n in names if n.startswith("omas_idc/models/demo/") and n.endswith(".pth")]
    assert checkpoints
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(wheel).infolist()}
    assert sum(sizes[n] for n in names if n.startswith("omas_idc/models/")) < 10_000_000

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import omas_idc.resources as r; from omas_idc.catalog import load_catalog;"
        "print(r.template_path('structures.csv')); c = load_catalog();"
        "print(len(c)); print(','.join(c.models()))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    path, structures, models = result.stdout.split()
    assert Path(path).is_relative_to(target), "the template must come from the installed wheel"
    assert int(structures) >= 167  # every CADS structure at least, loaded from the wheel
    assert models.split(",") == ["cads", "totalseg", "omas-demo"]  # label tables from the wheel


def _without_network() -> list[str]:
    """``unshare -rn`` (a network namespace with only loopback, down) where it works, else []."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else []


def _purelib(python: Path | str) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return Path(result.stdout.strip())


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_the_demo_offline(wheel: Path, tmp_path: Path) -> None:
    """What a Colab user's ``pip install`` gets: templates, cards, label tables and the demo
    model all come from the installed wheel, not from the checkout; the demo runs in a
    network namespace with only loopback where ``unshare -rn`` works.

    Installing every dependency into the fresh venv would take minutes, so they come from the
    development venv: a plain path line in a ``.pth`` file puts its site-packages *after* the
    fresh venv's own. The ``.pth`` files inside that folder are not processed, so the editable
    install's finder (which maps ``omas_idc`` to the checkout) is not active there.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Installed before the .pth exists: pip sees no other omas-idc to replace or skip.
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    site = _purelib(python)
    (site / "zz-omas-idc-test-dependencies.pth").write_text(f"{_purelib(sys.executable)}\n")

    cwd = tmp_path / "user"  # not the checkout: the source tree is not on sys.path
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    probe = (
        "import omas_idc, omas_idc.resources as r; from omas_idc.engine.card import builtin_cards;"
        "print(omas_idc.__file__); print(r.templates_dir()); print(r.pipelines_dir());"
        "print(builtin_cards()['omas-demo'].source)"
    )
    result = subprocess.run(
        [python, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    paths = [Path(line) for line in result.stdout.split()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_relative_to(site), f"{path} is not from the installed wheel"
        assert not path.is_relative_to(REPO)

    out = cwd / "demo-out"
    command = [*_without_network(), str(venv / "bin" / "omas-idc"), "demo", "--out", str(out)]
    demo = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    (marker,) = out.glob("omas-demo/*/*/*/DONE.json")
    outputs = json.loads(marker.read_text())["outputs"]
    segs = [name for name in outputs if name.startswith("seg_") and name.endswith(".dcm")]
    assert segs
    assert "sr.dcm" in outputs
    for name in outputs:
        assert (marker.parent / name).is_file()
    for name, modality in [*((s, "SEG") for s in segs), ("sr.dcm", "SR")]:
        dataset = pydicom.dcmread(marker.parent / name, stop_before_pixels=True)
        assert dataset.Modality == modality
    assert (out / "reports" / "run-report-0-of-1.json").is_file()
