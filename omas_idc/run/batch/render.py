"""The Cloud Batch job of ``omas-idc run`` over shards of a release, rendered offline.

:func:`render_job` builds the job as the JSON of Batch's ``Job`` resource (what the REST API,
``gcloud batch jobs submit --config`` and :func:`submit_job` take). One task group holds
``tasks`` tasks; Batch gives each task ``BATCH_TASK_INDEX`` and ``BATCH_TASK_COUNT`` in its
environment and ``omas-idc run`` takes its ``--shard`` from them (Batch does not expand
variables inside a container's command list, so the command carries no placeholders).

Decisions, in the order a task meets them:

Configuration
    The configuration file is embedded in the job: a first container runnable (same image,
    ``python -c`` with the code of ``write_config.py``, shipped beside this module) writes its
    TOML text from ``OMAS_IDC_CONFIG_TOML`` to ``/mnt/disks/work/config/<file name>``
    atomically after checking its SHA-256, and the second runs ``omas-idc run --config`` on
    that file. The job therefore runs exactly the configuration that was rendered, whether or
    not the image ships it. The file is validated with :func:`omas_idc.run.load_config` before
    rendering.
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

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from omas_idc import __version__
from omas_idc.errors import ConfigurationError
from omas_idc.resources import pipelines_dir
from omas_idc.run.batch.options import BatchJobOptions
from omas_idc.run.config import load_config

__all__ = [
    "CONFIGURATION_EXIT_CODE",
    "GCS_MOUNT_ROOT",
    "PREEMPTION_EXIT_CODE",
    "WORK_DIR",
    "job_json",
    "render_job",
    "resolve_config_path",
    "validate_job",
    "write_config_script",
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


def write_config_script() -> str:
    """The Python code of the first runnable (``write_config.py``, shipped in the package)."""
    return resources.files("omas_idc.run.batch").joinpath("write_config.py").read_text("utf-8")


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
            "commands": ["-c", write_config_script()],
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
