"""``omas-idc run``, ``omas-idc status`` and ``omas-idc demo``.

Exit codes: 0 every selected series is done or refused for a reason a retry cannot change
(a gap, not a CT; recorded in the state and the report); 1 some series failed for a reason a
retry may fix (network, memory), so running again (or Cloud Batch's task retry) helps; 2 the
configuration or the command line is wrong (Cloud Batch's lifecycle policy fails such a task
instead of retrying it).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from omas_idc.cli.listing import ListFormat, format_option, render_rows

if TYPE_CHECKING:
    from omas_idc.run.state import SeriesState

console = Console()
err_console = Console(stderr=True)

CONFIG_ERROR_EXIT = 2


def _shard(shard: str | None) -> tuple[int, int]:
    """``--shard i/n``, defaulting from Cloud Batch's BATCH_TASK_INDEX / BATCH_TASK_COUNT."""
    from omas_idc.select import Shard

    if shard is None:
        index, count = os.environ.get("BATCH_TASK_INDEX"), os.environ.get("BATCH_TASK_COUNT")
        if index is None or count is None:
            return (0, 1)
        shard = f"{index}/{count}"
    parsed = Shard.parse(shard)
    return (parsed.index, parsed.count)


def _config(config: Path | None, collection: str | None):  # type: ignore[no-untyped-def]
    from omas_idc.resources import pipelines_dir
    from omas_idc.run.config import RunConfig, load_config

    if config is not None:
        loaded = load_config(config)
    elif collection and (pipelines_dir() / f"{collection}.toml").is_file():
        loaded = load_config(pipelines_dir() / f"{collection}.toml")
    else:
        loaded = RunConfig()
    if collection:
        loaded = loaded.with_overrides(selection={"collections": [collection]})
    return loaded


