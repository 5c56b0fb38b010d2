"""Fixtures of the run tests: a loopback S3 server with IDC's bucket and an output bucket,
phantom series uploaded in IDC's layout, and a small threshold model in nnU-Net's format."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omas_idc.series_ref import SeriesRef
from omas_idc.testing.phantom import PhantomOptions, make_phantom

SOURCE_BUCKET = "idc-open-data"
OUTPUT_BUCKET = "omas-release"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto_server on loopback for this session; credentials for s5cmd in the environment."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """boto3 client with IDC's public-read bucket and a private output bucket."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=SOURCE_BUCKET)
    client.create_bucket(Bucket=OUTPUT_BUCKET)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{SOURCE_BUCKET}", f"arn:aws:s3:::{SOURCE_BUCKET}/*"],
            }
        ],
    }
    client.put_bucket_policy(Bucket=SOURCE_BUCKET, Policy=json.dumps(policy))
    return client


PHANTOM_GRID = {"shape": (10, 28, 32), "pixel_spacing": (12.0, 12.0), "slice_spacing": 20.0}


def upload_series(client: Any, folder: Path, seed: int, **options: Any) -> SeriesRef:
    """Write a phantom series and upload it as ``<crdc_series_uuid>/<uuid>.dcm``."""
    phantom = make_phantom(folder, PhantomOptions(seed=seed, **{**PHANTOM_GRID, **options}))
    return upload_files(
        client, phantom.files, seed, phantom.series_instance_uid, phantom.study_instance_uid
    )


def upload_files(
    client: Any, files: Any, seed: int, series_uid: str, study_uid: str, modality: str = "CT"
) -> SeriesRef:
    crdc = str(uuid.uuid5(uuid.NAMESPACE_OID, series_uid))
    size = 0
    for i, path in enumerate(sorted(files)):
        body = Path(path).read_bytes()
        size += len(body)
        key = f"{crdc}/{uuid.uuid5(uuid.NAMESPACE_OID, f'{crdc}/{i}')}.dcm"
        client.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
    return SeriesRef(
        series_instance_uid=series_uid,
        study_instance_uid=study_uid,
        patient_id=f"PHANTOM-{seed}",
        collection_id="phantom_collection",
        modality=modality,
        crdc_series_uuid=crdc,
        instance_count=len(list(files)),
        size_bytes=size,
        aws_bucket=SOURCE_BUCKET,
        idc_version=25,
    )


@pytest.fixture(scope="session")
def threshold_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An nnU-Net folder whose network thresholds HU: soft tissue -> liver, bone -> vertebra."""
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    return make_model_folder(
        tmp_path_factory.mktemp("model"),
        SyntheticModel(
            labels=("liver", "vertebrae_L1"),
            weights="threshold",
            thresholds_hu=(-200.0, 250.0),
            spacing=(20.0, 12.0, 12.0),
            patch_size=(8, 16, 16),
            folds=("all",),
        ),
    )


@pytest.fixture(scope="session")
def idc_upload() -> tuple[Any, Any, dict[str, Any]]:
    """(upload_files, upload_series, phantom grid) for tests that build a bucket."""
    return upload_files, upload_series, PHANTOM_GRID
