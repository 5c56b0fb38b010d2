"""The Colab notebooks run top to bottom in offline mode, and are stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _parameters_cell(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "each notebook has exactly one cell tagged 'parameters'"
    return cells[0]


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "cohort.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs_and_has_an_offline_switch(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: outputs must be stripped"
            assert cell.execution_count is None
    assert "OFFLINE = False" in _parameters_cell(book).source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_installs_omas_idc_from_its_source_parameter(path: Path) -> None:
    # No package named omas-idc is published yet: the source is a parameter (the published
    # name, a wheel URL or a git URL), never a fixed name in the install cell.
    book = nbformat.read(path, as_version=4)
    parameters = _parameters_cell(book).source
    assert 'OMAS_IDC_SOURCE = "omas-idc"' in parameters
    for form in ("published name", "wheel URL", "git URL", "git+https://"):
        assert form in parameters, f"{path.name}: the parameters cell documents {form!r}"
    installs = [c for c in book.cells if c.cell_type == "code" and "%pip" in c.source]
    assert len(installs) == 1
    (install,) = installs
    assert '%pip install -q "{OMAS_IDC_SOURCE}"' in install.source
    assert "%pip install -q omas-idc" not in install.source
    # Skipped where omas_idc is importable already (a local kernel, the offline run below).
    assert 'if importlib.util.find_spec("omas_idc") is None:' in install.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_offline_top_to_bottom(path: Path, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    parameters = _parameters_cell(book)
    parameters.source = parameters.source.replace("OFFLINE = False", "OFFLINE = True")
    parameters.source += f"\nOUT = {str(tmp_path / 'out')!r}\n"
    client = NotebookClient(
        book,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=False,
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.name == "quickstart.ipynb":
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 2  # axial and coronal previews with the segments
    else:
        figures = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(figures) >= 2  # volumes and flags