def run(
    collection: str | None = typer.Option(None, help="IDC collection, e.g. nlst."),
    config: Path | None = typer.Option(None, help="Run configuration (TOML)."),
    model: str | None = typer.Option(None, help="cads, totalseg, demo or a model folder."),
    variant: str | None = typer.Option(None, help="Weights licence variant."),
    out: str = typer.Option(
        "omas-idc-output",
        help="Output folder, s3:// / gs:// URL or dicomweb+https://host/path (SEG and SR by "
        "STOW-RS; bearer token from OMAS_IDC_DICOMWEB_TOKEN).",
    ),
    side_out: Path | None = typer.Option(
        None,
        help="For a DICOMweb --out: folder of tables, previews, markers (default: WORK/outputs).",
    ),
    source: str | None = typer.Option(
        None, "--from", help="Read series from dicomweb+https://host/path instead of IDC's buckets."
    ),
    work: Path | None = typer.Option(None, help="Local work folder (state, downloads)."),
    shard: str | None = typer.Option(None, help="i/n; default from BATCH_TASK_INDEX/COUNT."),
    limit: int | None = typer.Option(None, help="At most this many series."),
    selection: Path | None = typer.Option(None, help="A saved selection (parquet) to run."),
    endpoint_url: str | None = typer.Option(None, help="S3 endpoint (fetch and output)."),
    device: str | None = typer.Option(None, help="auto, cuda, cpu or mps."),
    weights_dir: str | None = typer.Option(None, help="Model weights cache folder."),
    layout: str | None = typer.Option(None, help="labelmap or binary SEG."),
    timestamp: str | None = typer.Option(
        None, help="Content date/time (ISO 8601) of the outputs; default: the first start."
    ),
    postprocessing: bool | None = typer.Option(
        None,
        "--postprocessing/--no-postprocessing",
        help="The recipe's post-processing (CADS's rules); default: the configuration's.",
    ),
    structures: list[str] | None = typer.Option(
        None,
        help="Only these structures (comma-separated or repeated): only the tasks that label "
        "them run, other labels are 0 (TotalSegmentator's --roi_subset).",
    ),
    speed: str | None = typer.Option(
        None,
        help="reference (the card's settings) or quick (body crop, tile step 0.75, labels "
        "resampled); not TotalSegmentator's --fast (--model totalseg-3mm).",
    ),
    body_crop: bool | None = typer.Option(
        None, "--body-crop/--no-body-crop", help="Sliding window inside the body's box only."
    ),
    tile_step: float | None = typer.Option(None, help="Tile step (fraction of the patch)."),
    resample: str | None = typer.Option(None, help="logits (nnU-Net) or labels (faster)."),
    wrapper_grid: str | None = typer.Option(
        None,
        help="CADS/TotalSegmentator: reference (the tool's own zoom to 1.5 mm, CPU) or centred "
        "(voxel-centred resampling on the device; moves border voxels).",
    ),
    fast: bool = typer.Option(False, "--fast", hidden=True, help="Retired: see --speed."),
) -> None:
    """Select, fetch, read, segment, encode, check and publish a collection's CT series."""
    from omas_idc.cli.errors import fail
    from omas_idc.engine.speed import fast_option_error
    from omas_idc.engine.structures import parse_structures
    from omas_idc.errors import ConfigurationError
    from omas_idc.fetch.dicomweb import TOKEN_VARIABLE, DicomwebService
    from omas_idc.run.engine_setup import build_engine
    from omas_idc.run.folders import check_output_location, check_work_dir, default_work_dir
    from omas_idc.run.lock import work_lock
    from omas_idc.run.runner import RunRequest, check_run

    try:
        if fast:
            raise fail(fast_option_error())
        chosen = parse_structures(structures)
        settings = _config(config, collection)
        overrides = {
            k: v
            for k, v in {
                "name": model,
                "variant": variant,
                "device": device,
                "weights_dir": weights_dir,
                "postprocessing": postprocessing,
                "speed": speed,
                "body_crop": body_crop,
                "tile_step_size": tile_step,
                "resample": resample,
                "wrapper_grid": wrapper_grid,
                **({"structures": chosen, "tasks": ()} if chosen else {}),
            }.items()
            if v is not None
        }
        if overrides:
            settings = settings.with_overrides(model=overrides)
        if layout is not None:
            settings = settings.with_overrides(output={"seg_layout": layout})
        work_dir = work or default_work_dir(out)
        if work is None:
            # The default work folder lies inside the output folder: say what is wrong with
            # the output rather than that the work folder's lock file cannot be made.
            check_output_location(out)
        check_work_dir(work_dir)
        request = RunRequest(
            config=settings,
            out=out,
            work_dir=work_dir,
            shard=_shard(shard),
            limit=limit,
            selection_file=selection,
            endpoint_url=endpoint_url,
            timestamp=datetime.fromisoformat(timestamp) if timestamp else None,
            source=source,
            side_out=side_out,
            dicomweb_token=os.environ.get(TOKEN_VARIABLE),
        )
    except ValueError as err:  # an option's value (a shard, a timestamp)
        raise fail(ConfigurationError(str(err), reason="option")) from err
    if source is not None:  # a wrong URL or token stops the run before the model loads
        DicomwebService.parse(source, token=request.dicomweb_token).check()
    # Held from before the model loads to the end of the run: a second run on this work
    # folder stops at once, and a refused run leaves its report.
    with work_lock(work_dir):
        check_run(request)
        try:
            engine, info = build_engine(settings.model)
        except ValueError as err:
            raise fail(ConfigurationError(str(err), reason="model")) from err
        result = _execute(request, engine, info)
    raise typer.Exit(_exit_code(result))


def _exit_code(result) -> int:  # type: ignore[no-untyped-def]
    """0 when every series is done or refused, 1 when some failed or the release table could
    not be published (a rerun may fix both)."""
    return 0 if result.counts.get("failed", 0) == 0 and not result.errors else 1


def _execute(request, engine, info, refs=None):  # type: ignore[no-untyped-def]
    from omas_idc.run.runner import execute_run

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        bar = progress.add_task("series", total=None, failed=0, rate="")
        failed = 0
        start = time.perf_counter()

        def on_start(count: int) -> None:
            progress.update(bar, total=count)

        def on_progress(event: str, ref, detail: str) -> None:  # type: ignore[no-untyped-def]
            nonlocal failed
            if event == "failed":
                failed += 1
            task = progress.tasks[bar]
            hours = (time.perf_counter() - start) / 3600.0
            rate = f"{(task.completed + 1) / hours:.0f} series/h" if hours > 0 else ""
            progress.update(bar, advance=1, failed=failed, rate=rate)

        try:
            result = execute_run(
                request, engine, info, on_progress=on_progress, on_start=on_start, refs=refs
            )
        finally:
            close = getattr(engine, "close", None)
            if close is not None:
                close()
    summary = result.summary
    console.print(
        Text(
            f"{summary.done} done, {summary.failed} failed, {summary.skipped_done} already done "
            f"in {time.perf_counter() - start:.1f} s; report {result.report_path}; "
            f"release table {result.release_table}"
        )
    )
    for failure in summary.failures:
        console.print(
            Text.assemble(
                "  ",
                (failure["error_class"], "red"),
                f" ({failure['reason']}) {failure['series_instance_uid']}: {failure['message']}",
            )
        )
    for error in result.errors:
        err_console.print(Text.assemble(("run error", "red"), ": ", error))
    return result


