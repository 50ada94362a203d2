"""The storage module: locations mapped to storages, and the same file operations on local disk and on S3."""

import hashlib
import io
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paramiko
import pytest
from boto3.exceptions import S3UploadFailedError
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage
from storages.backends.sftpstorage import SFTPStorage

from impex.exceptions import ConfigurationError
from impex.locations import Location, local_path, parse_location
from impex.storage import (
    BACKENDS,
    FTPBackend,
    FTPSBackend,
    LocalBackend,
    S3Backend,
    SFTPBackend,
    StoredFile,
    delete_file,
    file_exists,
    file_size,
    hub_storage,
    list_files,
    local_copy,
    move_file,
    open_file,
    replace_text,
    save_file,
    storage_for,
)
from tests.fixtures import ssh_on_loopback

BIG_BYTES = 20 * 1024 * 1024


@pytest.fixture
def s3_keys(s3_client):
    """Return a function listing every key of a bucket, straight from S3."""

    def keys(bucket: str) -> list[str]:
        return sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))

    return keys


def read(storage, name: str) -> bytes:
    """Return a stored file's content."""
    with open_file(storage, name) as stream:
        return stream.read()


def sha256_of(stream) -> str:
    """Return the SHA-256 of a binary stream, read a chunk at a time."""
    digest = hashlib.sha256()
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """A storage on local disk, then one on the loopback S3 server (a prefix inside a fresh bucket)."""
    if request.param == "local":
        return storage_for(str(tmp_path / "store"))
    return storage_for(f"s3://{request.getfixturevalue('s3_bucket')}/hub/files")


