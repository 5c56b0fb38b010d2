"""A loopback S3 server (moto_server) holding phantom series laid out as in IDC's bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.series_ref import SeriesRef
from omas_idc.testing.s3server import free_port, make_public_bucket, moto_server

BUCKET = "idc-open-data"


@pytest.fixture
def closed_endpoint() -> str:
    """A loopback endpoint on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto_server this session starts and stops."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3(s3_endpoint: str) -> Any:
    """A boto3 client (dummy credentials) with IDC's bucket, publicly readable."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    make_public_bucket(client, BUCKET)
    return client


@dataclass(frozen=True)
class BucketSeries:
    """A phantom series uploaded as ``<crdc_series_uuid>/<instance uuid>.dcm``."""

    ref: SeriesRef
    objects: dict[str, bytes]


@pytest.fixture(scope="session")
def upload_phantom(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``upload_phantom(seed, damage=None)``: upload a phantom series; return its SeriesRef.

    ``damage="missing"`` leaves one object out of the bucket; ``damage="truncated"`` uploads
    one object cut in half. The SeriesRef always states the full instance count.
    """

    def upload(seed: int, damage: str | None = None, slices: int = 5) -> BucketSeries:
        folder = tmp_path_factory.mktemp(f"phantom{seed}")
        phantom = make_phantom(folder, PhantomOptions(seed=seed, shape=(slices, 12, 12)))
        crdc = str(uuid.uuid5(uuid.NAMESPACE_OID, phantom.series_instance_uid))
        objects = {}
        for i, file in enumerate(sorted(phantom.files)):
            name = f"{uuid.uuid5(uuid.NAMESPACE_OID, f'{crdc}/{i}')}.dcm"
            objects[name] = Path(file).read_bytes()
        names = sorted(objects)
        if damage == "truncated":
            objects[names[0]] = objects[names[0]][: len(objects[names[0]]) // 2]
        for name in names:
            if damage == "missing" and name == names[-1]:
                continue
            s3.put_object(Bucket=BUCKET, Key=f"{crdc}/{name}", Body=objects[name])
        ref = SeriesRef(
            series_instance_uid=phantom.series_instance_uid,
            study_instance_uid=phantom.study_instance_uid,
            patient_id=f"PHANTOM-{seed}",
            collection_id="phantom_collection",
            modality="CT",
            crdc_series_uuid=crdc,
            instance_count=len(names),
            size_bytes=sum(len(b) for b in objects.values()),
            aws_bucket=BUCKET,
            idc_version=25,
        )
        return BucketSeries(ref, objects)

    return upload
