"""``omas-idc select``: choose IDC series and write them as a selection parquet file."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def _default_shard() -> str | None:
    # Cloud Batch does not expand variables inside a container's command list.
    index, count = os.environ.get("BATCH_TASK_INDEX"), os.environ.get("BATCH_TASK_COUNT")
    return f"{index}/{count}" if index is not None and count is not None else None


def select(
    collection: list[str] = typer.Option([], "--collection", help="IDC collection_id (repeat)."),
    modality: str = typer.Option("CT", help="DICOM Modality."),
    min_slices: int | None = typer.Option(
        None, help="Least number of slices (single-frame: instanceCount; multi-frame kept)."
    ),
    body_part: list[str] = typer.Option([], "--body-part", help="BodyPartExamined (repeat)."),
    license_name: list[str] = typer.Option(
        [], "--license", help="license_short_name, e.g. 'CC BY 4.0' (repeat)."
    ),
    series_uid: list[str] = typer.Option([], "--series-uid", help="SeriesInstanceUID (repeat)."),
    include_analysis_results: bool = typer.Option(
        False, help="Also select series that belong to IDC analysis results."
    ),
    per_study: str = typer.Option("all", help="all, or one (best-ranked) series per study."),
    shard: str | None = typer.Option(
        None, help="i/n: shard i of n (default: BATCH_TASK_INDEX/BATCH_TASK_COUNT if set)."
    ),
    limit: int | None = typer.Option(None, help="At most this many series (of the shard)."),
    skip_algorithm: str | None = typer.Option(
        None, help="Skip series that already have a SEG from this algorithm."
    ),
    outputs: Path | None = typer.Option(
        None, help="The run's output folder: series with a DONE.json marker are skipped."
    ),
    source: str = typer.Option("index", help="index (offline idc-index) or bigquery."),
    bigquery_project: str | None = typer.Option(None, help="Google Cloud project to bill."),
    online_indices: bool = typer.Option(
        True, help="Download ct_index/volume_geometry_index/seg_index when reachable."
    ),
    out: Path = typer.Option(Path("selection.parquet"), "--out", help="Parquet file to write."),
) -> None:
    """Select IDC series with SQL over the IDC index and write them to a parquet file."""
    from omas_idc.errors import SelectionError
    from omas_idc.select import SelectionFilters, Shard, select_series
    from omas_idc.series_ref import write_selection

    shard_text = shard or _default_shard()
    try:
        filters = SelectionFilters(
            collections=tuple(collection),
            modality=modality or None,
            min_slices=min_slices,
            body_parts=tuple(body_part),
            licenses=tuple(license_name),
            series_uids=tuple(series_uid),
            original_only=not include_analysis_results,
        )
        selection = select_series(
            filters,
            source=source,
            per_study=per_study,
            shard=Shard.parse(shard_text) if shard_text else None,
            limit=limit,
            skip_algorithm=skip_algorithm,
            outputs_dir=outputs,
            download_indices=online_indices,
            bigquery_project=bigquery_project,
        )
    except SelectionError as err:
        err_console.print(f"[red]select failed:[/red] {escape(str(err))}")
        # A query that failed (network, credentials) may succeed when run again; a bad filter
        # value or option will not: a configuration error.
        raise typer.Exit(1 if err.reason == "query-failed" else 2) from err
    extra = {"per_study": per_study, "shard": shard_text or "0/1", "limit": str(limit or "")}
    write_selection(selection.refs, out, provenance=selection.provenance(filters, **extra))
    for note in selection.notes:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}")
    size_gb = sum(r.size_bytes for r in selection.refs) / 1e9
    console.print(
        f"{len(selection.refs)} series ({size_gb:.1f} GB) from IDC v{selection.idc_version} "
        f"written to {escape(str(out))}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``select`` command to ``app``."""
    app.command("select")(select)
