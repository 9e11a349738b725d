"""A real S3 endpoint for tests: moto's threaded server on 127.0.0.1, started once per process.

Use it with ``from tests.s3fixture import s3_bucket  # noqa: F401`` and a test argument
``s3_bucket``: an ``s3://bucket`` URI of a fresh, empty bucket, with the AWS/DNA environment
pointed at the server for that test only (restored afterwards).
"""

from __future__ import annotations

import atexit
import itertools
import threading

import pytest

_lock = threading.Lock()
_endpoint: str | None = None
_counter = itertools.count()


def moto_endpoint() -> str:
    """The URL of the shared moto server (started on first use, stopped at exit)."""
    global _endpoint
    with _lock:
        if _endpoint is None:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            atexit.register(server.stop)
            host, port = server.get_host_and_port()
            _endpoint = f"http://{host}:{port}"
        return _endpoint


def point_env_at_moto(monkeypatch: pytest.MonkeyPatch) -> str:
    """Set the AWS/DNA environment for the moto server and drop storage caches; the endpoint."""
    from dna import storage

    endpoint = moto_endpoint()
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("DNA_S3_ENDPOINT", endpoint)
    storage.configure_s3(None)
    return endpoint


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch):
    """``s3://<fresh bucket>`` on the moto server, with the environment pointed at it."""
    import boto3

    from dna import storage

    endpoint = point_env_at_moto(monkeypatch)
    bucket = f"dna-test-{next(_counter)}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    yield f"s3://{bucket}"
    storage.configure_s3(None)
