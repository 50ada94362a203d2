"""Fixtures shared by every test module: isolated folders, demo-like connections, an S3 server on loopback."""

import socket
import subprocess
import sys
import time
import uuid

import pytest


@pytest.fixture(autouse=True)
def impex_root(tmp_path, settings):
    """Give every test its own IMPEX_ROOT, MEDIA_ROOT and IMPEX_CACHE_DIR."""
    settings.IMPEX_ROOT = tmp_path / "impex"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPEX_CACHE_DIR = tmp_path / "cache"
    return settings.IMPEX_ROOT


@pytest.fixture
def builtin_installed(transactional_db):
    """The built-in descriptors and groups, for tests on a transactional database.

    A transactional test's database is flushed afterwards, taking migration 0002's rows with it; serialized
    rollback cannot restore them in a full run (another flush re-creates the content types first).
    """
    from django.apps import apps

    from impex.builtin import install_builtin

    install_builtin(apps)


@pytest.fixture
def bspk_connection(db):
    """A BSPK connection for the company Acme."""
    from impex.models import Connection

    return Connection.objects.create(code="acme-pos", name="Acme POS", convention="bspk", company_name="Acme")


@pytest.fixture
def kore_connection(db):
    """A Kore connection with integration id INT1."""
    from impex.models import Connection

    return Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")


@pytest.fixture(scope="session")
def s3_server():
    """Run moto's S3 server on loopback for the session and return its endpoint URL.

    A process of its own, not ThreadedMotoServer: the server keeps what it receives in memory, which
    tracemalloc would count against the client in the same process.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    """A boto3 client of the loopback S3 server, for tests to look at S3 directly."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_bucket(s3_server, s3_client, settings):
    """Point the S3 settings at the loopback server and return a new, empty bucket's name."""
    settings.AWS_S3_ENDPOINT_URL = s3_server
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    bucket = f"impex-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    return bucket
