"""``omas-idc batch render|submit``: a Google Cloud Batch job running ``omas-idc run`` in shards."""

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


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command group to ``app``."""
    app.add_typer(batch_app, name="batch")
