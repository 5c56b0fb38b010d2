"""``omas-idc batch``: Cloud Batch jobs of ``omas-idc run`` (render, submit) and their cost."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from omas_idc.errors import OmasIdcError

console = Console()
err_console = Console(stderr=True)

batch_app = typer.Typer(
    help="Google Cloud Batch jobs of `omas-idc run`, one shard per task.",
    no_args_is_help=True,
)


def _job_options(
    config: str = typer.Option(
        ..., "--config", help="Run configuration: a TOML file or a packaged name (nlst)."
    ),
    tasks: int = typer.Option(..., "--tasks", min=1, help="Number of tasks (shards)."),
    image: str = typer.Option(
        ..., "--image", help="Container image URI (built from the Dockerfile)."
    ),
    bucket: str = typer.Option(..., "--bucket", help="Output bucket name."),
    prefix: str | None = typer.Option(
        None, "--prefix", help="Folder in the bucket (default: release name)."
    ),
    parallelism: int | None = typer.Option(
        None, "--parallelism", help="Tasks at once (default: all)."
    ),
    spot: bool = typer.Option(
        True, "--spot/--no-spot", help="Spot VMs (pre-empted tasks are retried)."
    ),
    gpu_type: str = typer.Option(
        "nvidia-l4", "--gpu-type", help="Accelerator type, e.g. nvidia-tesla-t4."
    ),
    gpu_count: int = typer.Option(1, "--gpu-count", min=0, help="GPUs per VM; 0 runs on CPU."),
    machine_type: str = typer.Option(
        "g2-standard-8", "--machine-type", help="Compute Engine type."
    ),
    max_retries: int = typer.Option(3, "--max-retries", help="Retries of a failed task (0-10)."),
    local_ssd_gb: int = typer.Option(
        375, "--local-ssd-gb", help="Work disk, a multiple of 375 GB."
    ),
    boot_disk_gb: int = typer.Option(
        100, "--boot-disk-gb", help="Boot disk (holds the image), GB."
    ),
    max_run_hours: float = typer.Option(
        24.0, "--max-run-hours", help="Limit of one task's run, hours."
    ),
    cpu_milli: int | None = typer.Option(
        None, "--cpu-milli", help="CPU of a task (default: from machine type)."
    ),
    memory_mib: int | None = typer.Option(
        None, "--memory-mib", help="Memory of a task (default: from machine type)."
    ),
    service_account: str | None = typer.Option(
        None, "--service-account", help="The VMs' service account."
    ),
    mount_bucket: bool = typer.Option(
        False,
        "--mount-bucket/--no-mount-bucket",
        help="Mount the bucket (gcsfuse) and write to it.",
    ),
    hmac_key_id_secret: str | None = typer.Option(
        None, "--hmac-key-id-secret", help="Secret Manager secret with the HMAC access ID (s5cmd)."
    ),
    hmac_secret_secret: str | None = typer.Option(
        None, "--hmac-secret-secret", help="Secret Manager secret with the HMAC secret (s5cmd)."
    ),
) -> None:
    """The options render and submit share, declared once (see :func:`_job_command`)."""


def _job_command(command: Callable[..., None]) -> Callable[..., None]:
    """``command(job_options, **own)`` as a typer command that also takes :func:`_job_options`.

    typer reads a command's options from its signature. The command's signature is built
    from the shared options and the command's own parameters after its first (the required
    ones first, in that order, as ``--help`` lists them); the command receives the shared
    values as a dict in its first argument.
    """
    shared = list(inspect.signature(_job_options, eval_str=True).parameters.values())
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
    everything = [*shared, *own]
    required = [p for p in everything if getattr(p.default, "default", None) is ...]
    parameters = [*required, *(p for p in everything if p not in required)]
    names = {p.name for p in shared}

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        job_options = {name: values.pop(name) for name in names}
        command(job_options, **values)

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _render(parameters: dict[str, Any]) -> dict[str, Any]:
    """The job from the shared options and ``region`` (those that are option fields)."""
    from dataclasses import fields

    from omas_idc.run.batch import BatchJobOptions, render_job

    names = {f.name for f in fields(BatchJobOptions)}
    options = BatchJobOptions(**{k: v for k, v in parameters.items() if k in names})
    return render_job(parameters["config"], options)


def _fail(err: OmasIdcError) -> typer.Exit:
    """Report ``err``; exit code 2 (invalid configuration or options, or a refused job)."""
    from omas_idc.cli.errors import CONFIGURATION_EXIT, print_error

    print_error(err, err_console)
    return typer.Exit(CONFIGURATION_EXIT)


@batch_app.command("render")
@_job_command
def render(
    job_options: dict[str, Any],
    region: str | None = typer.Option(None, "--region", help="Region the VMs may run in."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the JSON here."),
) -> None:
    """Print (or write) the Cloud Batch job as JSON, for review or `gcloud batch jobs submit`."""
    from omas_idc.atomic import atomic_write_text
    from omas_idc.errors import OmasIdcError
    from omas_idc.run.batch import job_json

    try:
        text = job_json(_render({**job_options, "region": region}))
    except OmasIdcError as err:
        raise _fail(err) from err
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        err_console.print(f"wrote {output}", markup=False, highlight=False)


@batch_app.command("submit")
@_job_command
def submit(
    job_options: dict[str, Any],
    project: str = typer.Option(..., "--project", help="Google Cloud project of the job."),
    region: str = typer.Option(..., "--region", help="Region of the job and its VMs."),
    job_id: str | None = typer.Option(
        None, "--job-id", help="Job ID (default: <release>-<UTC time>)."
    ),
) -> None:
    """Create the job in Cloud Batch (Application Default Credentials)."""
    from omas_idc.errors import OmasIdcError
    from omas_idc.run.batch import default_job_id, resolve_config_path, submit_job
    from omas_idc.run.config import load_config

    config = job_options["config"]
    try:
        job = _render({**job_options, "region": region})
        name = job_id or default_job_id(load_config(resolve_config_path(config)).name)
        created = submit_job(job, project=project, region=region, job_id=name)
    except OmasIdcError as err:
        raise _fail(err) from err
    console.print(f"created {created}")
    console.print(
        f"https://console.cloud.google.com/batch/jobsDetail/regions/{region}/jobs/{name}"
        f"/details?project={project}"
    )


def _format_estimate(result: Any) -> str:
    """The estimate as a readable table, every assumption listed."""
    from omas_idc.run.batch.estimate import limiting_description

    def money(value: float | None) -> str:
        return "not priced (--no-cost)" if value is None else f"${value:,.0f}"

    gpu = f"{result.gpu_count} x {result.gpu_type}"
    rows = [
        ("machine", f"{result.machine_type} ({result.vcpus} vCPUs, {gpu})"),
        (
            "selection",
            f"{result.series:,} series, {result.total_bytes / 1e12:.2f} TB, "
            f"median {result.median_slices:g} slices",
        ),
        *(
            (f"  CPU-s/series {stage}", f"{seconds:.1f}")
            for stage, seconds in result.cpu_seconds_per_stage.items()
        ),
        *(
            (f"  s/series {name}", f"{seconds:.1f}")
            for name, seconds in result.seconds_per_series.items()
        ),
        ("limiting stage", limiting_description(result.limiting_stage)),
        ("series/hour per VM", f"{result.series_per_hour:,.1f}"),
        ("VM-hours", f"{result.vm_hours:,.1f}"),
        (f"wall-clock with {result.tasks} tasks", f"{result.wall_clock_hours:,.1f} h"),
        ("cost on-demand", money(result.on_demand_usd)),
        ("cost spot", money(result.spot_usd)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        "omas-idc batch estimate: projected cost (a model of a run, not a measurement of one)",
        "",
    ]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines += ["", "assumptions (measured / assumed / given):"]
    for item in result.assumptions:
        lines.append(f"- [{item.status}] {item.name}: {item.value} ({item.source})")
    lines += ["", f"reference point: {result.reference}"]
    return "\n".join(lines) + "\n"


@batch_app.command("estimate")
def estimate(
    selection: Path = typer.Option(..., "--selection", help="Selection parquet (omas-idc select)."),
    machine: str = typer.Option("g2-standard-8", "--machine", help="Compute Engine type."),
    gpu_seconds: float = typer.Option(
        ...,
        "--gpu-seconds",
        help="Accelerator seconds per series of --gpu-slices slices (all tasks).",
    ),
    gpu_seconds_measured: str = typer.Option(
        "",
        "--gpu-seconds-measured",
        help="Where/when --gpu-seconds was measured; empty: printed as an assumption.",
    ),
    gpu_slices: int = typer.Option(126, "--gpu-slices", help="Slices --gpu-seconds refers to."),
    gpu_type: str | None = typer.Option(None, "--gpu-type", help="N1 only: attached GPU."),
    gpu_count: int | None = typer.Option(None, "--gpu-count", help="N1 only: GPUs per VM."),
    tasks: int = typer.Option(100, "--tasks", help="Tasks (VMs) at once."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="From `batch calibrate` (default: the shipped one)."
    ),
    machines: Path | None = typer.Option(
        None, "--machines", help="Machine table CSV (default: the shipped machines.csv)."
    ),
    download_mb_per_s: float = typer.Option(
        100.0, "--download-mb-per-s", help="Assumed download per VM, MB/s."
    ),
    task_overhead_minutes: float = typer.Option(
        5.0, "--task-overhead-minutes", help="Assumed start-up per task, minutes."
    ),
    cost: bool = typer.Option(True, "--cost/--no-cost", help="--no-cost: project time only."),
    output_format: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Project series/hour, VM-hours, wall-clock and cost of a run (every assumption printed)."""
    import json

    from omas_idc.choices import choose
    from omas_idc.errors import ConfigurationError, OmasIdcError
    from omas_idc.run.batch.calibrate import load_calibration, stored_calibration
    from omas_idc.run.batch.estimate import EstimateOptions, estimate_run
    from omas_idc.run.batch.machines import machine_table, parse_machine_table
    from omas_idc.series_ref import read_selection

    try:
        output_format = choose(output_format, ("table", "json"), "--format")
        try:
            refs = read_selection(selection)
            table_text = None if machines is None else machines.read_text(encoding="utf-8")
        except (OSError, ValueError) as err:
            raise ConfigurationError(str(err), reason="estimate") from err
        table = (
            machine_table()
            if table_text is None
            else parse_machine_table(table_text, str(machines))
        )
        measured = stored_calibration() if calibration is None else load_calibration(calibration)
        options = EstimateOptions(
            gpu_seconds=gpu_seconds,
            gpu_seconds_source=gpu_seconds_measured,
            gpu_slices=gpu_slices,
            tasks=tasks,
            download_mb_per_s=download_mb_per_s,
            task_overhead_minutes=task_overhead_minutes,
            priced=cost,
        )
        result = estimate_run(
            refs,
            measured,
            table,
            machine,
            options,
            gpu_type=gpu_type,
            gpu_count=gpu_count,
            selection_source=str(selection),
        )
    except OmasIdcError as err:
        raise _fail(err) from err
    if output_format == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(_format_estimate(result), nl=False)


