"""``omas-idc catalog``: list and validate the structure catalog."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

catalog_app = typer.Typer(
    help="The structure catalog: model labels -> SNOMED CT coded structures.",
    no_args_is_help=True,
)
_console = Console()


def _default_reference_dir() -> Path | None:
    from omas_idc.resources import templates_dir

    candidate = templates_dir().resolve().parents[1] / "shared" / "reference" / "coding"
    return candidate if candidate.is_dir() else None


@catalog_app.command("list")
def list_structures(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Only structures with a label in this model: cads, totalseg."
    ),
    task: str | None = typer.Option(
        None, "--task", "-t", help="Only this task of --model (551-559 for cads, total)."
    ),
) -> None:
    """Print the catalog as a table, optionally one model task's label map."""
    from omas_idc.catalog import MODELS, Structure, load_catalog
    from omas_idc.errors import CatalogError

    catalog = load_catalog()
    try:
        if task is not None:
            if model is None:
                raise CatalogError("--task needs --model")
            rows: list[tuple[int | None, Structure]] = list(catalog.labels_for(model, task).items())
        elif model is not None:
            structures = [
                catalog.labels_for(model, t)[label]
                for t in MODELS.get(model, ("",))
                for label in catalog.labels_for(model, t)
            ]
            rows = [(None, s) for s in structures]
        else:
            rows = [(None, s) for s in catalog]
    except CatalogError as err:
        raise typer.BadParameter(str(err)) from err
    table = Table(title=f"{len(rows)} structures", show_lines=False)
    if task is not None:
        table.add_column("label", justify="right")
    for column in ("name", "cads", "totalseg", "type", "modifier", "category", "colour"):
        table.add_column(column)
    for label, s in rows:
        cells = [str(label)] if task is not None else []
        cells += [
            s.name,
            f"{s.cads.task}/{s.cads.label}" if s.cads else "",
            f"{s.totalseg.label} {s.totalseg.name}" if s.totalseg else "",
            f"{s.type.value} {s.type.meaning}" + (" *" if s.outside_part16 else ""),
            s.type_modifier.meaning if s.type_modifier else "",
            s.category.meaning,
            f"[rgb({','.join(map(str, s.color_rgb))})]■[/] {' '.join(map(str, s.color_rgb))}",
        ]
        table.add_row(*cells)
    _console.print(table)
    _console.print("* type code outside DICOM Part 16 (see `omas-idc catalog validate`)")


@catalog_app.command("validate")
def validate(
    path: Path | None = typer.Option(
        None, "--path", help="Catalog CSV to check (default: the shipped catalog)."
    ),
    reference_dir: Path | None = typer.Option(
        None,
        "--reference-dir",
        envvar="OMAS_IDC_REFERENCE_DIR",
        help="The public mappings (../shared/reference/coding) to check cited sources "
        "against; default: that folder beside the checkout, where present.",
    ),
) -> None:
    """Check the catalog against DICOM Part 16 and the catalog's rules; exit 1 on errors."""
    from omas_idc.catalog import default_catalog_path, read_catalog_csv, validate_structures
    from omas_idc.errors import CatalogError

    csv_path = path or default_catalog_path()
    reference = reference_dir or _default_reference_dir()
    try:
        structures = read_catalog_csv(csv_path)
    except CatalogError as err:
        _console.print(f"[red]error:[/] {escape(str(err))}")
        raise typer.Exit(1) from err
    report = validate_structures(structures, reference_dir=reference)
    table = Table(title=f"{len(report.outside_part16)} types outside DICOM Part 16")
    for column in ("structure", "type", "source"):
        table.add_column(column)
    for s in report.outside_part16:
        table.add_row(s.name, str(s.type), s.outside_part16_source or "")
    _console.print(table)
    if report.outside_cid7151:
        names = ", ".join(s.name for s in report.outside_cid7151)
        _console.print(f"Types outside CID 7151 (allowed, each with its reason): {names}")
    if not report.sources_checked:
        _console.print(
            "[yellow]sources not checked:[/] no reference folder (--reference-dir) found"
        )
    for issue in report.errors:
        _console.print(f"[red]error:[/] {escape(str(issue))}", highlight=False)
    if report.errors:
        _console.print(f"[red]{len(report.errors)} errors[/] in {csv_path}")
        raise typer.Exit(1)
    _console.print(f"[green]ok:[/] {len(structures)} structures in {csv_path}")


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` commands to ``app``."""
    app.add_typer(catalog_app, name="catalog")
