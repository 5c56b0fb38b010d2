"""``omas-idc batch render|submit``: a Google Cloud Batch job running ``omas-idc run`` in shards."""

from __future__ import annotations

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

# The options shared by render and submit (typer reads them from the default values).
_CONFIG = typer.Option(
    ..., "--config", help="Run configuration: a TOML file or a packaged name (nlst)."
)
_TASKS = typer.Option(..., "--tasks", min=1, help="Number of tasks (shards).")
_IMAGE = typer.Option(..., "--image", help="Container image URI (built from the Dockerfile).")
_BUCKET = typer.Option(..., "--bucket", help="Output bucket name.")
_PREFIX = typer.Option(None, "--prefix", help="Folder in the bucket (default: release name).")
_PARALLELISM = typer.Option(None, "--parallelism", help="Tasks at once (default: all).")
_SPOT = typer.Option(True, "--spot/--no-spot", help="Spot VMs (pre-empted tasks are retried).")
_GPU_TYPE = typer.Option("nvidia-l4", "--gpu-type", help="Accelerator type, e.g. nvidia-tesla-t4.")
_GPU_COUNT = typer.Option(1, "--gpu-count", min=0, help="GPUs per VM; 0 runs on CPU.")
_MACHINE_TYPE = typer.Option("g2-standard-8", "--machine-type", help="Compute Engine type.")
_MAX_RETRIES = typer.Option(3, "--max-retries", help="Retries of a failed task (0-10).")
_LOCAL_SSD_GB = typer.Option(375, "--local-ssd-gb", help="Work disk, a multiple of 375 GB.")
_BOOT_DISK_GB = typer.Option(100, "--boot-disk-gb", help="Boot disk (holds the image), GB.")
_MAX_RUN_HOURS = typer.Option(24.0, "--max-run-hours", help="Limit of one task's run, hours.")
_CPU_MILLI = typer.Option(None, "--cpu-milli", help="CPU of a task (default: from machine type).")
_MEMORY_MIB = typer.Option(
    None, "--memory-mib", help="Memory of a task (default: from machine type)."
)
_SERVICE_ACCOUNT = typer.Option(None, "--service-account", help="The VMs' service account.")
_MOUNT_BUCKET = typer.Option(
    False, "--mount-bucket/--no-mount-bucket", help="Mount the bucket (gcsfuse) and write to it."
)
_HMAC_ID = typer.Option(
    None, "--hmac-key-id-secret", help="Secret Manager secret with the HMAC access ID (s5cmd)."
)
_HMAC_SECRET = typer.Option(
    None, "--hmac-secret-secret", help="Secret Manager secret with the HMAC secret (s5cmd)."
)


def _render(config: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The job from a command's parameters (those that are :class:`BatchJobOptions` fields)."""
    from dataclasses import fields

    from omas_idc.run.batch import BatchJobOptions, render_job

    names = {f.name for f in fields(BatchJobOptions)}
    options = BatchJobOptions(**{k: v for k, v in parameters.items() if k in names})
    return render_job(config, options)


def _fail(err: OmasIdcError) -> typer.Exit:
    """Report ``err``; exit code 2 (invalid configuration or options, or a refused job)."""
    err_console.print(f"[red]{err.error_class} ({err.reason})[/red]: {err}", markup=True)
    return typer.Exit(2)


@batch_app.command("render")
def render(
    config: str = _CONFIG,
    tasks: int = _TASKS,
    image: str = _IMAGE,
    bucket: str = _BUCKET,
    prefix: str | None = _PREFIX,
    parallelism: int | None = _PARALLELISM,
    spot: bool = _SPOT,
    gpu_type: str = _GPU_TYPE,
    gpu_count: int = _GPU_COUNT,
    machine_type: str = _MACHINE_TYPE,
    max_retries: int = _MAX_RETRIES,
    local_ssd_gb: int = _LOCAL_SSD_GB,
    boot_disk_gb: int = _BOOT_DISK_GB,
    max_run_hours: float = _MAX_RUN_HOURS,
    cpu_milli: int | None = _CPU_MILLI,
    memory_mib: int | None = _MEMORY_MIB,
    service_account: str | None = _SERVICE_ACCOUNT,
    mount_bucket: bool = _MOUNT_BUCKET,
    hmac_key_id_secret: str | None = _HMAC_ID,
    hmac_secret_secret: str | None = _HMAC_SECRET,
    region: str | None = typer.Option(None, "--region", help="Region the VMs may run in."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the JSON here."),
) -> None:
    """Print (or write) the Cloud Batch job as JSON, for review or `gcloud batch jobs submit`."""
    parameters = dict(locals())
    from omas_idc.errors import OmasIdcError
    from omas_idc.run.batch import job_json

    try:
        text = job_json(_render(config, parameters))
    except OmasIdcError as err:
        raise _fail(err) from err
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")


@batch_app.command("submit")
def submit(
    config: str = _CONFIG,
    tasks: int = _TASKS,
    image: str = _IMAGE,
    bucket: str = _BUCKET,
    project: str = typer.Option(..., "--project", help="Google Cloud project of the job."),
    region: str = typer.Option(..., "--region", help="Region of the job and its VMs."),
    job_id: str | None = typer.Option(
        None, "--job-id", help="Job ID (default: <release>-<UTC time>)."
    ),
    prefix: str | None = _PREFIX,
    parallelism: int | None = _PARALLELISM,
    spot: bool = _SPOT,
    gpu_type: str = _GPU_TYPE,
    gpu_count: int = _GPU_COUNT,
    machine_type: str = _MACHINE_TYPE,
    max_retries: int = _MAX_RETRIES,
    local_ssd_gb: int = _LOCAL_SSD_GB,
    boot_disk_gb: int = _BOOT_DISK_GB,
    max_run_hours: float = _MAX_RUN_HOURS,
    cpu_milli: int | None = _CPU_MILLI,
    memory_mib: int | None = _MEMORY_MIB,
    service_account: str | None = _SERVICE_ACCOUNT,
    mount_bucket: bool = _MOUNT_BUCKET,
    hmac_key_id_secret: str | None = _HMAC_ID,
    hmac_secret_secret: str | None = _HMAC_SECRET,
) -> None:
    """Create the job in Cloud Batch (Application Default Credentials)."""
    parameters = dict(locals())
    from omas_idc.errors import OmasIdcError
    from omas_idc.run.batch import default_job_id, resolve_config_path, submit_job
    from omas_idc.run.config import load_config

    try:
        job = _render(config, parameters)
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
