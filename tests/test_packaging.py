"""The wheel ships the package data: templates are readable from a non-editable install; the
wheel alone (in a fresh venv, outside the checkout, without network) runs ``omas-idc demo``; and
the notebooks' install cell installs it from the source a Colab user gives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pydicom
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


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
    # label tables from the wheel, in card-file order
    assert models.split(",") == [
        "cads",
        "totalseg-3mm",
        "totalseg-6mm",
        "totalseg-v3-3mm",
        "totalseg-v3-6mm",
        "totalseg-v3-small",
        "totalseg-v3",
        "totalseg",
        "omas-demo",
    ]


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


@dataclass(frozen=True)
class FreshVenv:
    """A new venv without omas-idc, whose dependencies are those of the development venv."""

    python: Path
    site: Path
    env: dict[str, str]
    cwd: Path  # a user's folder, not the checkout: the source tree is not on sys.path

    def run(self, *args: str | Path, network: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = [] if network else _without_network()
        return subprocess.run(
            [*prefix, *map(str, args)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )


@pytest.fixture
def fresh_venv(tmp_path: Path) -> FreshVenv:
    """A fresh venv (``python -m venv --without-pip``) that sees every dependency but no
    omas-idc.

    Installing the dependencies would take minutes, so they come from the development venv: a
    folder of links to every entry of its site-packages except omas-idc's own (the editable
    install's ``.pth`` and metadata) is named by a plain path line in a ``.pth`` file, *after*
    the fresh venv's site-packages. So neither Python nor pip sees an omas-idc other than the
    one installed into the fresh venv (and the ``.pth`` files of that folder are not
    processed). pip itself is one of the linked dependencies.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _purelib(python)
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    skipped = []
    for entry in sorted(_purelib(sys.executable).iterdir()):
        if "omas_idc" in entry.name or "omas-idc" in entry.name:
            skipped.append(entry.name)
        else:
            (dependencies / entry.name).symlink_to(entry)
    assert any(name.endswith(".dist-info") for name in skipped), skipped
    (site / "zz-omas-idc-test-dependencies.pth").write_text(f"{dependencies}\n")
    cwd = tmp_path / "user"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('omas_idc'))"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None", "the fresh venv must not see the checkout's omas_idc"
    return FreshVenv(python, site, env, cwd)


#: Where the installed omas_idc, its templates, pipelines and demo model card come from.
_WHERE = (
    "import omas_idc, omas_idc.resources as r; from omas_idc.engine.card import builtin_cards;"
    "print(omas_idc.__file__); print(r.templates_dir()); print(r.pipelines_dir());"
    "print(builtin_cards()['omas-demo'].source)"
)


def _assert_from_the_wheel(venv: FreshVenv) -> None:
    result = venv.run(venv.python, "-c", _WHERE)
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_relative_to(venv.site), f"{path} is not from the installed wheel"
        assert not path.is_relative_to(REPO)


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_the_demo_offline(
    wheel: Path, fresh_venv: FreshVenv
) -> None:
    """What a Colab user's ``pip install`` gets: templates, cards, label tables and the demo
    model all come from the installed wheel, not from the checkout; the demo runs in a
    network namespace with only loopback where ``unshare -rn`` works."""
    install = fresh_venv.run(
        fresh_venv.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel
    )
    assert install.returncode == 0, install.stderr
    _assert_from_the_wheel(fresh_venv)

    out = fresh_venv.cwd / "demo-out"
    script = fresh_venv.python.with_name("omas-idc")
    demo = fresh_venv.run(script, "demo", "--out", out, network=False)
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


def _cells(path: Path) -> tuple[str, str]:
    """The notebook's parameters cell and its install cell (the one that runs ``%pip``)."""
    book = nbformat.read(path, as_version=4)
    (parameters,) = [c.source for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    (install,) = [c.source for c in book.cells if c.cell_type == "code" and "%pip" in c.source]
    return parameters, install


#: Runs cells as IPython does in Colab (magics included), outside a kernel.
_RUN_CELLS = """
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for source in sys.argv[1:]:
    shell.run_cell(source).raise_error()
"""


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_install_cell_installs_from_its_source_parameter(
    wheel: Path, fresh_venv: FreshVenv, notebook: Path
) -> None:
    """A Colab user sets ``OMAS_IDC_SOURCE`` to a wheel URL (here a file:// URL), and the
    notebook's own install cell installs it with pip, which finds every dependency in place
    (no network)."""
    parameters, install = _cells(notebook)
    parameters += f"\nOMAS_IDC_SOURCE = {wheel.as_uri()!r}\n"
    result = fresh_venv.run(fresh_venv.python, "-c", _RUN_CELLS, parameters, install, network=False)
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_from_the_wheel(fresh_venv)


@pytest.mark.slow
def test_the_notebook_install_cell_says_what_to_set_when_the_source_fails(
    fresh_venv: FreshVenv,
) -> None:
    parameters, install = _cells(NOTEBOOKS[0])
    missing = fresh_venv.cwd / "omas_idc-0.1.0-py3-none-any.whl"
    parameters += f"\nOMAS_IDC_SOURCE = {missing.as_uri()!r}\n"
    result = fresh_venv.run(fresh_venv.python, "-c", _RUN_CELLS, parameters, install, network=False)
    assert result.returncode != 0
    assert "omas-idc did not install from OMAS_IDC_SOURCE" in result.stderr
    assert "set OMAS_IDC_SOURCE in the parameters cell" in result.stderr
