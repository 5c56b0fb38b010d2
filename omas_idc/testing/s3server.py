"""A loopback S3 server (moto_server) for tests and benchmarks, and IDC-like public buckets.

Only 127.0.0.1 is used. A bucket is made publicly readable with a bucket policy, as IDC's are
(moto answers anonymous GETs with 403 until a bucket has one).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["free_port", "loopback_client", "make_public_bucket", "moto_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(timeout_s: float = 30.0) -> Iterator[str]:
    """Start ``moto_server`` on a free loopback port; yield its URL; stop it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError as err:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "moto_server did not start (is moto[server] installed?)"
                    ) from err
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def loopback_client(endpoint: str) -> Any:
    """A boto3 S3 client for the loopback server at ``endpoint`` (placeholder credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    )


def make_public_bucket(client: Any, name: str) -> None:
    """Create bucket ``name`` with a policy that lets anyone list and read it (as IDC's)."""
    client.create_bucket(Bucket=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
            }
        ],
    }
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