@batch_app.command("calibrate")
def calibrate(
    out: Path = typer.Option(..., "--out", "-o", help="Write the calibration JSON here."),
    slices: str = typer.Option("32,126", "--slices", help="Phantom slice counts, e.g. 32,126."),
    note: str = typer.Option("", "--note", help="Stored with it (e.g. 'shared machine')."),
) -> None:
    """Measure this machine's CPU-seconds per stage (read, encode, QA, publish) on phantoms."""
    import json

    from omas_idc.atomic import atomic_write_text
    from omas_idc.errors import ConfigurationError, OmasIdcError
    from omas_idc.run.batch.calibrate import calibrate as measure

    try:
        try:
            counts = [int(part) for part in slices.split(",") if part.strip()]
        except ValueError as err:
            raise ConfigurationError(
                f"--slices {slices!r} is not a comma-separated list of integers",
                reason="calibration",
            ) from err
        result = measure(counts, note=note)
    except OmasIdcError as err:
        raise _fail(err) from err
    atomic_write_text(out, json.dumps(result.to_dict(), indent=2) + "\n")
    for stage, stage_cost in result.stages.items():
        console.print(
            f"{stage}: {stage_cost.fixed_seconds:.3f} s + {stage_cost.per_slice_seconds:.4f} s"
            "/slice (CPU)",
            markup=False,
            highlight=False,
        )
    err_console.print(f"wrote {out}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command group to ``app``."""
    app.add_typer(batch_app, name="batch")