@pytest.fixture
def big_file(tmp_path):
    """A 20 MB local file of random bytes and its SHA-256."""
    path = tmp_path / "big.csv"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(BIG_BYTES // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            out.write(chunk)
    return path, digest.hexdigest()


# -- locations ------------------------------------------------------------------------------------


def test_an_absolute_folder_or_file_url_is_a_local_storage(tmp_path):
    folder = tmp_path / "inbox"

    storage = storage_for(str(folder))

    assert type(storage) is LocalBackend
    assert type(storage.storage) is FileSystemStorage
    assert storage.storage.location == str(folder)
    by_url = storage_for(f"file://{folder}/")
    assert type(by_url.storage) is FileSystemStorage
    assert by_url.storage.location == str(folder)
    assert storage_for(f"file://localhost{tmp_path}/in%20box").storage.location == f"{tmp_path}/in box"


@pytest.mark.parametrize(
    ("location", "parsed"),
    [
        ("/srv/in box", Location(scheme="file", shown="/srv/in box", path="/srv/in box")),
        (
            "FILE://localhost/srv/in%20box",
            Location("file", "FILE://localhost/srv/in%20box", "localhost", "localhost", path="/srv/in box"),
        ),
        (
            "s3://acme-files/kore/in/",
            Location("s3", "s3://acme-files/kore/in/", "acme-files", "acme-files", path="/kore/in/"),
        ),
        (
            "sftp://de%40ploy:pw@Files.Example.com:2222/srv/a%20b",
            Location(
                "sftp",
                "sftp://de%40ploy:***@Files.Example.com:2222/srv/a%20b",
                "de%40ploy:pw@Files.Example.com:2222",
                "files.example.com",
                2222,
                "de@ploy",
                has_password=True,
                path="/srv/a b",
            ),
        ),
    ],
)
def test_one_parser_takes_every_location_apart(location, parsed):
    assert parse_location(location) == parsed
    assert local_path(location) == (parsed.path if parsed.scheme == "file" else None)


def test_each_scheme_has_one_backend_registered_by_its_name():
    assert BACKENDS == {
        "file": LocalBackend,
        "s3": S3Backend,
        "sftp": SFTPBackend,
        "ftp": FTPBackend,
        "ftps": FTPSBackend,
    }


def test_local_storages_never_import_boto3_or_paramiko(tmp_path):
    # Every command's start-up would pay for them (a quarter of a second): only an S3 or SFTP location loads them.
    script = (
        "import django, sys; django.setup()\n"
        "from impex.storage import hub_storage, list_files, save_file, storage_for\n"
        "import impex.runner, impex.services.inbox\n"
        "save_file(storage_for(sys.argv[1]), 'a.csv', sys.argv[2]); list(list_files(hub_storage()))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'paramiko')))\n"
        "storage_for('s3://acme-files/in')\n"
        "print('boto3' in sys.modules)\n"
    )
    (tmp_path / "a.csv").write_bytes(b"x")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "IMPEX_ALLOWED_LOCAL_ROOTS": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out"), str(tmp_path / "a.csv")],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
    assert (tmp_path / "out" / "a.csv").read_bytes() == b"x"


def test_an_s3_url_is_an_s3_storage_on_the_configured_endpoint(settings):
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9000"
    settings.AWS_S3_REGION_NAME = "eu-west-1"

    storage = storage_for("s3://acme-files/kore/inbox/").storage

    assert isinstance(storage, S3Storage)
    assert storage.bucket_name == "acme-files"
    assert storage.location == "kore/inbox"
    assert storage.endpoint_url == "http://127.0.0.1:9000"
    assert storage.region_name == "eu-west-1"
    assert storage.addressing_style == "path"
    assert storage.file_overwrite is False
    assert storage_for("s3://acme-files").storage.location == ""


def test_an_s3_url_without_endpoint_uses_aws_addressing(settings):
    settings.AWS_S3_ENDPOINT_URL = None

    storage = storage_for("s3://acme-files/in").storage

    assert storage.endpoint_url is None
    assert storage.addressing_style is None


def test_an_sftp_url_is_an_sftp_storage_with_credentials_and_known_hosts_from_settings(settings):
    settings.SFTP_KEY_FILE = "/etc/impex/id_ed25519"
    settings.SFTP_PASSWORD = None
    settings.SFTP_KNOWN_HOST_FILE = "/etc/impex/known_hosts"
    settings.SFTP_HOSTS = {"files.example.com": {}}  # the defaults go to listed hosts only

    storage = storage_for("sftp://deploy@files.example.com:2222/srv/kore/inbox").storage

    assert isinstance(storage, SFTPStorage)
    assert storage.host == "files.example.com"
    assert storage.root_path == "/srv/kore/inbox"
    assert storage.params == {
        "port": 2222,
        "username": "deploy",
        "key_filename": "/etc/impex/id_ed25519",
        "timeout": 30,
    }
    assert storage.known_host_file == "/etc/impex/known_hosts"
    assert storage.allow_unknown_hosts is False
    default_port = storage_for("sftp://files.example.com/in").storage
    assert default_port.params["port"] == 22
    assert "username" not in default_port.params


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("", "empty storage location: use an absolute folder path, file:///path, s3://bucket/prefix, sftp://"),
        ("var/inbox", "storage location 'var/inbox' is not an absolute folder path: use an absolute folder path"),
        ("smb://files.example.com/in", "unknown storage location 'smb://files.example.com/in': use an absolute"),
        ("file://otherhost/in", "storage location 'file://otherhost/in' must be file:///absolute/path"),
        ("s3:///in", "storage location 's3:///in' does not name a valid S3 bucket"),
        ("s3://Acme_Files/in", "storage location 's3://Acme_Files/in' does not name a valid S3 bucket"),
        ("s3://key:hunter2@acme-files/in", "storage location 's3://key:***@acme-files/in' does not name a valid S3"),
        (
            "s3://acme-files/in/../out",
            "storage location 's3://acme-files/in/../out' has a prefix with '..', '.' or empty",
        ),
        ("s3://acme-files/in?versionId=3", "may not have a ?query or #fragment"),
        ("sftp:///srv/in", "storage location 'sftp:///srv/in' has no host: use sftp://[user@]host[:port]/path"),
        ("sftp://files.example.com:99999/in", "storage location 'sftp://files.example.com:99999/in' is not a valid"),
        (
            "sftp://deploy:hunter2@files.example.com/in",
            "storage location 'sftp://deploy:***@files.example.com/in' holds a password: set SFTP_PASSWORD or",
        ),
        (
            "sftp://deploy:hunter2@files.example.com:0x/in",
            "storage location 'sftp://deploy:***@files.example.com:0x/in'",
        ),
    ],
)
def test_a_location_that_cannot_work_is_refused_with_its_reason(location, message):
    with pytest.raises(ConfigurationError) as refused:
        storage_for(location)

    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_hub_keeps_its_files_under_impex_root_unless_impex_storage_says_otherwise(settings, impex_root):
    local = hub_storage().storage

    assert type(local) is FileSystemStorage
    assert local.location == str(impex_root)

    settings.IMPEX_STORAGE = "s3://acme-hub/impex"
    remote = hub_storage().storage

    assert isinstance(remote, S3Storage)
    assert (remote.bucket_name, remote.location) == ("acme-hub", "impex")


