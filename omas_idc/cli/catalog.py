"""``omas-idc catalog``: list and validate the structure catalog."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from omas_idc.cli.listing import ListFormat, format_option, render_rows

if TYPE_CHECKING:
    from omas_idc.catalog import Code, LabelRow, Structure

catalog_app = typer.Typer(
    help="The structure catalog: model labels -> SNOMED CT coded structures.",
    no_args_is_help=True,
)
_console = Console()

#: The keys of ``catalog list --format json|tsv``: ``label`` is the label value with
#: ``--task`` (else null); ``labels`` the structure's model labels (of ``--model`` only, where
#: given) as objects ``{model, task, label, label_name}``; each code as scheme, value, meaning
#: (null where the structure has none).
STRUCTURE_COLUMNS: tuple[str, ...] = (
    "label",
    "name",
    "labels",
    *(
        f"{code}_{part}"
        for code in ("category", "type", "type_modifier", "region", "region_modifier")
        for part in ("scheme", "value", "meaning")
    ),
    "color_rgb",
    "outside_part16",
    "outside_part16_source",
)


def _structure_record(
    structure: Structure, label: int | None, labels: Iterable[LabelRow], models: Sequence[str]
) -> dict[str, object]:
    record: dict[str, object] = {
        "label": label,
        "name": structure.name,
        "labels": [
            {"model": r.model, "task": r.task, "label": r.label, "label_name": r.label_name}
            for r in labels
            if r.model in models
        ],
    }
    for key in ("category", "type", "type_modifier", "region", "region_modifier"):
        code: Code | None = getattr(structure, key)
        record[f"{key}_scheme"] = code.scheme if code else None
        record[f"{key}_value"] = code.value if code else None
        record[f"{key}_meaning"] = code.meaning if code else None
    record["color_rgb"] = list(structure.color_rgb)
    record["outside_part16"] = structure.outside_part16
    record["outside_part16_source"] = structure.outside_part16_source
    return record


def _default_reference_dir() -> Path | None:
    from omas_idc.resources import templates_dir

    candidate = templates_dir().resolve().parents[1] / "shared" / "reference" / "coding"
    return candidate if candidate.is_dir() else None


@catalog_app.command("list")
def list_structures(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Only structures with a label in this model: cads, totalseg, omas-demo, ...",
    ),
    task: str | None = typer.Option(
        None, "--task", "-t", help="Only this task of --model (551-559 for cads, total)."
    ),
    output_format: str = format_option(),
) -> None:
    """Print the catalog as a table, optionally one model task's label map.

    ``--format json`` or ``tsv`` prints one item per structure with the keys of
    :data:`STRUCTURE_COLUMNS`: its full codes, colour and model labels, never cut.
    """
    from omas_idc.catalog import load_catalog
    from omas_idc.errors import CatalogError

    catalog = load_catalog()
    try:
        if task is not None:
            if model is None:
                raise CatalogError("--task needs --model")
            rows: list[tuple[int | None, Structure]] = list(catalog.labels_for(model, task).items())
        elif model is not None:
            rows = [
                (None, structure)
                for t in catalog.tasks(model)
                for structure in catalog.labels_for(model, t).values()
            ]
        else:
            rows = [(None, s) for s in catalog]
    except CatalogError as err:
        raise typer.BadParameter(str(err)) from err
    models = [model] if model is not None else list(catalog.models())
    if output_format != ListFormat.TABLE:
        records = [
            _structure_record(s, label, catalog.labels_of(s.name), models) for label, s in rows
        ]
        typer.echo(render_rows(records, STRUCTURE_COLUMNS, ListFormat(output_format)), nl=False)
        return
    table = Table(title=f"{len(rows)} structures", show_lines=False)
    if task is not None:
        table.add_column("label", justify="right")
    for column in ("name", *models, "type", "modifier", "category", "colour"):
        table.add_column(column)
    for label, s in rows:
        cells = [str(label)] if task is not None else []
        labels = {row.model: row for row in catalog.labels_of(s.name)}
        cells += [
            s.name,
            *(
                f"{labels[m].task}/{labels[m].label} {labels[m].label_name}" if m in labels else ""
                for m in models
            ),
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
        None, "--path", help="Structures CSV to check (default: the shipped structures.csv)."
    ),
    family: list[Path] | None = typer.Option(
        None,
        "--family",
        help="Also check a model family's label table: its card .json or folder (repeat).",
    ),
    reference_dir: Path | None = typer.Option(
        None,
        "--reference-dir",
        envvar="OMAS_IDC_REFERENCE_DIR",
        help="The public mappings (../shared/reference/coding) to check cited sources "
        "against; default: that folder beside the checkout, where present.",
    ),
) -> None:
    """Check the structures and every built-in family's label table (and --family ones)
    against DICOM Part 16 and the catalog's rules; exit 1 on errors."""
    from omas_idc.catalog import (
        builtin_labels,
        default_structures_path,
        read_structures_csv,
        validate_structures,
    )
    from omas_idc.engine.card import load_card
    from omas_idc.errors import OmasIdcError

    csv_path = path or default_structures_path()
    reference = reference_dir or _default_reference_dir()
    try:
        structures = read_structures_csv(csv_path)
        labels = builtin_labels()
        for card_path in family or []:
            card = load_card(card_path)
            labels = [row for row in labels if row.model != card.name] + list(card.labels)
    except OmasIdcError as err:
        _console.print(f"[red]error:[/] {escape(str(err))}")
        raise typer.Exit(1) from err
    report = validate_structures(structures, labels, reference_dir=reference)
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
    models = sorted({row.model for row in labels})
    _console.print(
        f"[green]ok:[/] {len(structures)} structures in {csv_path}; {len(labels)} labels of "
        f"{', '.join(models)}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` commands to ``app``."""
    app.add_typer(catalog_app, name="catalog")
