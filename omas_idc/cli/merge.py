"""``omas-idc merge``: per-shard release tables -> one release table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``merge`` command to ``app``."""

    @app.command("merge")
    def merge(
        inputs: list[Path] = typer.Argument(
            ..., help="Run output folders (their release/shard-*.parquet) or release tables."
        ),
        out: Path = typer.Option(..., "--out", help="The merged release table (.parquet)."),
        allow_missing_shards: bool = typer.Option(
            False, "--allow-missing-shards", help="Merge even if some shards have no table."
        ),
    ) -> None:
        """Merge per-shard release tables into one: one schema, one release, no conflicts."""
        from omas_idc.cli.errors import print_error
        from omas_idc.errors import ConfigurationError, OmasIdcError
        from omas_idc.publish.merge import merge_release_tables

        try:
            report = merge_release_tables(inputs, out, allow_missing_shards=allow_missing_shards)
        except OmasIdcError as err:
            # A conflict between shards (QAError) exits 1: merging after a re-run may fix it.
            print_error(err, err_console)
            raise typer.Exit(2 if isinstance(err, ConfigurationError) else 1) from err
        console.print(
            f"merged {len(report.inputs)} tables: {report.rows_read} rows read, "
            f"{report.duplicates_dropped} duplicates dropped, {report.rows_written} rows of "
            f"{report.series} series written to {report.output}"
        )
