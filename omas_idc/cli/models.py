"""``omas-idc models list|download|verify``: model weights in the local cache."""

from __future__ import annotations

from pathlib import Path

import typer

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


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app``."""
    models = typer.Typer(help="Model weights: list, download, verify.", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_(
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
    ) -> None:
        """List the built-in models, their variants and what the cache holds.

        Packaged models (the demo) ship their result folders beside their card: they are
        listed as installed there, with no download to verify.
        """
        from rich.console import Console
        from rich.table import Table

        from omas_idc.engine.card import builtin_cards
        from omas_idc.engine.weights import list_weights

        cache = _cache(cache_dir)
        table = Table(title=f"models (cache: {cache})")
        for column in ("model", "variant", "licence", "tasks", "installed", "sha256 known"):
            table.add_column(column)
        for card in builtin_cards().values():
            if card.source is not None:
                found = [t for t in card.tasks if (card.source.parent / t.result_folder).is_dir()]
                for variant, licence in card.variants.items():
                    table.add_row(
                        " / ".join((card.name, *card.aliases)),
                        variant + (" (default)" if variant == card.default_variant else ""),
                        licence,
                        str(len(card.tasks)),
                        f"{len(found)}/{len(card.tasks)} (packaged)",
                        "-",
                    )
                continue
            for variant, licence in card.variants.items():
                entries = list_weights(card, cache, variant=variant)
                table.add_row(
                    card.name,
                    variant + (" (default)" if variant == card.default_variant else ""),
                    licence,
                    str(len(entries)),
                    f"{sum(e.installed for e in entries)}/{len(entries)}",
                    f"{sum(e.verified for e in entries)}/{len(entries)}",
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