# -- file operations, on local disk and on S3 -----------------------------------------------------


def test_save_open_exists_size_and_delete_round_trip(store, tmp_path):
    source = tmp_path / "customers.csv"
    source.write_bytes(b"id;name\n1;Ann\n")

    from_path = save_file(store, "kore/CUSTOMERS.csv", source)
    from_stream = save_file(store, "kore/deep/orders.csv", io.BytesIO(b"id\n7\n"))

    assert (from_path, from_stream) == ("kore/CUSTOMERS.csv", "kore/deep/orders.csv")
    assert read(store, "kore/CUSTOMERS.csv") == b"id;name\n1;Ann\n"
    assert read(store, "kore/deep/orders.csv") == b"id\n7\n"
    assert file_exists(store, "kore/CUSTOMERS.csv")
    assert not file_exists(store, "kore")  # a folder is not a file
    assert file_size(store, "kore/CUSTOMERS.csv") == 14
    assert source.read_bytes() == b"id;name\n1;Ann\n"  # saving copies

    delete_file(store, "kore/CUSTOMERS.csv")
    delete_file(store, "kore/CUSTOMERS.csv")  # already gone: no error

    assert not file_exists(store, "kore/CUSTOMERS.csv")
    assert [f.name for f in list_files(store)] == ["kore/deep/orders.csv"]
    with pytest.raises(FileNotFoundError):
        open_file(store, "kore/CUSTOMERS.csv")
    with pytest.raises(FileNotFoundError):
        file_size(store, "kore/CUSTOMERS.csv")


def test_saving_under_a_taken_name_keeps_both_files(store):
    first = save_file(store, "archive/a.csv", io.BytesIO(b"first"))

    second = save_file(store, "archive/a.csv", io.BytesIO(b"second"))

    assert first == "archive/a.csv"
    assert second != first
    assert second.startswith("archive/a_") and second.endswith(".csv")
    assert read(store, first) == b"first"
    assert read(store, second) == b"second"


def test_a_file_appears_under_its_name_only_once_complete(store):
    seen_while_writing = []

    class WatchedStream(io.BytesIO):
        """A stream that looks at the storage while it is being read."""

        def read(self, size=-1):
            if self.tell() == 3:
                seen_while_writing.append(([f.name for f in list_files(store)], file_exists(store, "out/a.csv")))
            return super().read(3 if size == -1 else min(size, 3))

    name = save_file(store, "out/a.csv", WatchedStream(b"abcdefghi"))

    assert seen_while_writing == [([], False)]
    assert name == "out/a.csv"
    assert read(store, name) == b"abcdefghi"
    assert [f.name for f in list_files(store)] == ["out/a.csv"]


