"""``omas-idc fetch``: download the series of a selection, verified, resumable.

The series come from IDC's buckets (``--source aws|gcs``) or, with ``--from
dicomweb+https://host/path``, from a DICOMweb service (QIDO-RS and WADO-RS; a bearer token from
the environment variable ``OMAS_IDC_DICOMWEB_TOKEN``), into the same folder layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def fetch(
    selection: Path = typer.Argument(..., help="Selection parquet written by `omas-idc select`."),
    out: Path = typer.Option(..., "--out", help="Download root (idc-index's default layout)."),
    source: str = typer.Option("aws", help="aws or gcs."),
    endpoint_url: str | None = typer.Option(None, help="Override the S3 endpoint."),
    workers: int = typer.Option(4, help="Series fetched in parallel."),
    attempts: int = typer.Option(3, help="Tries per series."),
    backoff: float = typer.Option(2.0, help="Seconds before the first retry (then doubled)."),
    dicomweb: str | None = typer.Option(
        None,
        "--from",
        help="Read from a DICOMweb service instead: dicomweb+https://host/path (bearer token "
        "from OMAS_IDC_DICOMWEB_TOKEN).",
    ),
) -> None:
    """Download and verify the series of a selection; exit 1 if any series failed."""
    from omas_idc.errors import FetchError
    from omas_idc.fetch import FetchOptions, FetchResult, fetch_selection
    from omas_idc.fetch.dicomweb import TOKEN_VARIABLE, DicomwebService, fetch_selection_dicomweb
    from omas_idc.series_ref import read_selection

    try:
        refs = read_selection(selection)
        options = FetchOptions(
            source=source,
            endpoint_url=endpoint_url,
            workers=workers,
            attempts=attempts,
            backoff_s=backoff,
        )
    except (OSError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err

    done = 0

    def progress(result: FetchResult) -> None:
        nonlocal done
        done += 1
        colour = "green" if result.ok else "red"
        err_console.print(
            f"[{colour}]{done}/{len(refs)} {result.status}[/{colour}] "
            f"{escape(result.series_instance_uid)}"
        )

    try:
        if dicomweb is not None:
            service = DicomwebService.parse(dicomweb, token=os.environ.get(TOKEN_VARIABLE))
            service.check()  # a wrong URL or token: one classified error, not one per series
            results = fetch_selection_dicomweb(
                refs,
                out,
                service,
                workers=workers,
                attempts=attempts,
                backoff_s=backoff,
                on_result=progress,
            )
        else:
            results = fetch_selection(refs, out, options, on_result=progress)
    except FetchError as err:
        err_console.print(f"[red]fetch refused:[/red] {escape(str(err))}")
        raise typer.Exit(1) from err
    failed = [r for r in results if not r.ok]
    counts = {s: sum(r.status == s for r in results) for s in ("downloaded", "cached", "failed")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" -> {escape(str(out))}")
    if failed:
        table = Table(title="Failed series")
        for column in ("SeriesInstanceUID", "reason", "message"):
            table.add_column(column)
        for r in failed:
            # Text cells: values from the selection are shown, never read as markup.
            table.add_row(Text(r.series_instance_uid), Text(r.reason or ""), Text(r.message or ""))
        err_console.print(table)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``fetch`` command to ``app``."""
    app.command("fetch")(fetch)
