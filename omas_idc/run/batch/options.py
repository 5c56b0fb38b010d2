"""What a Cloud Batch job of ``omas-idc run`` asks for, checked before anything is rendered."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from omas_idc.choices import choose, suggestion
from omas_idc.errors import ConfigurationError
from omas_idc.run.batch.machines import GPU_TYPES, machine_table

__all__ = ["LOCAL_SSD_GB", "BatchJobOptions"]

#: The size of one local SSD; the work disk is a multiple of it.
LOCAL_SSD_GB = 375

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]+$")
_SECRET = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?$")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")


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
    local_ssd_gb: int = LOCAL_SSD_GB
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

    def _fail(self, message: str) -> NoReturn:
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
        if self.local_ssd_gb < LOCAL_SSD_GB or self.local_ssd_gb % LOCAL_SSD_GB:
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
        table = machine_table()
        machine = table.machines.get(self.machine_type)
        built_in = machine.gpu_count if machine else None
        if self.gpu_type is None:
            if built_in:
                self._fail(f"{self.machine_type} has {built_in} GPU(s) built in: ask for them")
            return
        choose(self.gpu_type, GPU_TYPES, "GPU type")
        accepted = table.gpus_taken(self.machine_type)
        if accepted is None and machine is not None:
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
        for option, secret in zip(
            ("--hmac-key-id-secret", "--hmac-secret-secret"), secrets, strict=True
        ):
            if secret and not _SECRET.match(secret):
                # The value is never echoed: a user may have pasted the key itself here.
                self._fail(
                    f"{option} is not the name of a Secret Manager secret (its value is not "
                    "shown, in case it is the key itself): pass the secret's name, "
                    "projects/PROJECT/secrets/NAME[/versions/VERSION], never the key"
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
        machine = machine_table().machines.get(self.machine_type)
        if machine is None:
            self._fail(
                f"resources of machine type {self.machine_type!r} are unknown: pass --cpu-milli "
                f"and --memory-mib.{suggestion(self.machine_type, machine_table().machines)}"
            )
        return (
            self.cpu_milli if self.cpu_milli is not None else int(machine.vcpus * 900),
            self.memory_mib if self.memory_mib is not None else int(machine.memory_gb * 1024 * 0.9),
        )
