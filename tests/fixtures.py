"""Fixtures shared by every test module: isolated folders, demo-like connections, S3, SFTP and FTP servers on
loopback."""

import json
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def impex_root(tmp_path, settings):
    """Give every test its own IMPEX_ROOT, MEDIA_ROOT and IMPEX_CACHE_DIR."""
    settings.IMPEX_ROOT = tmp_path / "impex"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPEX_CACHE_DIR = tmp_path / "cache"
    # Tests name folders of their own beside IMPEX_ROOT (inboxes, destinations), which the hub refuses unless their
    # root is listed (impex.locations); the tests of that rule list tighter roots.
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(tmp_path)]
    # The tests' receivers and servers listen on loopback, which the hub refuses unless listed (impex.outbound).
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["127.0.0.1", "localhost", "::1"]
    # The SFTP servers of the tests listen on loopback: the hub logs in only to listed hosts (SFTP_PASSWORD: {}).
    settings.SFTP_HOSTS = {"127.0.0.1": {}}
    return settings.IMPEX_ROOT


@pytest.fixture
def nothing_listed(settings):
    """List no host in IMPEX_ALLOWED_HOSTS_OUTBOUND: the hub may call public addresses only, as by default."""
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []


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


def _stop(server: subprocess.Popen) -> None:
    """Stop a server process a fixture started: politely, then for good after 10 s."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def free_port() -> int:
    """Return a TCP port free on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server_process(command: list[str], port: int, *, name: str, timeout: float = 30, **popen):
    """Run a server process for the block, once it accepts connections on the loopback port; stop it after."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start on port {port}") from None
                time.sleep(0.1)
        yield
    finally:
        _stop(server)


@pytest.fixture(scope="session")
def s3_server():
    """Run moto's S3 server on loopback for the session and return its endpoint URL.

    A process of its own, not ThreadedMotoServer: the server keeps what it receives in memory, which
    tracemalloc would count against the client in the same process.
    """
    port = free_port()
    with server_process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, name="moto's S3 server"
    ):
        yield f"http://127.0.0.1:{port}"


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


@dataclass(frozen=True)
class SFTPServer:
    """The loopback SFTP server: where it listens, who may log in, and the folder it serves as /."""

    host: str
    port: int
    user: str
    password: str
    root: Path  # on local disk: what a session sees as /
    host_key_line: str  # the server's public host key, as a known_hosts line for host:port
    client_key_file: Path  # a private key that also lets the user in (for SFTP_KEY_FILE)


@dataclass(frozen=True)
class SFTPLocation:
    """A fresh, empty folder on the loopback SFTP server, and what a client needs to reach it."""

    url: str  # sftp://user@127.0.0.1:port/folder, a storage location (no trailing slash)
    path: Path  # the same folder on local disk: put files there to have them on the server
    known_hosts: Path  # a known_hosts file holding the server's host key
    env: dict[str, str]  # SFTP_* environment variables for a subprocess (e.g. `manage.py impex_scan`)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory):
    """Run a real SFTP server (asyncssh, tests/sftp_server.py) on loopback for the session; return an SFTPServer.

    A process of its own, like the S3 server: a test that forks or kills processes does not disturb it, and the
    hub's subprocesses reach it like any other server. Every session is chrooted to SFTPServer.root. Most tests
    want `sftp_location` instead: a fresh folder there with the settings pointing at the server.
    """
    import asyncssh

    base = tmp_path_factory.mktemp("sftp")
    root = base / "root"
    root.mkdir()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(base / "host_key")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(base / "client_key")
    client_key.write_public_key(base / "client_key.pub")
    user, password = "tester", uuid.uuid4().hex
    with open(base / "server.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.sftp_server",
                "--root",
                str(root),
                "--host-key",
                str(base / "host_key"),
                "--user",
                user,
                "--password",
                password,
                "--client-key",
                str(base / "client_key.pub"),
            ],
            stdin=subprocess.PIPE,  # the server stops when this closes, even if the session is killed
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=Path(__file__).resolve().parent.parent,
        )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        line = server.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the SFTP server did not start: see {base / 'server.log'}")
        port = int(line.split()[1])
        key_text = host_key.export_public_key("openssh").decode().split()
        yield SFTPServer(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            root=root,
            host_key_line=f"[127.0.0.1]:{port} {key_text[0]} {key_text[1]}\n",
            client_key_file=base / "client_key",
        )
    finally:
        server.stdin.close()
        _stop(server)
        server.stdout.close()


@pytest.fixture
def sftp_location(sftp_server, settings, tmp_path):
    """Point the SFTP settings at the loopback server (password login, its host key known) and give a fresh folder.

    The host key check stays on: SFTP_KNOWN_HOST_FILE is a file holding the server's key and SFTP_ALLOW_UNKNOWN_HOSTS
    is off. Use it as

        storage = storage_for(sftp_location.url)          # or a connection's inbox = f"{sftp_location.url}/inbox"
        (sftp_location.path / "a.csv").write_bytes(...)  # the file is now on the server, at <url>/a.csv

    and, for a subprocess: `subprocess.run([...], env={**os.environ, **sftp_location.env})`.
    """
    known_hosts = tmp_path / "sftp_known_hosts"
    known_hosts.write_text(sftp_server.host_key_line)
    settings.SFTP_PASSWORD = sftp_server.password
    settings.SFTP_KEY_FILE = None
    settings.SFTP_KNOWN_HOST_FILE = str(known_hosts)
    settings.SFTP_ALLOW_UNKNOWN_HOSTS = False
    folder = f"t-{uuid.uuid4().hex[:12]}"
    (sftp_server.root / folder).mkdir()
    return SFTPLocation(
        url=f"sftp://{sftp_server.user}@{sftp_server.host}:{sftp_server.port}/{folder}",
        path=sftp_server.root / folder,
        known_hosts=known_hosts,
        env={
            "SFTP_PASSWORD": sftp_server.password,
            "SFTP_KNOWN_HOST_FILE": str(known_hosts),
            "SFTP_ALLOW_UNKNOWN_HOSTS": "",
            "SFTP_KEY_FILE": "",
            "SFTP_HOSTS": json.dumps(settings.SFTP_HOSTS),
            "IMPEX_ALLOWED_HOSTS_OUTBOUND": ",".join(settings.IMPEX_ALLOWED_HOSTS_OUTBOUND),
        },
    )


@dataclass(frozen=True)
class SSHHost:
    """An SSH server on loopback (ssh_on_loopback): its port, its host key as a known_hosts line, its connections."""

    port: int
    known_hosts_line: str
    transports: list  # the paramiko transports of the connections made so far


@contextmanager
def ssh_on_loopback(interface: Callable[[], object], *, prepare: Callable[[object], None] | None = None):
    """Serve SSH on a loopback port with a new host key, each connection answered by interface() (a paramiko
    ServerInterface) after prepare(transport) if given (e.g. an SFTP subsystem); yield an SSHHost."""
    import paramiko

    host_key = paramiko.RSAKey.generate(2048)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    transports: list = []

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            transport = paramiko.Transport(sock)
            transports.append(transport)
            transport.add_server_key(host_key)
            if prepare is not None:
                prepare(transport)
            try:
                transport.start_server(server=interface())
            except (paramiko.SSHException, EOFError):
                transport.close()  # the client walked away (e.g. an unknown host key)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield SSHHost(port, f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n", transports)
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), which close() alone does not
        listener.close()
        for transport in transports:
            transport.close()
        thread.join(timeout=5)


@pytest.fixture
def webhook_receiver():
    """A webhook receiver on loopback (orders/tests/receiver.py): records POSTs and answers as scripted."""
    from orders.tests.receiver import start_receiver

    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(client, kore_connection):
    """The HTTP API called as an integration does, with a token of the kore connection (syncapp/tests/api_helpers)."""
    from impex.services.tokens import api_token_issue
    from syncapp.tests.api_helpers import Api

    return Api(client, api_token_issue(connection=kore_connection, by="test"))


@dataclass(frozen=True)
class FTPLocation:
    """A fresh, empty folder on a loopback FTP (or FTPS) server, and what a client needs to reach it."""

    url: str  # ftp://user@127.0.0.1:port/folder (ftps://... on the TLS server), a storage location
    path: Path  # the same folder on local disk: put files there to have them on the server
    server: object  # the tests.ftp_server.FTPServerThread serving it (root, password, pasv_address, cut_after)


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and localhost and its key; return their paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impex test FTPS")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _ftp_server(tmp_path_factory, *, tls: bool):
    from tests.ftp_server import FTPServerThread

    base = tmp_path_factory.mktemp("ftps" if tls else "ftp")
    root = base / "root"
    root.mkdir()
    server = FTPServerThread(
        root=root, user="tester", password=uuid.uuid4().hex, tls=_self_signed_certificate(base) if tls else None
    )
    return server.start()


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory):
    """Run a real FTP server (pyftpdlib, tests/ftp_server.py) on loopback in a thread for the session."""
    server = _ftp_server(tmp_path_factory, tls=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory):
    """Run a real FTPS server (explicit TLS, a self-signed certificate made now) on loopback for the session."""
    server = _ftp_server(tmp_path_factory, tls=True)
    yield server
    server.stop()


def _ftp_location(server, settings, *, scheme: str) -> FTPLocation:
    settings.FTP_HOSTS = {"127.0.0.1": {}}
    settings.FTP_PASSWORD = server.password
    settings.FTPS_CA_FILE = str(server.root.parent / "cert.pem") if scheme == "ftps" else None
    server.pasv_address = None
    server.mlsd = True
    server.cuts.clear()
    server.grows.clear()
    server.stalls.clear()
    server.release()
    folder = f"t-{uuid.uuid4().hex[:12]}"
    (server.root / folder).mkdir()
    return FTPLocation(
        url=f"{scheme}://{server.user}@{server.host}:{server.port}/{folder}", path=server.root / folder, server=server
    )


@pytest.fixture
def ftp_location(ftp_server, settings):
    """Point the FTP settings at the loopback FTP server (listed in FTP_HOSTS, FTP_PASSWORD) and give a fresh folder:

    storage = storage_for(ftp_location.url)          # or a connection's inbox = f"{ftp_location.url}/inbox"
    (ftp_location.path / "a.csv").write_bytes(...)  # the file is now on the server, at <url>/a.csv
    """
    return _ftp_location(ftp_server, settings, scheme="ftp")


@pytest.fixture
def ftps_location(ftps_server, settings):
    """As ftp_location, on the FTPS server (explicit TLS); FTPS_CA_FILE holds its self-signed certificate."""
    return _ftp_location(ftps_server, settings, scheme="ftps")