def test_replace_text_writes_a_text_file_that_appears_whole_and_replaces_the_old_one(store, tmp_path):
    save_file(store, "out/a.csv", io.BytesIO(b"old"))
    seen_while_writing = []

    def write(stream):
        stream.write("new ")
        seen_while_writing.append(([f.name for f in list_files(store)], read(store, "out/a.csv")))
        stream.write("caf\u00e9\n")

    replace_text(store, "out/a.csv", write, encoding="utf-8", scratch=tmp_path)

    assert seen_while_writing == [(["out/a.csv"], b"old")]
    assert read(store, "out/a.csv") == "new caf\u00e9\n".encode()
    assert [f.name for f in list_files(store)] == ["out/a.csv"]


def test_replace_text_that_fails_midway_leaves_the_old_file_and_nothing_else(store, tmp_path):
    save_file(store, "out/a.csv", io.BytesIO(b"old"))

    with pytest.raises(UnicodeEncodeError):
        replace_text(store, "out/a.csv", lambda stream: stream.write("\u20ac"), encoding="latin-1", scratch=tmp_path)

    assert read(store, "out/a.csv") == b"old"
    assert [f.name for f in list_files(store)] == ["out/a.csv"]
    if isinstance(store.storage, FileSystemStorage):
        assert sorted(os.listdir(store.storage.path("out"))) == ["a.csv"]


def test_list_files_walks_nested_folders_with_sizes_and_times(store):
    for name, content in [
        ("top.csv", b"1"),
        ("kore/a.tsv", b"22"),
        ("kore/2026/b.tsv", b"333"),
        ("kore/2026/11/c.tsv", b"4444"),
        ("korea/d.tsv", b"55555"),
        ("kore/.e.tsv.part", b"666666"),
        ("kore/.hidden/f.tsv", b"7777777"),
    ]:
        save_file(store, name, io.BytesIO(content))

    under_kore = list(list_files(store, "kore"))

    assert sorted((f.name, f.size) for f in under_kore) == [
        ("kore/2026/11/c.tsv", 4),
        ("kore/2026/b.tsv", 3),
        ("kore/a.tsv", 2),
    ]
    now = datetime.now(UTC)
    assert all(isinstance(f, StoredFile) and abs(now - f.modified) < timedelta(minutes=5) for f in under_kore)
    assert sorted(f.name for f in list_files(store)) == [
        "kore/2026/11/c.tsv",
        "kore/2026/b.tsv",
        "kore/a.tsv",
        "korea/d.tsv",
        "top.csv",
    ]
    assert [f.name for f in list_files(store, "kore/2026/11")] == ["kore/2026/11/c.tsv"]
    assert list(list_files(store, "missing")) == []
    assert list(list_files(store, "top.csv")) == []


def test_local_copy_of_a_local_file_is_the_file_itself(tmp_path):
    storage = storage_for(str(tmp_path / "store"))
    save_file(storage, "in/a.csv", io.BytesIO(b"abc"))

    with local_copy(storage, "in/a.csv") as path:
        assert path == tmp_path / "store" / "in" / "a.csv"
        assert path.read_bytes() == b"abc"

    assert path.exists()
    with pytest.raises(FileNotFoundError), local_copy(storage, "in/missing.csv"):
        pass


def test_local_copy_of_an_s3_file_is_a_download_removed_afterwards(s3_bucket, settings, s3_keys):
    storage = storage_for(f"s3://{s3_bucket}/in")
    save_file(storage, "kore/a.csv", io.BytesIO(b"abc"))

    with local_copy(storage, "kore/a.csv") as path:
        assert path.name == "a.csv"
        assert path.is_relative_to(settings.IMPEX_CACHE_DIR)
        assert path.read_bytes() == b"abc"

    assert not path.exists()
    assert list(Path(settings.IMPEX_CACHE_DIR).iterdir()) == []
    assert s3_keys(s3_bucket) == ["in/kore/a.csv"]

    with pytest.raises(RuntimeError), local_copy(storage, "kore/a.csv") as path:
        raise RuntimeError("the reader failed")
    assert not path.exists()
    with pytest.raises(FileNotFoundError), local_copy(storage, "kore/missing.csv"):
        pass
    assert list(Path(settings.IMPEX_CACHE_DIR).iterdir()) == []


