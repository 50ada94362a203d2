"""The storage module on a real SFTP server on loopback (tests/sftp_server.py): file operations, host keys, logins."""

import hashlib
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import pytest

from impex.storage import (
    StoredFile,
    copy_in,
    delete_file,
    file_exists,
    file_size,
    folder_at,
    list_files,
    list_folder,
    local_copy,
    look_at,
    move_file,
    open_file,
    resolve_path,
    save_file,
    storage_for,
)

# Big enough that the fixed costs of a transfer (the SSH window, a read-ahead window) are well under a quarter.
BIG_BYTES = 40 * 1024 * 1024


def read(storage, name: str) -> bytes:
    """Return a stored file's content."""
    with open_file(storage, name) as stream:
        return stream.read()


def mtime_of(path: Path) -> datetime:
    """Return a local file's modification time as SFTP reports it: whole seconds, UTC."""
    return datetime.fromtimestamp(int(path.stat().st_mtime), tz=UTC)


def on_server(folder: Path) -> list[str]:
    """Return every file and folder under a folder on the server's disk, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def remote(sftp_location):
    """The storage of a fresh folder on the loopback SFTP server."""
    return storage_for(sftp_location.url)


@pytest.fixture
def local(tmp_path):
    """A storage on local disk."""
    return storage_for(str(tmp_path / "local"))


def test_save_open_exists_size_and_delete_round_trip(remote, sftp_location, tmp_path):
    source = tmp_path / "source.csv"
    source.write_bytes(b"sku;qty\nA1;3\n")

    from_path = save_file(remote, "kore/in/a.csv", source)
    from_stream = save_file(remote, "kore/in/b.csv", io.BytesIO(b"sku;qty\nB2;5\n"))

    assert (from_path, from_stream) == ("kore/in/a.csv", "kore/in/b.csv")
    assert (sftp_location.path / "kore/in/a.csv").read_bytes() == b"sku;qty\nA1;3\n"
    assert read(remote, "kore/in/b.csv") == b"sku;qty\nB2;5\n"
    assert file_exists(remote, "kore/in/a.csv")
    assert not file_exists(remote, "kore/in")  # a folder is not a file
    assert not file_exists(remote, "kore/in/missing.csv")
    assert file_size(remote, "kore/in/a.csv") == 13
    delete_file(remote, "kore/in/a.csv")
    delete_file(remote, "kore/in/a.csv")  # already gone: not an error
    assert on_server(sftp_location.path) == ["kore", "kore/in", "kore/in/b.csv"]


def test_a_missing_file_is_file_not_found_when_opened_or_sized(remote):
    with pytest.raises(FileNotFoundError):
        open_file(remote, "missing.csv")
    with pytest.raises(FileNotFoundError):
        file_size(remote, "missing.csv")
    with pytest.raises(FileNotFoundError), local_copy(remote, "missing.csv"):
        pass


def test_saving_under_a_taken_name_keeps_both_files(remote, sftp_location):
    (sftp_location.path / "a.csv").write_bytes(b"first")

    second = save_file(remote, "a.csv", io.BytesIO(b"second"))

    assert second != "a.csv"
    assert second.startswith("a_") and second.endswith(".csv")
    assert (sftp_location.path / "a.csv").read_bytes() == b"first"
    assert read(remote, second) == b"second"
    assert on_server(sftp_location.path) == sorted(["a.csv", second])


class SlowStream(io.RawIOBase):
    """A stream that calls back after its first chunk, to look at the server while a save is under way."""

    def __init__(self, chunks: list[bytes], during):
        self.chunks = list(chunks)
        self.during = during
        self.sent = 0

    def readable(self):
        return True

    def read(self, size=-1):
        if self.sent == 1:
            self.during()
        self.sent += 1
        return self.chunks.pop(0) if self.chunks else b""


def test_a_file_appears_under_its_name_only_once_complete(remote, sftp_location):
    seen = []
    stream = SlowStream([b"a" * 1000, b"b" * 1000], during=lambda: seen.append(on_server(sftp_location.path)))

    stored = save_file(remote, "in/a.csv", stream)

    assert stored == "in/a.csv"
    [during] = seen
    assert "in/a.csv" not in during
    assert any(name.startswith("in/.a.csv.") and name.endswith(".part") for name in during)
    assert on_server(sftp_location.path) == ["in", "in/a.csv"]
    assert (sftp_location.path / "in/a.csv").read_bytes() == b"a" * 1000 + b"b" * 1000


def test_a_failed_save_leaves_nothing_behind(remote, sftp_location):
    def fail():
        raise OSError("the source broke off")

    with pytest.raises(OSError, match="the source broke off"):
        save_file(remote, "a.csv", SlowStream([b"a" * 1000, b"b" * 1000], during=fail))

    assert on_server(sftp_location.path) == []


def test_a_name_taken_while_saving_gets_a_free_variant_and_the_other_file_stays(remote, sftp_location):
    # Another writer gives the name to its file after ours checked it was free, before ours is renamed.
    stream = SlowStream([b"ours"], during=lambda: (sftp_location.path / "a.csv").write_bytes(b"theirs"))

    stored = save_file(remote, "a.csv", stream)

    assert stored != "a.csv"
    assert (sftp_location.path / "a.csv").read_bytes() == b"theirs"
    assert read(remote, stored) == b"ours"


def test_open_file_streams_a_chunk_at_a_time(remote, sftp_location):
    (sftp_location.path / "a.csv").write_bytes(b"0123456789" * 10_000)

    with open_file(remote, "a.csv") as stream:
        first = stream.read(10)
        rest = stream.read()

    assert first == b"0123456789"
    assert len(rest) == 99_990


def test_local_copy_of_an_sftp_file_is_a_download_removed_afterwards(remote, sftp_location, settings):
    (sftp_location.path / "kore").mkdir()
    (sftp_location.path / "kore/a.csv").write_bytes(b"sku;qty\n")

    with local_copy(remote, "kore/a.csv") as path:
        assert path.read_bytes() == b"sku;qty\n"
        assert Path(settings.IMPEX_CACHE_DIR) in path.parents

    assert not path.exists()
    assert on_server(sftp_location.path) == ["kore", "kore/a.csv"]


def test_list_files_walks_nested_folders_skipping_hidden_names(remote, sftp_location):
    root = sftp_location.path
    for name, content in {
        "a.csv": b"1",
        "kore/b.csv": b"22",
        "kore/deep/c.csv": b"333",
        ".hidden.csv": b"x",
        "kore/.a.csv.part": b"x",
        ".git/config": b"x",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    os.utime(root / "kore/b.csv", (1_700_000_000, 1_700_000_000))

    listed = list(list_files(remote))

    assert listed == [
        StoredFile("a.csv", 1, mtime_of(root / "a.csv")),
        StoredFile("kore/b.csv", 2, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        StoredFile("kore/deep/c.csv", 3, mtime_of(root / "kore/deep/c.csv")),
    ]
    assert [f.name for f in list_files(remote, "kore")] == ["kore/b.csv", "kore/deep/c.csv"]
    assert list(list_files(remote, "missing")) == []


def test_list_folder_lists_one_level_skipping_hidden_names_and_folders(remote, sftp_location):
    root = sftp_location.path
    (root / "in/sub").mkdir(parents=True)
    (root / "in/b.csv").write_bytes(b"22")
    (root / "in/a.csv").write_bytes(b"1")
    (root / "in/.a.csv.part").write_bytes(b"partial")
    (root / "in/sub/c.csv").write_bytes(b"333")
    (root / "top.csv").write_bytes(b"4444")

    assert [(f.name, f.size) for f in list_folder(remote, "in")] == [("in/a.csv", 1), ("in/b.csv", 2)]
    assert [(f.name, f.size) for f in list_folder(remote)] == [("top.csv", 4)]
    assert list(list_folder(remote, "missing")) == []
    assert list(list_folder(remote, "top.csv")) == []  # a file is not a folder


def test_links_are_listed_as_what_they_point_to(remote, sftp_location):
    root = sftp_location.path
    (root / "data").mkdir()
    (root / "data/real.csv").write_bytes(b"12345")
    (root / "in").mkdir()
    (root / "in/linked.csv").symlink_to(root / "data/real.csv")
    (root / "in/dangling.csv").symlink_to(root / "data/gone.csv")
    (root / "in/folder").symlink_to(root / "data")

    assert [(f.name, f.size) for f in list_folder(remote, "in")] == [("in/linked.csv", 5)]
    assert [f.name for f in list_files(remote, "in")] == ["in/linked.csv", "in/folder/real.csv"]


def test_look_at_sees_size_and_time_now_or_none(remote, sftp_location):
    path = sftp_location.path / "a.csv"
    path.write_bytes(b"sku;qty\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))

    before = look_at(remote, "a.csv")
    with open(path, "ab") as out:
        out.write(b"A1;3\n")
    os.utime(path, (1_700_000_060, 1_700_000_060))
    after = look_at(remote, "a.csv")
    path.unlink()

    assert before == StoredFile("a.csv", 8, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))
    assert after == StoredFile("a.csv", 13, datetime(2023, 11, 14, 22, 14, 20, tzinfo=UTC))
    assert look_at(remote, "a.csv") is None
    (sftp_location.path / "folder").mkdir()
    assert look_at(remote, "folder") is None


def test_copy_in_returns_name_sha256_and_size_and_leaves_the_source(remote, sftp_location, local):
    content = b"sku;qty\n" + b"A1;3\n" * 50_000
    (sftp_location.path / "in").mkdir()
    (sftp_location.path / "in/a.csv").write_bytes(content)
    save_file(local, "jobs/1/a.csv", io.BytesIO(b"taken"))

    stored, digest, size = copy_in(remote, "in/a.csv", to=local, to_name="jobs/1/a.csv")

    assert stored != "jobs/1/a.csv"  # a free variant: the file there stays
    assert read(local, "jobs/1/a.csv") == b"taken"
    assert read(local, stored) == content
    assert (digest, size) == (hashlib.sha256(content).hexdigest(), len(content))
    assert (sftp_location.path / "in/a.csv").read_bytes() == content


def test_copy_in_onto_sftp(remote, sftp_location, local):
    save_file(local, "a.csv", io.BytesIO(b"sku;qty\n"))

    stored, digest, size = copy_in(local, "a.csv", to=remote, to_name="out/a.csv")

    assert (stored, digest, size) == ("out/a.csv", hashlib.sha256(b"sku;qty\n").hexdigest(), 8)
    assert (sftp_location.path / "out/a.csv").read_bytes() == b"sku;qty\n"
    assert file_exists(local, "a.csv")


def test_copy_in_of_a_missing_file_is_file_not_found(remote, local):
    with pytest.raises(FileNotFoundError):
        copy_in(remote, "missing.csv", to=local, to_name="a.csv")


def test_moving_between_local_disk_and_sftp_both_ways(remote, sftp_location, local):
    save_file(local, "a.csv", io.BytesIO(b"sku;qty\n"))

    up = move_file(local, "a.csv", to=remote, to_name="archive/a.csv")

    assert up == "archive/a.csv"
    assert not file_exists(local, "a.csv")
    assert on_server(sftp_location.path) == ["archive", "archive/a.csv"]

    down = move_file(remote, "archive/a.csv", to=local, to_name="back/a.csv")

    assert down == "back/a.csv"
    assert read(local, "back/a.csv") == b"sku;qty\n"
    assert on_server(sftp_location.path) == ["archive"]


def test_moving_onto_a_taken_name_on_sftp_keeps_both_files(remote, sftp_location):
    (sftp_location.path / "in").mkdir()
    (sftp_location.path / "in/a.csv").write_bytes(b"new")
    (sftp_location.path / "archive").mkdir()
    (sftp_location.path / "archive/a.csv").write_bytes(b"old")

    moved = move_file(remote, "in/a.csv", to=remote, to_name="archive/a.csv")

    assert moved != "archive/a.csv"
    assert (sftp_location.path / "archive/a.csv").read_bytes() == b"old"
    assert read(remote, moved) == b"new"
    assert not (sftp_location.path / "in/a.csv").exists()


def test_a_file_that_cannot_be_deleted_is_an_error_not_taken_as_gone(remote, sftp_location):
    # Running as root here, permissions cannot stop a delete; a folder in the file's place does.
    (sftp_location.path / "a.csv").mkdir()
    (sftp_location.path / "a.csv/inside.csv").write_bytes(b"x")

    with pytest.raises(OSError):
        delete_file(remote, "a.csv")

    assert (sftp_location.path / "a.csv/inside.csv").exists()


def test_folder_at_and_resolve_path_reach_the_same_sftp_file(sftp_location):
    (sftp_location.path / "inbox").mkdir()
    (sftp_location.path / "inbox/a.csv").write_bytes(b"sku;qty\n")
    folder = folder_at(f"{sftp_location.url}/inbox/", default="inbox")

    [listed] = list_folder(folder.storage, folder.prefix)
    recorded = folder.path(listed.name)
    storage, name = resolve_path(recorded)

    assert not folder.in_hub
    assert recorded == f"{sftp_location.url}/inbox/a.csv"
    assert read(storage, name) == b"sku;qty\n"


def test_a_big_file_goes_through_sftp_without_being_held_in_memory(sftp_location, tmp_path):
    # Measured in a process of its own: tracemalloc counts every thread, and threads other tests left behind in
    # this process (servers, pools) could add their allocations to the peak. A file closed after its first bytes
    # once left paramiko's prefetch fetching the rest of it into memory, through the connection's next reads.
    big = tmp_path / "big.csv"
    with open(big, "wb") as out:
        for _ in range(BIG_BYTES // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    script = (
        "import django, sys, time, tracemalloc; django.setup()\n"
        "from impex.storage import copy_in, open_file, save_file, storage_for\n"
        "remote, local = storage_for(sys.argv[1]), storage_for(sys.argv[2])\n"
        "remote.storage.sftp  # connect before measuring: the connection's set-up is not the file's cost\n"
        "tracemalloc.start()\n"
        "save_file(remote, 'big.csv', sys.argv[3])\n"
        "with open_file(remote, 'big.csv') as stream:  # a reader that stops early: a header, a download cut off\n"
        "    stream.read(100)\n"
        "started = time.monotonic()\n"
        "_stored, digest, size = copy_in(remote, 'big.csv', to=local, to_name='big.csv')\n"
        "print(tracemalloc.get_traced_memory()[1], digest, size, time.monotonic() - started)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "IMPEX_ALLOWED_LOCAL_ROOTS": str(tmp_path),
        **sftp_location.env,
    }

    done = subprocess.run(
        [sys.executable, "-c", script, sftp_location.url, str(tmp_path / "local"), str(big)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    peak, copied_digest, size, _seconds = done.stdout.split()
    assert int(peak) < BIG_BYTES / 4, f"peak {int(peak) / 1e6:.1f} MB for a {BIG_BYTES / 1e6:.0f} MB file"
    assert (copied_digest, int(size)) == (digest, BIG_BYTES)
    assert hashlib.sha256((sftp_location.path / "big.csv").read_bytes()).hexdigest() == digest
    assert hashlib.sha256((tmp_path / "local/big.csv").read_bytes()).hexdigest() == digest


# -- Host keys and logins ---------------------------------------------------------------------------


def test_a_known_host_key_lets_the_storage_in(remote, sftp_location):
    (sftp_location.path / "a.csv").write_bytes(b"x")

    assert file_exists(remote, "a.csv")
    assert sftp_location.known_hosts.read_text().startswith("[127.0.0.1]:")


def test_an_unknown_host_key_is_refused_saying_what_to_do(sftp_location, settings):
    settings.SFTP_KNOWN_HOST_FILE = str(sftp_location.known_hosts)
    sftp_location.known_hosts.write_text("")
    port = sftp_location.url.split(":")[2].split("/")[0]

    with pytest.raises(paramiko.SSHException) as refused:
        file_exists(storage_for(sftp_location.url), "a.csv")

    message = str(refused.value)
    assert f"Server '[127.0.0.1]:{port}' not found in known_hosts: its ssh-ed25519 host key SHA256:" in message
    assert str(sftp_location.known_hosts) in message
    assert "SFTP_ALLOW_UNKNOWN_HOSTS" in message
    assert sftp_location.known_hosts.read_text() == ""  # nothing learnt


def test_another_key_for_a_known_host_is_refused(sftp_location):
    impostor = paramiko.RSAKey.generate(2048)
    host = sftp_location.known_hosts.read_text().split()[0]
    sftp_location.known_hosts.write_text(f"{host} {impostor.get_name()} {impostor.get_base64()}\n")

    with pytest.raises(paramiko.BadHostKeyException):
        file_exists(storage_for(sftp_location.url), "a.csv")


def test_an_unknown_host_key_is_accepted_only_when_a_setting_says_so(sftp_location, settings, tmp_path):
    settings.SFTP_KNOWN_HOST_FILE = str(tmp_path / "no_known_hosts")
    settings.SFTP_ALLOW_UNKNOWN_HOSTS = True
    (sftp_location.path / "a.csv").write_bytes(b"x")

    assert file_exists(storage_for(sftp_location.url), "a.csv")


def test_a_wrong_password_is_refused_saying_who_and_where(sftp_location, settings):
    settings.SFTP_PASSWORD = "wrong-password"
    port = sftp_location.url.split(":")[2].split("/")[0]

    with pytest.raises(paramiko.AuthenticationException) as refused:
        file_exists(storage_for(sftp_location.url), "a.csv")

    message = str(refused.value)
    assert message.startswith(f"SFTP login as 'tester' to 127.0.0.1:{port} refused (Authentication failed.)")
    assert "tried SFTP_PASSWORD" in message
    assert "wrong-password" not in message


def test_a_key_file_logs_in_without_a_password(sftp_server, sftp_location, settings):
    settings.SFTP_PASSWORD = None
    settings.SFTP_KEY_FILE = str(sftp_server.client_key_file)
    (sftp_location.path / "a.csv").write_bytes(b"x")

    assert file_exists(storage_for(sftp_location.url), "a.csv")


def test_every_session_stays_inside_the_servers_folder(sftp_server, sftp_location):
    escaping = storage_for(f"sftp://{sftp_server.user}@127.0.0.1:{sftp_server.port}/../../../tmp")

    save_file(escaping, "escaped.csv", io.BytesIO(b"x"))

    assert (sftp_server.root / "tmp/escaped.csv").read_bytes() == b"x"


def test_a_subprocess_reaches_the_server_with_the_locations_environment(sftp_location):
    (sftp_location.path / "a.csv").write_bytes(b"sku;qty\n")
    script = (
        "import django, sys; django.setup(); from impex.storage import list_folder, storage_for; "
        "print([(f.name, f.size) for f in list_folder(storage_for(sys.argv[1]))])"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **sftp_location.env}

    done = subprocess.run(
        [sys.executable, "-c", script, sftp_location.url], cwd=root, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('a.csv', 8)]"


def test_a_host_of_its_own_login_in_sftp_hosts_wins_over_the_defaults(sftp_server, sftp_location, settings):
    settings.SFTP_PASSWORD = "the-default-that-does-not-work"
    settings.SFTP_HOSTS = {f"127.0.0.1:{sftp_server.port}": {"password": sftp_server.password}}
    (sftp_location.path / "a.csv").write_bytes(b"x")

    assert file_exists(storage_for(sftp_location.url), "a.csv")

    settings.SFTP_HOSTS = {"127.0.0.1": {"password": "wrong-for-this-host"}}
    with pytest.raises(paramiko.AuthenticationException) as refused:
        file_exists(storage_for(sftp_location.url), "a.csv")
    assert "tried SFTP_HOSTS['127.0.0.1'] password" in str(refused.value)
    assert "wrong-for-this-host" not in str(refused.value)
