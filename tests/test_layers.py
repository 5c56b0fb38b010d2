"""The package's import layers: every import goes down the data flow, and no import cycles.

The layers, lowest first (a module may import from its own layer and the layers below it):

1. foundation: ``errors``, ``choices``, ``atomic``, ``paths``, ``coding``, ``geometry``,
   ``identity``, ``volume``, ``labelmap``, ``resources``, ``series_ref``, ``nifti``,
   ``gridmatch``, ``catalog``, ``phantom``, ``models`` and the package root (``__version__``);
2. ``select``, ``fetch``: which series, and their files;
3. ``read``: DICOM files -> ``CTVolume``;
4. ``engine``: ``CTVolume`` -> task label maps;
5. ``encode``: label maps -> DICOM SEG, and SEG read back (``encode.segread``);
6. ``qa``: measurements, checks, verdicts and the TID 1500 SR that reports them;
7. ``train``: training on annotated data (reads SEG through ``encode.segread``);
8. ``publish``: output stores, release tables, previews;
9. ``release``: existing annotations released as SEG + SR (uses publish's tables);
10. ``run``: the pipeline over many series;
11. ``notebook``: helpers for the notebooks;
12. ``cli``: the ``omas-idc`` commands;
13. ``testing``: helpers for the tests (validators, a loopback S3 server), which no module of
    the package imports.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``, relative ones
resolved. Cycles are refused between any modules, also inside one sub-package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "omas_idc"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: The layers, lowest first (see the module docstring).
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "",  # the package root: omas_idc/__init__.py
        "errors",
        "choices",
        "atomic",
        "paths",
        "coding",
        "geometry",
        "identity",
        "volume",
        "labelmap",
        "resources",
        "series_ref",
        "nifti",
        "gridmatch",
        "catalog",
        "phantom",
        "models",
    ),
    ("select", "fetch"),
    ("read",),
    ("engine",),
    ("encode",),
    ("qa",),
    ("train",),
    ("publish",),
    ("release",),
    ("run",),
    ("notebook",),
    ("cli",),
    ("testing",),
)
#: Import cycles that exist while being removed elsewhere: (module, module) pairs. Empty is
#: the goal; an entry here must name the work that removes it.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Import:
    """One import of a package module by another."""

    importer: str
    imported: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT.parent)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that importing ``name`` runs (the longest existing prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import name``: the submodule pkg.name where it exists, else pkg.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                continue
            target = _target(name, modules)
            item = Import(module, target or "", path, node.lineno)
            if target is not None and target != module and item not in found:
                found.append(item)
    return found


def _all_imports() -> list[Import]:
    modules = _modules()
    return [item for m, p in modules.items() for item in _imports(m, p, modules)]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(
        f"{module} is in no layer: add its top-level name to LAYERS in tests/test_layers.py"
    )


def _cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for item in imports:
        graph.setdefault(item.importer, set()).add(item.imported)
        graph.setdefault(item.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_every_module_is_in_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_imports_follow_the_layers() -> None:
    """No module imports from a layer above its own (the data flow runs one way)."""
    wrong = [
        f"{item.where()}: {item.importer} imports {item.imported} "
        f"(layer {LAYERS[_layer(item.imported)]} is above {LAYERS[_layer(item.importer)]})"
        for item in _all_imports()
        if _layer(item.imported) > _layer(item.importer)
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (sub-packages too)."""
    imports = _all_imports()
    problems = []
    for component in _cycles(imports):
        members = set(component)
        if frozenset(members) in KNOWN_CYCLES:
            continue
        edges = [
            f"  {item.where()}: {item.importer} imports {item.imported}"
            for item in imports
            if item.importer in members and item.imported in members
        ]
        problems.append(f"cycle between {', '.join(component)}:\n" + "\n".join(edges))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_only_tests_import_the_testing_helpers() -> None:
    """``omas_idc.testing`` serves the tests; the library never imports it."""
    testing = f"{PACKAGE}.testing"
    wrong = [
        f"{item.where()}: {item.importer} imports {item.imported}"
        for item in _all_imports()
        if (item.imported == testing or item.imported.startswith(testing + "."))
        and not (item.importer == testing or item.importer.startswith(testing + "."))
    ]
    assert not wrong, "library modules importing omas_idc.testing:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # a function-level import against the layers
        ("def f():\n    from omas_idc.qa.records import QARecord\n", "omas_idc.qa.records"),
        # a TYPE_CHECKING import against the layers
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from omas_idc.publish import release_rows\n",
            "omas_idc.publish",
        ),
        # a relative import, resolved: omas_idc/encode/x.py importing ..qa.sr
        ("from ..qa import sr\n", "omas_idc.qa.sr"),
    ],
)
def test_the_walker_sees_every_kind_of_import(source: str, expected: str, tmp_path: Path) -> None:
    """An upward import hidden in a function, under TYPE_CHECKING or relative is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    # The probe stands for a module omas_idc/encode/probe.py (so ``..`` is omas_idc).
    found = _imports(f"{PACKAGE}.encode.probe", probe, _modules())
    assert [item.imported for item in found] == [expected]
    assert all(_layer(item.imported) > _layer(item.importer) for item in found)


def test_the_cycle_finder_names_each_cycle() -> None:
    """A three-module cycle and a two-module cycle are found; an acyclic chain is not."""
    where = ROOT / "x.py"
    edges = [
        Import("a", "b", where, 1),
        Import("b", "c", where, 2),
        Import("c", "a", where, 3),
        Import("d", "e", where, 4),
        Import("e", "d", where, 5),
        Import("f", "g", where, 6),
    ]
    assert sorted(_cycles(edges)) == [["a", "b", "c"], ["d", "e"]]