def test_moving_on_the_same_local_disk_renames_the_file(tmp_path):
    inbox = storage_for(str(tmp_path / "inbox"))
    archive = storage_for(str(tmp_path / "archive"))
    save_file(inbox, "a.csv", io.BytesIO(b"abc"))
    inode = os.stat(tmp_path / "inbox" / "a.csv").st_ino

    moved = move_file(inbox, "a.csv", to=archive, to_name="2026/a.csv")

    assert moved == "2026/a.csv"
    assert os.stat(tmp_path / "archive" / "2026" / "a.csv").st_ino == inode
    assert not file_exists(inbox, "a.csv")
    assert read(archive, moved) == b"abc"


def test_moving_onto_a_taken_name_keeps_both_files(store):
    save_file(store, "archive/a.csv", io.BytesIO(b"old"))
    save_file(store, "inbox/a.csv", io.BytesIO(b"new"))

    moved = move_file(store, "inbox/a.csv", to=store, to_name="archive/a.csv")

    assert moved.startswith("archive/a_")
    assert read(store, "archive/a.csv") == b"old"
    assert read(store, moved) == b"new"
    assert not file_exists(store, "inbox/a.csv")


def test_moving_between_local_disk_and_s3_both_ways(tmp_path, s3_bucket, s3_keys):
    local = storage_for(str(tmp_path / "local"))
    remote = storage_for(f"s3://{s3_bucket}/hub")
    save_file(local, "jobs/1/a.csv", io.BytesIO(b"abc"))

    up = move_file(local, "jobs/1/a.csv", to=remote, to_name="archive/a.csv")

    assert up == "archive/a.csv"
    assert s3_keys(s3_bucket) == ["hub/archive/a.csv"]
    assert not (tmp_path / "local" / "jobs" / "1" / "a.csv").exists()

    down = move_file(remote, "archive/a.csv", to=local, to_name="error/a.csv")

    assert down == "error/a.csv"
    assert (tmp_path / "local" / "error" / "a.csv").read_bytes() == b"abc"
    assert s3_keys(s3_bucket) == []


def test_a_failed_copy_keeps_the_source(tmp_path, s3_bucket):
    local = storage_for(str(tmp_path / "local"))
    remote = storage_for(f"s3://{s3_bucket}/hub")
    no_bucket = storage_for("s3://impex-no-such-bucket/hub")
    save_file(local, "a.csv", io.BytesIO(b"abc"))
    save_file(remote, "b.csv", io.BytesIO(b"def"))
    (tmp_path / "blocked").write_bytes(b"a file where the folder should be")
    blocked = storage_for(str(tmp_path / "blocked"))

    with pytest.raises(S3UploadFailedError, match="NoSuchBucket"):
        move_file(local, "a.csv", to=no_bucket, to_name="a.csv")
    with pytest.raises(FileExistsError):
        move_file(remote, "b.csv", to=blocked, to_name="b.csv")

    assert read(local, "a.csv") == b"abc"
    assert read(remote, "b.csv") == b"def"
    assert (tmp_path / "blocked").read_bytes() == b"a file where the folder should be"


@pytest.mark.parametrize("name", ["../escape.csv", "a/../../escape.csv", "/tmp/escape.csv", "a//b.csv", "./a.csv", ""])
def test_a_name_leaving_its_storage_is_refused_and_nothing_is_written(store, tmp_path, s3_bucket, name, s3_keys):
    with pytest.raises(SuspiciousFileOperation) as refused:
        save_file(store, name, io.BytesIO(b"x"))

    assert str(refused.value) == (
        f"unsafe file name {name!r}: it must be a relative path inside its storage, without '..', '.' or empty parts"
    )
    for operation in (open_file, file_exists, file_size, delete_file):
        with pytest.raises(SuspiciousFileOperation):
            operation(store, name)
    with pytest.raises(SuspiciousFileOperation):
        move_file(store, "a.csv", to=store, to_name=name)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert s3_keys(s3_bucket) == []


# -- big files ------------------------------------------------------------------------------------


