"""Cloud Batch jobs of ``omas-idc run``: rendered offline, checked by google-cloud-batch itself."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import batch_v1
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.errors import ConfigurationError
from omas_idc.resources import pipelines_dir
from omas_idc.run.batch import (
    CONFIGURATION_EXIT_CODE,
    GPU_TYPES,
    PREEMPTION_EXIT_CODE,
    WORK_DIR,
    BatchJobOptions,
    default_job_id,
    job_json,
    machine_table,
    render_job,
    submit_job,
    validate_job,
)
from omas_idc.run.batch.machines import parse_machine_table
from omas_idc.run.batch.render import write_config_script
from omas_idc.run.config import load_config

NLST = pipelines_dir() / "nlst.toml"
RECORDED = Path(__file__).parent / "batch_jobs"
IMAGE = "us-docker.pkg.dev/my-project/omas/omas-idc:0.1.0"
SECRETS = {
    "hmac_key_id_secret": "projects/my-project/secrets/omas-hmac-id",
    "hmac_secret_secret": "projects/my-project/secrets/omas-hmac-secret/versions/3",
}
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "CREDENTIAL", "KEY")


def options(**changes: Any) -> BatchJobOptions:
    values: dict[str, Any] = {"image": IMAGE, "bucket": "omas-release", "tasks": 40, **SECRETS}
    values.update(changes)
    return BatchJobOptions(**values)


def runnables(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["taskGroups"][0]["taskSpec"]["runnables"])


def run_command(job: dict[str, Any]) -> list[str]:
    return list(runnables(job)[-1]["container"]["commands"])


def test_rendered_job_is_a_valid_batch_job_with_sharded_gpu_spot_tasks() -> None:
    job = render_job(NLST, options(parallelism=10))
    # google-cloud-batch's own message, unknown fields refused.
    message = batch_v1.Job.from_json(json.dumps(job), ignore_unknown_fields=False)
    group = message.task_groups[0]
    assert group.task_count == 40
    assert group.parallelism == 10
    assert group.task_count_per_node == 1
    spec = group.task_spec
    assert spec.max_retry_count >= 3
    policies = {p.action: list(p.action_condition.exit_codes) for p in spec.lifecycle_policies}
    assert policies[batch_v1.LifecyclePolicy.Action.RETRY_TASK] == [PREEMPTION_EXIT_CODE]
    assert policies[batch_v1.LifecyclePolicy.Action.FAIL_TASK] == [CONFIGURATION_EXIT_CODE]
    assert PREEMPTION_EXIT_CODE == 50001
    assert spec.max_run_duration.total_seconds() == 24 * 3600
    assert spec.compute_resource.cpu_milli > 0
    assert spec.compute_resource.memory_mib > 16 * 1024
    instance = message.allocation_policy.instances[0]
    policy = instance.policy
    assert policy.machine_type == "g2-standard-8"
    assert policy.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    assert [(a.type_, a.count) for a in policy.accelerators] == [("nvidia-l4", 1)]
    assert instance.install_gpu_drivers is True
    disk = policy.disks[0]
    assert disk.new_disk.type_ == "local-ssd"
    assert disk.new_disk.size_gb == 375
    assert [(v.device_name, v.mount_path) for v in spec.volumes] == [(disk.device_name, WORK_DIR)]
    assert message.logs_policy.destination == batch_v1.LogsPolicy.Destination.CLOUD_LOGGING
    assert message.labels["release"] == "omas-idc-nlst"


def test_task_runs_omas_idc_run_on_the_embedded_configuration() -> None:
    job = render_job(NLST, options(prefix="nlst/v1"))
    command = run_command(job)
    container = runnables(job)[-1]["container"]
    assert container["imageUri"] == IMAGE
    assert container["entrypoint"] == "omas-idc"
    config_in_vm = command[command.index("--config") + 1]
    assert command == [
        "run",
        "--config",
        config_in_vm,
        "--out",
        "gs://omas-release/nlst/v1",
        "--work",
        WORK_DIR,
    ]
    # The shard comes from BATCH_TASK_INDEX/COUNT in the environment: no placeholders.
    text = json.dumps(job)
    assert "$BATCH" not in text
    assert "${" not in text
    assert "--shard" not in command
    # The first runnable writes the configuration the user rendered, byte for byte.
    writer = runnables(job)[0]
    variables = writer["environment"]["variables"]
    assert variables["OMAS_IDC_CONFIG_TOML"] == NLST.read_text(encoding="utf-8")
    assert variables["OMAS_IDC_CONFIG_PATH"] == config_in_vm
    assert config_in_vm.startswith(WORK_DIR + "/")


def test_config_writer_reproduces_the_file_and_refuses_a_corrupted_one(tmp_path: Path) -> None:
    job = render_job(NLST, options())
    writer = runnables(job)[0]
    code = writer["container"]["commands"][1]
    variables = dict(writer["environment"]["variables"])
    target = tmp_path / "work" / "config" / "nlst.toml"
    variables["OMAS_IDC_CONFIG_PATH"] = str(target)
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **variables}, check=False
    )
    assert done.returncode == 0
    assert load_config(target) == load_config(NLST)
    assert target.read_bytes() == NLST.read_bytes()
    # A retried task on the same VM writes again: the file is replaced, no temporary is left.
    target.write_text("half a file", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **variables}, check=False
    )
    assert done.returncode == 0
    assert target.read_bytes() == NLST.read_bytes()
    assert list(target.parent.iterdir()) == [target]
    variables["OMAS_IDC_CONFIG_TOML"] = variables["OMAS_IDC_CONFIG_TOML"][:100]
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == CONFIGURATION_EXIT_CODE
    assert "SHA-256" in done.stderr


def test_job_holds_no_secret_values() -> None:
    job = render_job(NLST, options())
    for runnable in runnables(job):
        assert "username" not in runnable["container"]
        assert "password" not in runnable["container"]
        environment = runnable.get("environment", {})
        assert "encryptedVariables" not in environment
        for name in environment.get("variables", {}):
            assert not any(word in name.upper() for word in SECRET_WORDS), name
        for name, reference in environment.get("secretVariables", {}).items():
            assert reference.startswith("projects/my-project/secrets/"), (name, reference)
            assert "/versions/" in reference
    secret = runnables(job)[-1]["environment"]["secretVariables"]
    assert set(secret) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "environment" not in job["taskGroups"][0]["taskSpec"]


#: Distinctive fake credentials: none of them may appear in anything omas-idc prints or writes.
FAKE_KEY_ID = "AKIAOMASFAKEKEYID7Q3Z"
FAKE_SECRET = "omasFAKEsecret/K7MDENG+bPxRfiCYzz93"
FAKE_TOKEN = "ya29.omas-fake-oauth-token-5d41402abc4b2a76"
RENDER = ["batch", "render", "--config", "nlst", "--tasks", "8", "--image", IMAGE]
RENDER += ["--bucket", "omas-release"]


def test_no_secret_value_from_the_environment_reaches_the_job_or_the_output(
    tmp_path: Path,
) -> None:
    """Credentials in the environment of the person rendering stay out of the job."""
    environment = {
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_SESSION_TOKEN": FAKE_TOKEN,
        "CLOUDSDK_AUTH_ACCESS_TOKEN": FAKE_TOKEN,
    }
    output = tmp_path / "job.json"
    arguments = [*RENDER, "--hmac-key-id-secret", SECRETS["hmac_key_id_secret"]]
    arguments += ["--hmac-secret-secret", SECRETS["hmac_secret_secret"]]
    printed = CliRunner().invoke(app, ["-vv", *arguments], env=environment)
    written = CliRunner().invoke(app, [*arguments, "--output", str(output)], env=environment)
    assert printed.exit_code == 0, printed.output
    assert written.exit_code == 0, written.output
    texts = {"stdout": printed.output, "file": output.read_text(), "log": written.output}
    for where, text in texts.items():
        for value in (FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN):
            assert value not in text, (where, value)
    # Only the Secret Manager names reach the job: Batch reads the values inside the VM.
    job = json.loads(texts["file"])
    secret = runnables(job)[-1]["environment"]["secretVariables"]
    assert secret == {
        "AWS_ACCESS_KEY_ID": SECRETS["hmac_key_id_secret"] + "/versions/latest",
        "AWS_SECRET_ACCESS_KEY": SECRETS["hmac_secret_secret"],
    }


@pytest.mark.parametrize("command", ["render", "submit"])
@pytest.mark.parametrize("option", ["--hmac-key-id-secret", "--hmac-secret-secret"])
def test_a_key_passed_where_a_secret_name_belongs_is_refused_without_echoing_it(
    command: str, option: str, tmp_path: Path
) -> None:
    """The mistake: pasting the HMAC key itself instead of its Secret Manager name."""
    values = {
        "--hmac-key-id-secret": SECRETS["hmac_key_id_secret"],
        "--hmac-secret-secret": SECRETS["hmac_secret_secret"],
    }
    values[option] = FAKE_KEY_ID if option == "--hmac-key-id-secret" else FAKE_SECRET
    arguments = ["batch", command, *RENDER[2:]]
    for name, value in values.items():
        arguments += [name, value]
    if command == "render":
        arguments += ["--output", str(tmp_path / "job.json")]
    else:
        arguments += ["--project", "p", "--region", "us-central1"]
    for verbosity in ([], ["-vv"]):
        result = CliRunner().invoke(app, [*verbosity, *arguments])
        assert result.exit_code == CONFIGURATION_EXIT_CODE, result.output
        flat = " ".join(result.output.split())
        assert f"ConfigurationError (batch-job): {option} is not the name of a Secret" in flat
        assert values[option] not in result.output
        assert values[option].split("/")[0] not in result.output  # nor a part of it
    assert list(tmp_path.iterdir()) == []


def test_mounted_bucket_needs_no_keys_and_writes_to_the_mount() -> None:
    job = render_job(
        NLST, options(mount_bucket=True, hmac_key_id_secret=None, hmac_secret_secret=None)
    )
    validate_job(job)
    command = run_command(job)
    out = command[command.index("--out") + 1]
    volumes = job["taskGroups"][0]["taskSpec"]["volumes"]
    gcs = next(v for v in volumes if "gcs" in v)
    assert gcs["gcs"]["remotePath"] == "omas-release"
    assert out == f"{gcs['mountPath']}/omas-idc-nlst"
    assert "environment" not in runnables(job)[-1]


def test_gs_output_without_keys_or_mount_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="HMAC"):
        options(hmac_key_id_secret=None, hmac_secret_secret=None)


def test_cpu_standard_job_has_no_accelerator_or_drivers() -> None:
    job = render_job(
        NLST, options(spot=False, gpu_count=0, machine_type="n2-highmem-8", max_retries=5)
    )
    instance = validate_job(job).allocation_policy.instances[0]
    assert instance.policy.provisioning_model == (
        batch_v1.AllocationPolicy.ProvisioningModel.STANDARD
    )
    assert list(instance.policy.accelerators) == []
    assert instance.install_gpu_drivers is False
    assert job["taskGroups"][0]["taskSpec"]["maxRetryCount"] == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpu_type": "nvidia-tesla-t5"}, "Did you mean 'nvidia-tesla-t4'"),
        ({"gpu_type": "nvidia-tesla-t4"}, "g2-standard-8 takes nvidia-l4"),
        ({"machine_type": "g2-standard-24"}, "2 GPU"),
        ({"machine_type": "n2-standard-8"}, "takes no GPU"),
        ({"bucket": "gs://omas-release/nlst"}, "--prefix"),
        ({"tasks": 0}, "at least 1"),
        ({"parallelism": 41}, "parallelism"),
        ({"max_retries": 11}, "0..10"),
        ({"local_ssd_gb": 500}, "multiple of 375"),
        ({"prefix": "../other release"}, "not a folder name"),
        ({"hmac_key_id_secret": "omas-hmac-id"}, "Secret Manager"),
    ],
)
def test_invalid_options_say_what_to_change(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        render_job(NLST, options(**changes))


def test_unknown_machine_needs_explicit_resources() -> None:
    with pytest.raises(ConfigurationError, match="--cpu-milli"):
        render_job(NLST, options(machine_type="g2-custom-9", cpu_milli=None))
    with pytest.raises(ConfigurationError, match="Did you mean 'g2-standard-8'"):
        render_job(NLST, options(machine_type="g2-standrd-8"))
    job = render_job(NLST, options(machine_type="g2-custom-9", cpu_milli=8000, memory_mib=30000))
    assert job["taskGroups"][0]["taskSpec"]["computeResource"] == {
        "cpuMilli": 8000,
        "memoryMib": 30000,
    }


# Jobs rendered before run/batch.py became a package (tests/run/batch_jobs/), with the parts
# that follow other files masked: the config writer's code, the configuration and its hash,
# omas-idc's version.
NOKEYS = {"mount_bucket": True, "hmac_key_id_secret": None, "hmac_secret_secret": None}
RECORDED_JOBS: dict[str, dict[str, Any]] = {
    "default_l4": {},
    "cpu_standard": {
        "spot": False,
        "gpu_count": 0,
        "machine_type": "n2-highmem-8",
        "max_retries": 5,
    },
    "n1_t4": {
        "machine_type": "n1-standard-8",
        "gpu_type": "nvidia-tesla-t4",
        "gpu_count": 2,
        **NOKEYS,
    },
    "region_sa": {
        "region": "us-central1",
        "service_account": "runner@my-project.iam.gserviceaccount.com",
    },
    "a3_unknown_resources": {
        "machine_type": "a3-highgpu-8g",
        "gpu_type": "nvidia-h100-80gb",
        "gpu_count": 8,
        "cpu_milli": 200000,
        "memory_mib": 1800000,
        "bucket": "gs://omas-release/",
    },
}


@pytest.mark.parametrize("case", sorted(RECORDED_JOBS))
def test_rendered_job_equals_the_recorded_one(case: str) -> None:
    text = job_json(render_job(NLST, options(**RECORDED_JOBS[case])))
    config = NLST.read_text(encoding="utf-8")
    digest = hashlib.sha256(config.encode()).hexdigest()
    text = text.replace(json.dumps(write_config_script())[1:-1], "<write_config.py>")
    text = text.replace(json.dumps(config)[1:-1], "<nlst.toml>")
    text = text.replace(digest, "<sha256>").replace(digest[:16], "<sha256[:16]>")
    text = re.sub(r'"omas-idc-version": "[^"]*"', '"omas-idc-version": "<version>"', text)
    assert text == (RECORDED / f"{case}.json").read_text(encoding="utf-8")


def test_machine_table_keeps_the_gpus_and_resources_of_each_type() -> None:
    assert GPU_TYPES == (
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
    table = machine_table()
    assert table.gpus_taken("n1-highmem-8") == GPU_TYPES[:4]
    assert table.gpus_taken("a3-megagpu-8g") == ("nvidia-h100-mega-80gb",)
    assert table.gpus_taken("n2-standard-8") is None
    # 90 % of the machine's vCPUs and memory for the task.
    resources = {
        "g2-standard-48": (43200, int(192 * 1024 * 0.9)),
        "a2-highgpu-2g": (21600, int(170 * 1024 * 0.9)),
        "n1-standard-4": (3600, int(15 * 1024 * 0.9)),
    }
    for machine_type, expected in resources.items():
        gpu = table.machines[machine_type]
        job_options = options(
            machine_type=machine_type,
            gpu_type=gpu.gpu_type or "nvidia-tesla-t4",
            gpu_count=gpu.gpu_count or 1,
        )
        assert job_options.compute_resource() == expected
    # A family without listed machine types still takes its GPU, if the resources are given.
    render_job(
        NLST,
        options(
            machine_type="a2-megagpu-16g",
            gpu_type="nvidia-tesla-a100",
            gpu_count=16,
            cpu_milli=90000,
            memory_mib=1_000_000,
        ),
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("g2,g2-standard-4,4,16,nvidia-tesla-t4,1", "no row of family g2"),
        ("a2-highgpu,g2-standard-4,4,16,nvidia-l4,1", "of family g2, not a2-highgpu"),
        ("g2,,,,,", "needs a GPU type"),
        ("g2,g2-standard-4,four,16,nvidia-l4,1", "vcpus and gpu_count are integers"),
    ],
)
def test_machine_table_refuses_inconsistent_rows(row: str, message: str) -> None:
    text = "# a comment\nfamily,machine_type,vcpus,memory_gb,gpu_type,gpu_count\n"
    text += f"g2,,,,nvidia-l4,\nn1,,,,nvidia-tesla-t4,\n{row}\n"
    with pytest.raises(ConfigurationError, match=message):
        parse_machine_table(text, "test.csv")


def test_invalid_configuration_is_refused_before_rendering(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[model]\nnmae = "cads"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="nmae"):
        render_job(broken, options())


def test_local_configuration_is_embedded_and_labelled(tmp_path: Path) -> None:
    local = tmp_path / "pilot.toml"
    text = NLST.read_text(encoding="utf-8").replace('"omas-idc-nlst"', '"NLST Pilot 1"')
    local.write_text(text, encoding="utf-8")
    job = render_job(local, options(region="us-central1"))
    assert job["labels"]["release"] == "nlst-pilot-1"
    assert job["labels"]["config-sha256"] == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert run_command(job)[2].endswith("/pilot.toml")
    assert job["allocationPolicy"]["location"] == {"allowedLocations": ["regions/us-central1"]}
    assert "gs://omas-release/NLST-Pilot-1" in run_command(job)


def test_default_job_id_is_a_valid_batch_id() -> None:
    from datetime import datetime, timezone

    job_id = default_job_id("omas-idc-nlst", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert job_id == "omas-idc-nlst-20260102-030405"
    assert len(default_job_id("X" * 100)) <= 63
    assert default_job_id("1 weird/name").startswith("omas-1-weird-name-")


def test_render_command_prints_valid_json(tmp_path: Path) -> None:
    arguments = [
        "batch",
        "render",
        "--config",
        "nlst",
        "--tasks",
        "8",
        "--image",
        IMAGE,
        "--bucket",
        "omas-release",
        "--parallelism",
        "4",
        "--no-spot",
        "--hmac-key-id-secret",
        SECRETS["hmac_key_id_secret"],
        "--hmac-secret-secret",
        SECRETS["hmac_secret_secret"],
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    message = batch_v1.Job.from_json(result.stdout, ignore_unknown_fields=False)
    assert message.task_groups[0].task_count == 8
    assert message.task_groups[0].parallelism == 4
    output = tmp_path / "job.json"
    result = CliRunner().invoke(app, [*arguments, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text())["taskGroups"][0]["taskCount"] == 8
    result = CliRunner().invoke(app, [*arguments, "--gpu-type", "nvidia-tesla-t5"])
    assert result.exit_code == CONFIGURATION_EXIT_CODE
    assert "Did you mean 'nvidia-tesla-t4'" in " ".join(result.output.split())  # rich wraps


def test_render_and_submit_take_the_same_job_options() -> None:
    from typer.main import get_command

    group = get_command(app).commands["batch"]  # type: ignore[attr-defined]
    render, submit = group.commands["render"], group.commands["submit"]
    render_options = {p.name for p in render.params} - {"output", "region"}
    submit_options = {p.name for p in submit.params} - {"project", "region", "job_id"}
    assert render_options == submit_options
    assert {"config", "tasks", "image", "bucket", "gpu_type", "hmac_secret_secret"} <= (
        render_options
    )
    arguments = ["batch", "submit", "--config", "nlst", "--tasks", "8", "--image", IMAGE]
    arguments += ["--bucket", "omas-release", "--project", "p", "--region", "r"]
    result = CliRunner().invoke(app, [*arguments, "--gpu-type", "nvidia-tesla-t5"])
    assert result.exit_code == CONFIGURATION_EXIT_CODE
    assert "Did you mean 'nvidia-tesla-t4'" in " ".join(result.output.split())  # rich wraps


class RecordingClient:
    """Stands in for BatchServiceClient: records the request, answers like the service."""

    def __init__(self) -> None:
        self.requests: list[batch_v1.CreateJobRequest] = []

    def create_job(self, request: batch_v1.CreateJobRequest) -> batch_v1.Job:
        self.requests.append(request)
        return batch_v1.Job(name=f"{request.parent}/jobs/{request.job_id}")


def test_submit_sends_the_rendered_job() -> None:
    job = render_job(NLST, options(region="us-central1"))
    client = RecordingClient()
    name = submit_job(
        job, project="my-project", region="us-central1", job_id="nlst-1", client=client
    )
    assert name == "projects/my-project/locations/us-central1/jobs/nlst-1"
    (request,) = client.requests
    assert request.parent == "projects/my-project/locations/us-central1"
    assert json.loads(batch_v1.Job.to_json(request.job)) == json.loads(
        batch_v1.Job.to_json(batch_v1.Job.from_json(json.dumps(job)))
    )
    with pytest.raises(ConfigurationError, match="job ID"):
        submit_job(job, project="p", region="r", job_id="Nlst_1", client=client)


@pytest.mark.network
def test_submit_creates_and_deletes_a_job_in_cloud_batch() -> None:
    project = os.environ.get("OMAS_IDC_BATCH_PROJECT")
    region = os.environ.get("OMAS_IDC_BATCH_REGION")
    bucket = os.environ.get("OMAS_IDC_BATCH_BUCKET")
    image = os.environ.get("OMAS_IDC_BATCH_IMAGE")
    if not (project and region and bucket and image):
        pytest.skip("set OMAS_IDC_BATCH_PROJECT/_REGION/_BUCKET/_IMAGE to submit a real job")
    job = render_job(
        NLST,
        options(
            image=image,
            bucket=bucket,
            tasks=1,
            region=region,
            mount_bucket=True,
            hmac_key_id_secret=None,
            hmac_secret_secret=None,
        ),
    )
    client = batch_v1.BatchServiceClient()
    name = submit_job(
        job, project=project, region=region, job_id=default_job_id("omas-idc-test"), client=client
    )
    try:
        created = client.get_job(name=name)
        assert created.task_groups[0].task_count == 1
    finally:
        client.delete_job(name=name)
