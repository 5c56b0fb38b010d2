"""``omas-idc models list|download|verify``: model weights in the local cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from omas_idc.cli.listing import ListFormat, format_option, render_rows

if TYPE_CHECKING:
    from omas_idc.engine.card import ModelCard

_CACHE_HELP = "Weights cache (default: the user cache folder, e.g. ~/.cache/omas-idc/models)."


def _cache(cache_dir: Path | None) -> Path:
    from omas_idc.engine.weights import default_cache_dir

    return cache_dir if cache_dir is not None else default_cache_dir()


def _fail(err: Exception) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    from omas_idc.errors import OmasIdcError

    name = err.error_class if isinstance(err, OmasIdcError) else type(err).__name__
    # The message quotes card values: shown as text, never read as markup.
    Console(stderr=True).print(f"[red]{name}[/red]: {escape(str(err))}", highlight=False)
    return typer.Exit(2)


#: The keys of ``models list --format json|tsv``, one item per model and licence variant:
#: ``tasks`` the number of tasks, ``installed`` how many are in the cache (or beside a
#: packaged model's card), ``sha256_known`` how many the card gives a checksum for (null for a
#: packaged model: nothing to download), ``location`` the cache or the packaged folder.
MODEL_COLUMNS: tuple[str, ...] = (
    "model",
    "aliases",
    "variant",
    "default_variant",
    "licence",
    "tasks",
    "installed",
    "sha256_known",
    "packaged",
    "location",
)


def _model_records(card: ModelCard, cache: Path) -> list[dict[str, Any]]:
    """The listing's items of one model card: one per licence variant."""
    from omas_idc.engine.weights import list_weights

    records: list[dict[str, Any]] = []
    for variant, licence in card.variants.items():
        record: dict[str, Any] = {
            "model": card.name,
            "aliases": list(card.aliases),
            "variant": variant,
            "default_variant": variant == card.default_variant,
            "licence": licence,
            "tasks": len(card.tasks),
            "packaged": card.source is not None,
        }
        if card.source is not None:
            folder = card.source.parent
            found = [t for t in card.tasks if (folder / t.result_folder).is_dir()]
            record.update(installed=len(found), sha256_known=None, location=str(folder))
        else:
            entries = list_weights(card, cache, variant=variant)
            record.update(
                tasks=len(entries),
                installed=sum(e.installed for e in entries),
                sha256_known=sum(e.verified for e in entries),
                location=str(cache),
            )
        records.append(record)
    return records


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app``."""
    models = typer.Typer(help="Model weights: list, download, verify.", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_(
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
        output_format: str = format_option(),
    ) -> None:
        """List the built-in models, their variants and what the cache holds.

        Packaged models (the demo) ship their result folders beside their card: they are
        listed as installed there, with no download to verify. ``--format json`` or ``tsv``
        prints one item per model and variant with the keys of :data:`MODEL_COLUMNS`.
        """
        from omas_idc.engine.card import builtin_cards

        cache = _cache(cache_dir)
        records = [
            record for card in builtin_cards().values() for record in _model_records(card, cache)
        ]
        if output_format != ListFormat.TABLE:
            typer.echo(render_rows(records, MODEL_COLUMNS, ListFormat(output_format)), nl=False)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"models (cache: {cache})")
        for column in ("model", "variant", "licence", "tasks", "installed", "sha256 known"):
            table.add_column(column)
        for r in records:
            packaged = r["packaged"]
            table.add_row(
                " / ".join((r["model"], *r["aliases"])) if packaged else r["model"],
                r["variant"] + (" (default)" if r["default_variant"] else ""),
                r["licence"],
                str(r["tasks"]),
                f"{r['installed']}/{r['tasks']}" + (" (packaged)" if packaged else ""),
                "-" if packaged else f"{r['sha256_known']}/{r['tasks']}",
            )
        Console().print(table)

    @models.command("download")
    def download(
        model: str = typer.Argument(
            ..., help="cads, totalseg, or a model card .json or family folder."
        ),
        variant: str | None = typer.Option(None, "--variant", help="Licence variant."),
        tasks: list[str] | None = typer.Option(
            None, "--tasks", help="Task ids (repeat); dependencies are added. Default: all."
        ),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
        accept_unverified: bool = typer.Option(
            False,
            "--accept-unverified",
            help="Download weights whose model card gives no sha256 (cannot be verified).",
        ),
        force: bool = typer.Option(False, "--force", help="Download installed tasks again."),
    ) -> None:
        """Download, check and unzip a model's weights into the cache."""
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, TaskID, TransferSpeedColumn

        from omas_idc.engine.card import load_card
        from omas_idc.engine.weights import TaskWeights, download_weights
        from omas_idc.errors import OmasIdcError

        console = Console(stderr=True)
        bars: dict[str, TaskID] = {}
        with Progress(
            *Progress.get_default_columns(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as progress:

            def report(entry: TaskWeights, done: int, total: int | None) -> None:
                if entry.task.id not in bars:
                    bars[entry.task.id] = progress.add_task(f"task {entry.task.id}", total=total)
                progress.update(bars[entry.task.id], completed=done, total=total)

            try:
                card = load_card(model)
                entries = download_weights(
                    card,
                    _cache(cache_dir),
                    variant=variant,
                    tasks=tasks or None,
                    accept_unverified=accept_unverified,
                    force=force,
                    progress=report,
                )
            except OmasIdcError as err:
                raise _fail(err) from err
        for entry in entries:
            Console().print(
                f"{card.name} task {entry.task.id}: {entry.folder}", markup=False, highlight=False
            )

    @models.command("verify")
    def verify(
        model: str = typer.Argument(
            ..., help="cads, totalseg, or a model card .json or family folder."
        ),
        variant: str | None = typer.Option(None, "--variant", help="Licence variant."),
        tasks: list[str] | None = typer.Option(None, "--tasks", help="Task ids (repeat)."),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
    ) -> None:
        """Recompute the checksums of the cached weights; exit 1 where any differ."""
        from rich.console import Console
        from rich.markup import escape

        from omas_idc.engine.card import load_card
        from omas_idc.engine.weights import verify_weights
        from omas_idc.errors import OmasIdcError

        console = Console(highlight=False)
        try:
            results = verify_weights(
                load_card(model), _cache(cache_dir), variant=variant, tasks=tasks or None
            )
        except OmasIdcError as err:
            raise _fail(err) from err
        for result in results:
            state = "[green]ok[/green]" if result.ok else "[red]FAILED[/red]"
            console.print(f"task {escape(result.task)}: {state} ({escape(str(result.folder))})")
            for problem in result.problems:
                console.print(f"  {problem}", markup=False)
        if not all(r.ok for r in results):
            raise typer.Exit(1)