def test_a_big_file_goes_through_without_being_held_in_memory(store, big_file):
    path, digest = big_file
    file_exists(store, "big/warm-up.csv")  # boto3 loads its S3 model (~15 MB) once per client: not per file

    tracemalloc.start()
    try:
        with open(path, "rb") as stream:
            from_stream = save_file(store, "big/from-stream.csv", stream)
        from_path = save_file(store, "big/from-path.csv", path)
        with local_copy(store, from_stream) as copy, open(copy, "rb") as fh:
            copy_digest = sha256_of(fh)
        with open_file(store, from_path) as stream:
            read_digest = sha256_of(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < BIG_BYTES / 4, f"peak {peak / 1e6:.1f} MB for a {BIG_BYTES / 1e6:.0f} MB file"
    assert copy_digest == read_digest == digest
    assert file_size(store, from_stream) == file_size(store, from_path) == BIG_BYTES


def test_a_big_file_moves_between_local_disk_and_s3_without_being_held_in_memory(
    tmp_path, s3_bucket, big_file, s3_keys
):
    path, digest = big_file
    local = storage_for(str(tmp_path / "local"))
    remote = storage_for(f"s3://{s3_bucket}/hub")
    save_file(local, "big.csv", path)
    file_exists(remote, "warm-up.csv")  # boto3 loads its S3 model (~15 MB) once per client: not per file

    tracemalloc.start()
    try:
        move_file(local, "big.csv", to=remote, to_name="big.csv")
        move_file(remote, "big.csv", to=local, to_name="back.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < BIG_BYTES / 4, f"peak {peak / 1e6:.1f} MB for a {BIG_BYTES / 1e6:.0f} MB file"
    with open_file(local, "back.csv") as stream:
        assert sha256_of(stream) == digest
    assert s3_keys(s3_bucket) == []


# -- SFTP host keys -------------------------------------------------------------------------------


class RefuseEveryLogin(paramiko.ServerInterface):
    """An SSH server that shows its host key and lets nobody in."""

    def get_allowed_auths(self, username):
        return "password,publickey"

    def check_auth_password(self, username, password):
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_FAILED


@pytest.fixture(scope="module")
def ssh_server():
    """Run an SSH server on loopback (host key check only, no SFTP); return its port and host-key line."""
    with ssh_on_loopback(RefuseEveryLogin) as host:
        yield host.port, host.known_hosts_line


@pytest.fixture
def sftp_settings(settings, tmp_path):
    """A known-hosts file of our own (empty) and a password, so nothing of the machine's SSH set-up is used."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    settings.SFTP_KNOWN_HOST_FILE = str(known_hosts)
    settings.SFTP_PASSWORD = "not-accepted"
    settings.SFTP_KEY_FILE = None
    return known_hosts


def test_an_sftp_server_with_an_unknown_host_key_is_refused(ssh_server, sftp_settings):
    port, _ = ssh_server
    storage = storage_for(f"sftp://tester@127.0.0.1:{port}/inbox")

    with pytest.raises(paramiko.SSHException, match=rf"Server '\[127.0.0.1\]:{port}' not found in known_hosts"):
        file_exists(storage, "a.csv")

    assert sftp_settings.read_text() == ""


def test_an_sftp_server_with_a_known_host_key_gets_to_the_login(ssh_server, sftp_settings):
    port, host_line = ssh_server
    sftp_settings.write_text(host_line)
    storage = storage_for(f"sftp://tester@127.0.0.1:{port}/inbox")

    with pytest.raises(paramiko.AuthenticationException):
        file_exists(storage, "a.csv")


def test_unknown_sftp_hosts_are_accepted_only_when_a_setting_says_so(ssh_server, sftp_settings, settings):
    port, _ = ssh_server
    settings.SFTP_ALLOW_UNKNOWN_HOSTS = True
    storage = storage_for(f"sftp://tester@127.0.0.1:{port}/inbox")

    with pytest.raises(paramiko.AuthenticationException):
        file_exists(storage, "a.csv")