#: The keys of ``status --format json|tsv``, one item per series in selection order: its
#: status (pending, running, done, failed, refused), the stage it reached or failed in, the
#: attempts made, the error (empty strings when none) and the output files it published.
STATUS_COLUMNS: tuple[str, ...] = (
    "series_instance_uid",
    "study_instance_uid",
    "patient_id",
    "collection_id",
    "status",
    "stage",
    "attempts",
    "error_class",
    "reason",
    "message",
    "outputs",
)


def _status_record(row: SeriesState) -> dict[str, object]:
    return {
        "series_instance_uid": row.series_uid,
        **{key: row.ref.get(key) for key in STATUS_COLUMNS[1:4]},
        "status": row.status,
        "stage": row.stage,
        "attempts": row.attempts,
        "error_class": row.error_class,
        "reason": row.reason,
        "message": row.message,
        "outputs": list(row.outputs),
    }


def status(
    work: Path = typer.Argument(..., help="The run's work folder."),
    output_format: str = format_option(),
) -> None:
    """Summarise a run's state: series per status, failures with their error class.

    ``--format json`` or ``tsv`` prints every series (not only the failed ones) with the keys
    of :data:`STATUS_COLUMNS`, full UIDs and messages.
    """
    import sqlite3

    from omas_idc.cli.errors import fail
    from omas_idc.errors import ConfigurationError
    from omas_idc.run.state import RunState

    database = work / "state.sqlite"
    if not database.is_file():
        alternative = work / ".omas-idc-work" / "state.sqlite"
        if not alternative.is_file():
            err_console.print(Text(f"no run state in {work} (looked for state.sqlite)"))
            raise typer.Exit(CONFIG_ERROR_EXIT)
        database = alternative
    try:
        with RunState(database) as state:
            state.check()
            counts = state.counts()
            rows = state.all_series()
            stamp = state.get_meta("timestamp")
    except sqlite3.DatabaseError as err:
        raise fail(
            ConfigurationError(
                f"the run state {database} cannot be read ({err}). The next `omas-idc run` on "
                "this work folder moves it aside and rebuilds the state from the outputs' "
                "DONE markers.",
                reason="state-unreadable",
            )
        ) from err
    if output_format != ListFormat.TABLE:
        text = render_rows(
            [_status_record(r) for r in rows], STATUS_COLUMNS, ListFormat(output_format)
        )
        typer.echo(text, nl=False)
        return
    console.print(
        f"{len(rows)} series: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + (f" (content timestamp {stamp})" if stamp else "")
    )
    failed = [r for r in rows if r.status in ("failed", "refused")]
    if failed:
        table = Table(title="failed (retried by the next run) and refused (final) series")
        for column in ("series", "status", "stage", "attempts", "error", "message"):
            table.add_column(column, overflow="fold")
        for r in failed:
            table.add_row(
                *(
                    Text(value)
                    for value in (
                        r.series_uid,
                        r.status,
                        r.stage,
                        str(r.attempts),
                        f"{r.error_class} ({r.reason})",
                        r.message,
                    )
                )
            )
        console.print(table)


def demo(
    out: Path = typer.Option(Path("omas-idc-demo"), help="Output folder."),
    seed: int = typer.Option(7, help="Phantom seed."),
    device: str = typer.Option("cpu", help="auto, cuda, cpu or mps."),
) -> None:
    """The whole pipeline offline: a phantom CT, the packaged demo model, SEG + SR + QA + PNG."""
    from omas_idc.notebook import offline_series
    from omas_idc.publish.layout import series_prefix
    from omas_idc.run.config import RunConfig
    from omas_idc.run.engine_setup import build_engine
    from omas_idc.run.runner import RunRequest

    work = out / ".omas-idc-work"
    ((ref, folder),) = offline_series(work / "phantom", count=1, seed=seed)
    settings = RunConfig(name="omas-idc-demo").with_overrides(
        model={"name": "demo", "device": device},
        output={"delete_downloads": False},
    )
    engine, info = build_engine(settings.model)
    request = RunRequest(
        config=settings,
        out=str(out),
        work_dir=work,
        local_series={ref.series_instance_uid: folder},
        timestamp=datetime(2026, 1, 1),
    )
    result = _execute(request, engine, info, refs=[ref])
    folder = out / series_prefix(ref)
    console.print(
        Text(f"outputs in {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    )
    raise typer.Exit(_exit_code(result))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``status`` and ``demo`` to ``app``."""
    app.command("run")(run)
    app.command("status")(status)
    app.command("demo")(demo)
