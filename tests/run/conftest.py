"""Fixtures of the run tests: a loopback S3 server with IDC's bucket and an output bucket,
phantom series uploaded in IDC's layout, and a small threshold model in nnU-Net's format."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.series_ref import SeriesRef, write_selection
from omas_idc.testing.s3server import make_public_bucket, moto_server

SOURCE_BUCKET = "idc-open-data"
OUTPUT_BUCKET = "omas-release"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto_server on loopback for this session; credentials for s5cmd in the environment."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    try:
        with moto_server() as url:
            yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    make_public_bucket(client, SOURCE_BUCKET)
    client.create_bucket(Bucket=OUTPUT_BUCKET)
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
def idc_upload() -> tuple[Any, Any, dict[str, Any]]:
    """(upload_files, upload_series, phantom grid) for tests that build a bucket."""
    return upload_files, upload_series, PHANTOM_GRID


def run_cli(
    args: list[str], endpoint: str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``omas-idc ARGS [--endpoint-url ENDPOINT]`` in a new process (its messages unwrapped:
    a wide terminal)."""
    command = [sys.executable, "-m", "omas_idc.cli", *args]
    if endpoint is not None:
        command += ["--endpoint-url", endpoint]
    env = {**os.environ, "COLUMNS": "1000", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env, **kwargs)


def run_args(selection: Path, model: Path, out: str | Path, work: Path) -> list[str]:
    """The arguments of ``omas-idc run`` on a saved selection with a model folder, on CPU."""
    return [
        "run",
        "--selection",
        str(selection),
        "--model",
        str(model),
        "--out",
        str(out),
        "--work",
        str(work),
        "--device",
        "cpu",
        "--timestamp",
        "2026-05-01T00:00:00",
    ]


@pytest.fixture(scope="session")
def omas() -> SimpleNamespace:
    """Helpers of the tests that run ``omas-idc`` in a new process: ``run`` (:func:`run_cli`),
    ``args`` (:func:`run_args`) and ``tree`` (:func:`tree`)."""
    return SimpleNamespace(run=run_cli, args=run_args, tree=tree)


@pytest.fixture(scope="module")
def one_series(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[SeriesRef, Path]:
    """One good phantom series in the loopback IDC bucket, and a saved selection of it."""
    root = tmp_path_factory.mktemp("one-series")
    ref = upload_series(s3_client, root / "phantom", 41)
    path = root / "selection.parquet"
    write_selection([ref], path)
    return ref, path


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``mount(folder, size="1m", read_only=False)``: a small tmpfs at ``folder``, unmounted
    after the test; the test is skipped, with the reason, where this machine cannot mount."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str = "1m", read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(
                "a small or read-only output folder needs a tmpfs mount, which this machine "
                f"refuses (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}"
            )
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file (with its size and mtime) and folder below ``root``, except below ``skip``.

    A folder counts by its name only: a probe file created and removed in it changes its
    mtime, not its content."""
    found = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        stat = path.lstat()
        is_folder = path.is_dir() and not path.is_symlink()
        found[str(path.relative_to(root))] = (
            (0, 0) if is_folder else (stat.st_size, stat.st_mtime_ns)
        )
    return found
