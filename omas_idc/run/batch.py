"""Google Cloud Batch jobs that run ``omas-idc run`` over shards of a release.

:func:`render_job` builds the job as the JSON of Batch's ``Job`` resource (what the REST API,
``gcloud batch jobs submit --config`` and :func:`submit_job` take). One task group holds
``tasks`` tasks; Batch gives each task ``BATCH_TASK_INDEX`` and ``BATCH_TASK_COUNT`` in its
environment and ``omas-idc run`` takes its ``--shard`` from them (Batch does not expand
variables inside a container's command list, so the command carries no placeholders).

Decisions, in the order a task meets them:

Configuration
    The configuration file is embedded in the job: a first container runnable (same image,
    ``python -c``) writes its TOML text from ``OMAS_IDC_CONFIG_TOML`` to
    ``/mnt/disks/work/config/<file name>`` after checking its SHA-256, and the second runs
    ``omas-idc run --config`` on that file. The job therefore runs exactly the configuration
    that was rendered, whether or not the image ships it and whatever the image's version.
    The file is validated with :func:`omas_idc.run.load_config` before rendering.
Work disk
    A local SSD (``newDisk`` of type ``local-ssd``) mounted at ``/mnt/disks/work``: downloads,
    run state and scratch stay on the VM, which a pre-emption discards; outputs do not.
Outputs
    By default ``--out gs://BUCKET/PREFIX``: the run uploads each series with s5cmd, which
    speaks GCS's S3-compatible API and so needs HMAC keys. They reach the container only as
    Secret Manager references (``secretVariables`` -> ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``); the job holds no secret values. With ``mount_bucket`` the
    bucket is instead mounted by Batch (Cloud Storage FUSE, the VM's service account) at
    ``/mnt/disks/gcs/BUCKET`` and the run writes to ``/mnt/disks/gcs/BUCKET/PREFIX`` as a
    folder; no keys are needed.
Retries and exit codes
    ``maxRetryCount`` (default 3) retries a failed task on a fresh VM; a lifecycle policy
    retries explicitly on exit code :data:`PREEMPTION_EXIT_CODE` (50001, Batch's code for a
    pre-empted Spot VM) and another fails the task at once on
    :data:`CONFIGURATION_EXIT_CODE` (2), which ``omas-idc run`` uses for configuration errors
    (and click for usage errors): a retry cannot fix those. Finished series are skipped on a
    retry by their ``DONE.json`` markers.
Logs
    To Cloud Logging.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from omas_idc import __version__
from omas_idc.errors import ConfigurationError
from omas_idc.resources import pipelines_dir
from omas_idc.run.config import load_config

__all__ = [
    "CONFIGURATION_EXIT_CODE",
    "GPU_TYPES",
    "PREEMPTION_EXIT_CODE",
    "WORK_DIR",
    "BatchJobOptions",
    "default_job_id",
    "job_json",
    "render_job",
    "resolve_config_path",
    "submit_job",
    "validate_job",
]

logger = logging.getLogger(__name__)

#: Batch's exit code for a task whose Spot VM was pre-empted.
PREEMPTION_EXIT_CODE = 50001
#: ``omas-idc run``'s exit code for configuration errors: the task fails without retries.
CONFIGURATION_EXIT_CODE = 2
#: Where the local SSD is mounted, in the VM and in the containers.
WORK_DIR = "/mnt/disks/work"
#: Where the bucket is mounted with ``mount_bucket`` (followed by the bucket name).
GCS_MOUNT_ROOT = "/mnt/disks/gcs"
_WORK_DEVICE = "omas-idc-work"
_LOCAL_SSD_GB = 375

#: Accelerator types Compute Engine attaches to Batch VMs.
GPU_TYPES = (
    "nvidia-tesla-t4",
    "nvidia-tesla-p4",
    "nvidia-tesla-p100",
    "nvidia-tesla-v100",
    "nvidia-l4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
    "nvidia-h100-mega-80gb",
    "nvidia-h200-141gb",
)

# Machine family -> the GPU types it takes (N1 attaches several; the others have theirs built in).
_FAMILY_GPUS = {
    "n1": ("nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-p100", "nvidia-tesla-v100"),
    "g2": ("nvidia-l4",),
    "a2-highgpu": ("nvidia-tesla-a100",),
    "a2-megagpu": ("nvidia-tesla-a100",),
    "a2-ultragpu": ("nvidia-a100-80gb",),
    "a3-highgpu": ("nvidia-h100-80gb",),
    "a3-megagpu": ("nvidia-h100-mega-80gb",),
    "a3-ultragpu": ("nvidia-h200-141gb",),
}

# Machine type -> (vCPUs, memory GiB, built-in GPUs or None where GPUs are attached).
_MACHINES: dict[str, tuple[int, float, int | None]] = {
    "g2-standard-4": (4, 16, 1),
    "g2-standard-8": (8, 32, 1),
    "g2-standard-12": (12, 48, 1),
    "g2-standard-16": (16, 64, 1),
    "g2-standard-24": (24, 96, 2),
    "g2-standard-32": (32, 128, 1),
    "g2-standard-48": (48, 192, 4),
    "a2-highgpu-1g": (12, 85, 1),
    "a2-highgpu-2g": (24, 170, 2),
    "a2-ultragpu-1g": (12, 170, 1),
    "n1-standard-4": (4, 15, None),
    "n1-standard-8": (8, 30, None),
    "n1-standard-16": (16, 60, None),
    "n1-highmem-4": (4, 26, None),
    "n1-highmem-8": (8, 52, None),
    "n1-highmem-16": (16, 104, None),
    "n2-standard-8": (8, 32, 0),
    "n2-standard-16": (16, 64, 0),
    "n2-highmem-8": (8, 64, 0),
    "n2-highmem-16": (16, 128, 0),
}

_JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]+$")
_SECRET = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?$")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")

# Run by the first runnable: write the embedded configuration, checked against its hash; a
# mismatch exits with CONFIGURATION_EXIT_CODE, which fails the task without retries.
_WRITE_CONFIG = (
    "import hashlib, os, pathlib, sys\n"
    "text = os.environ['OMAS_IDC_CONFIG_TOML']\n"
    "if hashlib.sha256(text.encode()).hexdigest() != os.environ['OMAS_IDC_CONFIG_SHA256']:\n"
    "    print('omas-idc: embedded configuration and SHA-256 differ', file=sys.stderr)\n"
    "    sys.exit(2)\n"
    "path = pathlib.Path(os.environ['OMAS_IDC_CONFIG_PATH'])\n"
    "path.parent.mkdir(parents=True, exist_ok=True)\n"
    "temporary = path.with_name('.' + path.name + '.tmp')\n"
    "temporary.write_text(text, encoding='utf-8')\n"
    "os.replace(temporary, path)\n"
)


def _did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _family(machine_type: str) -> str:
    parts = machine_type.split("-")
    two = "-".join(parts[:2])
    return two if two in _FAMILY_GPUS else parts[0]


@dataclass(frozen=True)
class BatchJobOptions:
    """What a Cloud Batch job of ``omas-idc run`` asks for.

    Attributes
    ----------
    image
        The container image (built from the repository's ``Dockerfile``).
    bucket
        The output bucket's name (``gs://`` is accepted and removed).
    tasks
        Number of tasks, i.e. shards of the selection.
    prefix
        Folder in the bucket (default: the configuration's release name).
    parallelism
        Tasks running at once (default: all).
    spot
        Spot VMs (``provisioningModel: SPOT``); pre-empted tasks are retried.
    machine_type
        Compute Engine machine type.
    gpu_type, gpu_count
        Accelerator per VM; ``gpu_count`` 0 (or ``gpu_type`` ``None``) runs on CPU.
    max_retries
        Batch's ``maxRetryCount`` (0-10).
    local_ssd_gb
        Size of the local SSD work disk, a multiple of 375 GB.
    boot_disk_gb
        Boot disk size: it holds the container image (CUDA and PyTorch).
    max_run_hours
        Limit of one task's run (``maxRunDuration``).
    cpu_milli, memory_mib
        Resources of a task (default: 90 % of the machine type's, one task per VM).
    region
        Region the VMs may run in (``allowedLocations``); required to submit.
    service_account
        Email of the VMs' service account (default: Compute Engine's default account).
    mount_bucket
        Mount the bucket with Cloud Storage FUSE and write to it as a folder.
    hmac_key_id_secret, hmac_secret_secret
        Secret Manager secret versions holding the HMAC key pair s5cmd uses for ``gs://``
        outputs (``projects/P/secrets/S[/versions/V]``); needed unless ``mount_bucket``.
    """

    image: str
    bucket: str
    tasks: int
    prefix: str | None = None
    parallelism: int | None = None
    spot: bool = True
    machine_type: str = "g2-standard-8"
    gpu_type: str | None = "nvidia-l4"
    gpu_count: int = 1
    max_retries: int = 3
    local_ssd_gb: int = _LOCAL_SSD_GB
    boot_disk_gb: int = 100
    max_run_hours: float = 24.0
    cpu_milli: int | None = None
    memory_mib: int | None = None
    region: str | None = None
    service_account: str | None = None
    mount_bucket: bool = False
    hmac_key_id_secret: str | None = None
    hmac_secret_secret: str | None = None

    def __post_init__(self) -> None:
        bucket = self.bucket.removeprefix("gs://").rstrip("/")
        object.__setattr__(self, "bucket", bucket)
        if self.gpu_count == 0:
            object.__setattr__(self, "gpu_type", None)
        for secret in ("hmac_key_id_secret", "hmac_secret_secret"):
            value = getattr(self, secret)
            if value and "/versions/" not in value:
                object.__setattr__(self, secret, f"{value}/versions/latest")
        self._check()

    def _fail(self, message: str) -> None:
        raise ConfigurationError(message, reason="batch-job")

    def _check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            self._fail(f"image {self.image!r} is not an image URI, e.g. us-docker.pkg.dev/P/R/omas")
        if not _BUCKET.match(self.bucket) or "/" in self.bucket:
            self._fail(
                f"bucket {self.bucket!r} is not a bucket name: pass the name only "
                "(my-bucket) and the folder with --prefix"
            )
        if self.prefix is not None and (
            not _PREFIX.match(self.prefix) or ".." in self.prefix.split("/")
        ):
            self._fail(
                f"prefix {self.prefix!r} is not a folder name: use letters, digits, '.', '_', "
                "'-' and '/'"
            )
        if self.tasks < 1:
            self._fail(f"tasks must be at least 1, got {self.tasks}")
        if self.parallelism is not None and not 1 <= self.parallelism <= self.tasks:
            self._fail(f"parallelism must lie in 1..{self.tasks}, got {self.parallelism}")
        if not 0 <= self.max_retries <= 10:
            self._fail(f"max retries must lie in 0..10 (Batch's limit), got {self.max_retries}")
        if self.local_ssd_gb < _LOCAL_SSD_GB or self.local_ssd_gb % _LOCAL_SSD_GB:
            self._fail(f"local SSD size must be a multiple of 375 GB, got {self.local_ssd_gb}")
        if self.boot_disk_gb < 30:
            self._fail(f"boot disk must be at least 30 GB, got {self.boot_disk_gb}")
        if not 0 < self.max_run_hours <= 14 * 24:
            self._fail(f"max run hours must lie in (0, 336], got {self.max_run_hours}")
        if self.service_account and not _SERVICE_ACCOUNT.match(self.service_account):
            self._fail(f"{self.service_account!r} is not a service account email")
        self._check_gpu()
        self._check_output()

    def _check_gpu(self) -> None:
        if self.gpu_count < 0:
            self._fail(f"GPU count must be 0 or more, got {self.gpu_count}")
        built_in = _MACHINES.get(self.machine_type, (0, 0.0, None))[2]
        if self.gpu_type is None:
            if built_in:
                self._fail(f"{self.machine_type} has {built_in} GPU(s) built in: ask for them")
            return
        if self.gpu_type not in GPU_TYPES:
            self._fail(
                f"unknown GPU type {self.gpu_type!r}{_did_you_mean(self.gpu_type, GPU_TYPES)}; "
                f"known: {', '.join(GPU_TYPES)}"
            )
        accepted = _FAMILY_GPUS.get(_family(self.machine_type))
        if accepted is None and self.machine_type in _MACHINES:
            self._fail(f"{self.machine_type} takes no GPU: use a g2, a2 or n1 machine type")
        if accepted is not None and self.gpu_type not in accepted:
            self._fail(
                f"{self.machine_type} takes {', '.join(accepted)}, not {self.gpu_type} "
                "(G2 machines carry L4 GPUs; T4 and V100 attach to N1 machines)"
            )
        if built_in and built_in != self.gpu_count:
            self._fail(f"{self.machine_type} has {built_in} GPU(s) built in, not {self.gpu_count}")

    def _check_output(self) -> None:
        secrets = (self.hmac_key_id_secret, self.hmac_secret_secret)
        for secret in secrets:
            if secret and not _SECRET.match(secret):
                self._fail(
                    f"{secret!r} is not a Secret Manager secret: use "
                    "projects/PROJECT/secrets/NAME[/versions/VERSION]"
                )
        if self.mount_bucket and any(secrets):
            self._fail("a mounted bucket needs no HMAC keys: drop the secrets or the mount")
        if not self.mount_bucket and not all(secrets):
            self._fail(
                f"outputs to gs://{self.bucket} are uploaded by s5cmd through GCS's S3 API, which "
                "needs an HMAC key pair: pass both --hmac-key-id-secret and --hmac-secret-secret "
                "(Secret Manager secrets the VMs' service account may read), or --mount-bucket"
            )

    def compute_resource(self) -> tuple[int, int]:
        """``(cpuMilli, memoryMib)`` of one task.

        Raises
        ------
        ConfigurationError
            If the machine type is not known and the resources are not given.
        """
        if self.cpu_milli is not None and self.memory_mib is not None:
            return self.cpu_milli, self.memory_mib
        if self.machine_type not in _MACHINES:
            self._fail(
                f"resources of machine type {self.machine_type!r} are unknown"
                f"{_did_you_mean(self.machine_type, list(_MACHINES))}: pass --cpu-milli and "
                "--memory-mib"
            )
        cpus, memory_gib, _ = _MACHINES[self.machine_type]
        return (
            self.cpu_milli if self.cpu_milli is not None else int(cpus * 900),
            self.memory_mib if self.memory_mib is not None else int(memory_gib * 1024 * 0.9),
        )


def resolve_config_path(config: str | Path) -> Path:
    """The configuration file: a path, or the name of a packaged one (``"nlst"``).

    Raises
    ------
    ConfigurationError
        If neither a file nor a packaged configuration has that name.
    """
    path = Path(config)
    if path.is_file():
        return path
    packaged = pipelines_dir() / f"{config}.toml"
    if "/" not in str(config) and packaged.is_file():
        return packaged
    available = sorted(p.stem for p in pipelines_dir().glob("*.toml"))
    raise ConfigurationError(
        f"no configuration file {str(config)!r}: pass a TOML file or a packaged name {available}",
        reason="missing",
    )


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "omas-idc"


def _label(text: str) -> str:
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return value[:63] or "none"


def default_job_id(release_name: str, now: datetime | None = None) -> str:
    """A job ID from the release name and the time (UTC), e.g. ``omas-idc-nlst-20250101-120000``."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^a-z0-9-]+", "-", release_name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"omas-{base}".rstrip("-")
    return f"{base[: 62 - len(stamp)].rstrip('-')}-{stamp}"


def render_job(config: str | Path, options: BatchJobOptions) -> dict[str, Any]:
    """The Cloud Batch job (``Job`` resource JSON as a dict) running ``config`` in shards.

    Parameters
    ----------
    config
        The run configuration: a TOML file or a packaged name; it is embedded in the job.
    options
        Image, bucket, tasks, machines.

    Returns
    -------
    dict
        The job, valid for ``google.cloud.batch_v1.Job`` (checked by :func:`validate_job`).

    Raises
    ------
    ConfigurationError
        If the configuration or an option is invalid.
    """
    path = resolve_config_path(config)
    run_config = load_config(path)
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    config_in_vm = str(PurePosixPath(WORK_DIR) / "config" / path.name)
    prefix = options.prefix.strip("/") if options.prefix else _path_part(run_config.name)
    volumes: list[dict[str, Any]] = [{"deviceName": _WORK_DEVICE, "mountPath": WORK_DIR}]
    run_environment: dict[str, Any] = {}
    if options.mount_bucket:
        mount = f"{GCS_MOUNT_ROOT}/{options.bucket}"
        volumes.append({"gcs": {"remotePath": options.bucket}, "mountPath": mount})
        out = f"{mount}/{prefix}" if prefix else mount
    else:
        out = f"gs://{options.bucket}/{prefix}" if prefix else f"gs://{options.bucket}"
        run_environment["secretVariables"] = {
            "AWS_ACCESS_KEY_ID": options.hmac_key_id_secret,
            "AWS_SECRET_ACCESS_KEY": options.hmac_secret_secret,
        }
    cpu_milli, memory_mib = options.compute_resource()
    write_config = {
        "displayName": "write-config",
        "container": {
            "imageUri": options.image,
            "entrypoint": "python",
            "commands": ["-c", _WRITE_CONFIG],
        },
        "environment": {
            "variables": {
                "OMAS_IDC_CONFIG_TOML": text,
                "OMAS_IDC_CONFIG_SHA256": digest,
                "OMAS_IDC_CONFIG_PATH": config_in_vm,
            }
        },
    }
    run: dict[str, Any] = {
        "displayName": "omas-idc-run",
        "container": {
            "imageUri": options.image,
            "entrypoint": "omas-idc",
            "commands": ["run", "--config", config_in_vm, "--out", out, "--work", WORK_DIR],
        },
    }
    if run_environment:
        run["environment"] = run_environment
    policy: dict[str, Any] = {
        "machineType": options.machine_type,
        "provisioningModel": "SPOT" if options.spot else "STANDARD",
        "bootDisk": {"type": "pd-balanced", "sizeGb": options.boot_disk_gb},
        "disks": [
            {
                "newDisk": {"type": "local-ssd", "sizeGb": options.local_ssd_gb},
                "deviceName": _WORK_DEVICE,
            }
        ],
    }
    if options.gpu_type:
        policy["accelerators"] = [{"type": options.gpu_type, "count": options.gpu_count}]
    instance: dict[str, Any] = {"policy": policy}
    if options.gpu_type:
        instance["installGpuDrivers"] = True
    labels = {
        "release": _label(run_config.name),
        "omas-idc-version": _label(__version__),
        "config-sha256": digest[:16],
    }
    allocation: dict[str, Any] = {"instances": [instance], "labels": labels}
    if options.region:
        allocation["location"] = {"allowedLocations": [f"regions/{options.region}"]}
    if options.service_account:
        allocation["serviceAccount"] = {"email": options.service_account}
    job: dict[str, Any] = {
        "taskGroups": [
            {
                "taskCount": options.tasks,
                "parallelism": options.parallelism or options.tasks,
                "taskCountPerNode": 1,
                "taskSpec": {
                    "runnables": [write_config, run],
                    "volumes": volumes,
                    "computeResource": {"cpuMilli": cpu_milli, "memoryMib": memory_mib},
                    "maxRunDuration": f"{round(options.max_run_hours * 3600)}s",
                    "maxRetryCount": options.max_retries,
                    "lifecyclePolicies": [
                        {
                            "action": "RETRY_TASK",
                            "actionCondition": {"exitCodes": [PREEMPTION_EXIT_CODE]},
                        },
                        {
                            "action": "FAIL_TASK",
                            "actionCondition": {"exitCodes": [CONFIGURATION_EXIT_CODE]},
                        },
                    ],
                },
            }
        ],
        "allocationPolicy": allocation,
        "labels": labels,
        "logsPolicy": {"destination": "CLOUD_LOGGING"},
    }
    validate_job(job)
    logger.info("job of %s: %d tasks writing to %s", run_config.name, options.tasks, out)
    return job


def job_json(job: Mapping[str, Any]) -> str:
    """The job as indented JSON text (the input of ``gcloud batch jobs submit --config``)."""
    return json.dumps(job, indent=2, sort_keys=False) + "\n"


def validate_job(job: Mapping[str, Any]) -> Any:
    """Parse ``job`` as google-cloud-batch's ``Job`` message, refusing unknown fields.

    Returns
    -------
    google.cloud.batch_v1.Job
        The parsed message.

    Raises
    ------
    ConfigurationError
        If a field is unknown or has the wrong type.
    """
    from google.cloud import batch_v1
    from google.protobuf import json_format

    message = batch_v1.Job()
    try:
        json_format.ParseDict(dict(job), batch_v1.Job.pb(message), ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise ConfigurationError(
            f"the job is not a valid Cloud Batch Job: {err}", reason="batch-job"
        ) from err
    return message


def submit_job(
    job: Mapping[str, Any],
    *,
    project: str,
    region: str,
    job_id: str,
    client: Any | None = None,
) -> str:
    """Create ``job`` in Cloud Batch and return its resource name.

    Parameters
    ----------
    job
        A job from :func:`render_job`.
    project, region
        Where the job is created (``projects/PROJECT/locations/REGION``).
    job_id
        The job's ID: lower-case letters, digits and hyphens, at most 63 characters.
    client
        A ``batch_v1.BatchServiceClient`` (default: one with Application Default Credentials).

    Raises
    ------
    ConfigurationError
        If the ID is invalid, no credentials are found, or Batch refuses the job.
    """
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import batch_v1

    if not _JOB_ID.match(job_id):
        raise ConfigurationError(
            f"job ID {job_id!r} is invalid: use 1-63 lower-case letters, digits and hyphens, "
            "starting with a letter",
            reason="batch-job",
        )
    if not project or not region:
        raise ConfigurationError("submitting needs --project and --region", reason="batch-job")
    request = batch_v1.CreateJobRequest(
        parent=f"projects/{project}/locations/{region}", job_id=job_id, job=validate_job(job)
    )
    try:
        service = client if client is not None else batch_v1.BatchServiceClient()
        created = service.create_job(request=request)
    except auth_exceptions.DefaultCredentialsError as err:
        raise ConfigurationError(
            f"no Google credentials: {err}. Run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS",
            reason="credentials",
        ) from err
    except api_exceptions.GoogleAPICallError as err:
        raise ConfigurationError(
            f"Cloud Batch refused job {job_id} in projects/{project}/locations/{region}: "
            f"{err.message}. Check that the Batch API is enabled, that you may create jobs, "
            "and that the job ID is not taken",
            reason="batch-api",
        ) from err
    name = str(created.name)
    logger.info("created Cloud Batch job %s", name)
    return name
