"""``omas-idc release-labels``: annotated NIfTI label maps of IDC series -> DICOM SEG + SR."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from omas_idc.cli.options import checked_layout, checked_timestamp

console = Console()
err_console = Console(stderr=True)


def release_labels(
    labels: Path = typer.Option(
        ..., "--labels", help="Folder the manifest's labels and image paths are relative to."
    ),
    manifest: Path = typer.Option(
        ...,
        "--manifest",
        help="CSV: case_id, dataset, labels[, series_instance_uid, series_dir, image, structures].",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    label_tables: Path = typer.Option(
        ...,
        "--label-tables",
        help="Folder with datasets.toml and one <dataset>.csv (label,structure) per dataset.",
    ),
    dicom: Path | None = typer.Option(
        None, "--dicom", help="Folder of downloaded series (e.g. what omas-idc fetch writes)."
    ),
    universe: str = typer.Option(
        "manifest",
        help="Structures whose status each case reports: manifest (the union of the label "
        "tables used), cads (all CADS structures) or catalog.",
    ),
    layout: str = typer.Option("binary", help="SEG layout: binary (default) or labelmap."),
    hu_tolerance: float = typer.Option(
        0.0, help="Content matching: largest HU difference between image and series."
    ),
    timestamp: str | None = typer.Option(
        None, help="Content date/time (ISO 8601); fixes it for byte-identical re-runs."
    ),
) -> None:
    """Release existing annotations as DICOM SEG + SR, with partial-annotation semantics.

    For each case: find its DICOM series (by UID, by its folder, or by matching the image's
    grid and HU), put the label map on that grid exactly (axis order, flips and crops only;
    anything that would need resampling is refused), and write a SEG of the annotated
    structures and an SR recording every structure as annotated and present, annotated but
    absent, or not annotated. Writes cases/<case_id>/seg_<dataset>.dcm and
    sr_<dataset>.dcm, annotations.parquet and outcomes.json. Exits with 1 where a case was
    refused (its reason is in outcomes.json); the other cases are released.
    """
    from omas_idc.catalog import load_catalog
    from omas_idc.cli.errors import fail
    from omas_idc.errors import OmasIdcError
    from omas_idc.release import (
        UNIVERSES,
        ReleaseOptions,
        SeriesIndex,
        load_label_tables,
        read_manifest,
        release_annotations,
    )

    if universe not in UNIVERSES:
        raise typer.BadParameter(f"--universe must be one of {UNIVERSES}, got {universe!r}")
    checked_layout(layout)
    when = checked_timestamp(timestamp)
    try:
        catalog = load_catalog()
        cases = read_manifest(manifest, labels)
        registry = load_label_tables(label_tables, catalog)
        outcomes = release_annotations(
            cases,
            registry,
            SeriesIndex(dicom),
            catalog,
            ReleaseOptions(
                out=out,
                timestamp=when,
                universe=universe,
                layout=layout,
                hu_tolerance=hu_tolerance,
            ),
        )
    except OmasIdcError as err:
        raise fail(err, err_console) from err
    table = Table(title=Text(f"release-labels: {out}"))
    for column in ("case", "dataset", "status", "reason", "present", "absent", "not annotated"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.case_id,
            o.dataset,
            o.status,
            o.reason,
            str(o.present),
            str(o.absent),
            str(o.not_annotated),
        )
    console.print(table)
    refused = [o for o in outcomes if o.status != "done"]
    if refused:
        for o in refused:
            err_console.print(
                Text(o.case_id, style="red") + Text(f" ({o.reason}): {o.message}"),
                markup=False,
                highlight=False,
            )
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``release-labels`` command to ``app``."""
    app.command("release-labels")(release_labels)
