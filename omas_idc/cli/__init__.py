"""The ``omas-idc`` command line (typer + rich).

Each command lives in its own module under ``omas_idc.cli`` and registers itself on the app
through ``register(app)``. Heavy libraries (torch, highdicom, duckdb) are imported inside the
commands so that ``omas-idc --help`` stays fast. Only the CLI configures logging and prints.

Errors: every registered command is wrapped by :func:`omas_idc.cli.errors.classify_app`, so a
bad file, folder or option ends with one classified line (never a traceback, never read as rich
markup) and the exit code of README's "Exit codes"; see :mod:`omas_idc.cli.errors`.
"""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from omas_idc import __version__
from omas_idc.cli import batch as batch_commands
from omas_idc.cli import catalog as catalog_commands
from omas_idc.cli import encode as encode_commands
from omas_idc.cli import errors as cli_errors
from omas_idc.cli import fetch as fetch_commands
from omas_idc.cli import merge as merge_commands
from omas_idc.cli import models as models_commands
from omas_idc.cli import phantom as phantom_commands
from omas_idc.cli import qa as qa_commands
from omas_idc.cli import read as read_commands
from omas_idc.cli import release_labels as release_labels_commands
from omas_idc.cli import run as run_commands
from omas_idc.cli import segment as segment_commands
from omas_idc.cli import select as select_commands
from omas_idc.cli import train as train_commands

app = typer.Typer(
    name="omas-idc",
    help="Whole-body CT anatomy segmentation for the Imaging Data Commons, as DICOM SEG and SR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"omas-idc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
) -> None:
    cli_errors.set_verbosity(verbose)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


for _module in (
    phantom_commands,
    read_commands,
    catalog_commands,
    encode_commands,
    select_commands,
    fetch_commands,
    qa_commands,
    segment_commands,
    models_commands,
    run_commands,
    batch_commands,
    merge_commands,
    train_commands,
    release_labels_commands,
):
    _module.register(app)
cli_errors.classify_app(app)


def main() -> None:
    """Entry point of the ``omas-idc`` script."""
    app()
