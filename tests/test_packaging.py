"""The wheel ships the package data: templates are readable from a non-editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_templates_ship_inside_the_wheel(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
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
    (wheel,) = wheel_dir.glob("omas_idc-*.whl")
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
