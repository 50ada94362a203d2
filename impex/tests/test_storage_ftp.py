"""The storage module on real FTP and FTPS servers on loopback (tests/ftp_server.py): file operations, names with
spaces, reads that never hand on a broken transfer, PASV answers, TLS, logins and the hosts the hub may call."""

import hashlib
import io
import os
import socket
import ssl
import tracemalloc
from datetime import UTC, datetime

import pytest

from impex.exceptions import LocationRefused
from impex.models import location_errors
from impex.outbound import OutboundRefused
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
from impex.storage.base import CHUNK_BYTES
from impex.storage.ftp_client import FTPFailure
from impex.tests.test_storage_sftp import mtime_of, on_server, read  # FTP gives whole seconds in UTC too

BIG_BYTES = 24 * 1024 * 1024


@pytest.fixture(params=["ftp", "ftps"])
def where(request):
    """A fresh folder on the loopback FTP server, then on the FTPS one."""
    return request.getfixturevalue(f"{request.param}_location")


@pytest.fixture
def remote(where):
    return storage_for(where.url)


def test_save_open_exists_size_and_delete_round_trip_with_spaces_in_names(remote, where):
    name = save_file(remote, "deep er/a file.csv", io.BytesIO(b"id;name\n1;Ana\n"))

    assert name == "deep er/a file.csv"
    assert (where.path / "deep er" / "a file.csv").read_bytes() == b"id;name\n1;Ana\n"
    assert on_server(where.path) == ["deep er", "deep er/a file.csv"]  # no partial file left
    assert read(remote, name) == b"id;name\n1;Ana\n"
    assert file_exists(remote, name) and not file_exists(remote, "deep er")
    assert file_size(remote, name) == 14
    delete_file(remote, name)
    delete_file(remote, name)  # gone already: not an error
    assert not file_exists(remote, name)


def test_a_missing_file_is_file_not_found_and_a_missing_folder_lists_nothing(remote, where):
    with pytest.raises(FileNotFoundError):
        open_file(remote, "nothing.csv")
    with pytest.raises(FileNotFoundError):
        file_size(remote, "nothing.csv")
    assert look_at(remote, "nothing.csv") is None
    assert list(list_folder(remote, "no such folder")) == []
    assert list(list_folder(storage_for(f"{where.url}/not-made-yet"))) == []


def test_saving_under_a_taken_name_keeps_both_files(remote, where):
    first = save_file(remote, "a b.csv", io.BytesIO(b"one"))
    second = save_file(remote, "a b.csv", io.BytesIO(b"two"))

    assert first == "a b.csv" and second != first and second.startswith("a b_") and second.endswith(".csv")
    assert read(remote, first) == b"one" and read(remote, second) == b"two"


def test_saving_into_a_folder_not_made_yet_makes_it(where):
    storage = storage_for(f"{where.url}/out/box")

    assert save_file(storage, "x.csv", io.BytesIO(b"x")) == "x.csv"
    assert (where.path / "out" / "box" / "x.csv").read_bytes() == b"x"


def test_list_files_and_list_folder_see_names_with_spaces_sizes_and_times(remote, where):
    (where.path / "sub dir" / "deeper").mkdir(parents=True)
    (where.path / "a file.csv").write_bytes(b"12345")
    (where.path / "sub dir" / "b.csv").write_bytes(b"1")
    (where.path / "sub dir" / "deeper" / "c  two spaces.csv").write_bytes(b"12")
    (where.path / ".hidden.part").write_bytes(b"x")
    (where.path / "sub dir" / ".x").write_bytes(b"x")

    everything = sorted(list_files(remote), key=lambda f: f.name)
    here = list(list_folder(remote))

    assert [(f.name, f.size) for f in everything] == [
        ("a file.csv", 5),
        ("sub dir/b.csv", 1),
        ("sub dir/deeper/c  two spaces.csv", 2),
    ]
    assert here == [StoredFile("a file.csv", 5, mtime_of(where.path / "a file.csv"))]
    assert [f.name for f in list_folder(remote, "sub dir")] == ["sub dir/b.csv"]


def test_a_server_without_mlsd_is_listed_by_name_with_sizes_times_and_folders(ftp_location):
    ftp_location.server.mlsd = False
    remote = storage_for(ftp_location.url)
    (ftp_location.path / "sub dir").mkdir()
    (ftp_location.path / "a file.csv").write_bytes(b"12345")
    (ftp_location.path / "sub dir" / "b c.csv").write_bytes(b"1")
    (ftp_location.path / ".hidden").write_bytes(b"x")

    assert sorted(list_files(remote), key=lambda f: f.name) == [
        StoredFile("a file.csv", 5, mtime_of(ftp_location.path / "a file.csv")),
        StoredFile("sub dir/b c.csv", 1, mtime_of(ftp_location.path / "sub dir" / "b c.csv")),
    ]


def test_look_at_sees_size_and_time_now_or_none(remote, where):
    path = where.path / "a b.csv"
    path.write_bytes(b"123")
    os.utime(path, (1_700_000_000, 1_700_000_000))

    assert look_at(remote, "a b.csv") == StoredFile("a b.csv", 3, datetime.fromtimestamp(1_700_000_000, tz=UTC))
    path.write_bytes(b"123456")
    assert look_at(remote, "a b.csv").size == 6
    path.unlink()
    assert look_at(remote, "a b.csv") is None


def test_copy_in_and_moves_between_local_disk_and_ftp_both_ways(remote, where, tmp_path):
    local = storage_for(str(tmp_path / "local"))
    (where.path / "in put.csv").write_bytes(b"data " * 1000)

    stored, digest, size = copy_in(remote, "in put.csv", to=local, to_name="copies/x.csv")
    assert (stored, digest, size) == ("copies/x.csv", hashlib.sha256(b"data " * 1000).hexdigest(), 5000)
    assert (where.path / "in put.csv").exists()  # the source stays

    assert move_file(local, "copies/x.csv", to=remote, to_name="back/x y.csv") == "back/x y.csv"
    assert not (tmp_path / "local" / "copies" / "x.csv").exists()
    assert move_file(remote, "back/x y.csv", to=local, to_name="again.csv") == "again.csv"
    assert not (where.path / "back" / "x y.csv").exists()
    assert (tmp_path / "local" / "again.csv").read_bytes() == b"data " * 1000


def test_local_copy_is_a_download_removed_afterwards(remote, where, settings):
    (where.path / "a b.csv").write_bytes(b"abc")

    with local_copy(remote, "a b.csv") as path:
        assert path.read_bytes() == b"abc"
    assert not path.exists()
    assert [p for p in settings.IMPEX_CACHE_DIR.rglob("*") if p.is_file()] == []


def test_folder_at_and_resolve_path_reach_the_same_file(where):
    (where.path / "inbox").mkdir()
    (where.path / "inbox" / "f g.csv").write_bytes(b"x")
    folder = folder_at(f"{where.url}/inbox", default="unused")

    storage, name = resolve_path(folder.path(folder.name("f g.csv")))

    assert read(storage, name) == b"x"


def test_a_download_cut_off_mid_transfer_is_an_error_and_the_next_one_works(ftp_location):
    storage = storage_for(ftp_location.url)
    (ftp_location.path / "big one.csv").write_bytes(b"0123456789" * 100_000)
    ftp_location.server.cut_after("big one.csv", 70_000)

    with pytest.raises(FTPFailure, match="broke off after [0-9,]+ bytes of 1,000,000 \\(the server closed") as broken:
        open_file(storage, "big one.csv")

    assert isinstance(broken.value, ConnectionError)  # a network error: the scan tries again next time
    assert read(storage, "big one.csv") == b"0123456789" * 100_000


def test_a_server_sending_more_than_the_file_s_size_is_cut_off_at_that_size_not_spooled_to_the_end(ftp_location):
    # A hostile or broken server may send data without end after SIZE said 1,000 bytes: the spool (on the disk
    # of IMPEX_CACHE_DIR) must stop a block past the size, not fill the disk before the size check at the end.
    storage = storage_for(ftp_location.url)
    (ftp_location.path / "endless.csv").write_bytes(b"0123456789" * 100)
    ftp_location.server.flood_after("endless.csv", 1_000, 16 * 1024 * 1024)

    with pytest.raises(FTPFailure, match="sent more than the 1,000 bytes") as flooded:
        open_file(storage, "endless.csv")

    received = int(flooded.value.args[0].split("after ")[1].split(" bytes")[0].replace(",", ""))
    assert received <= 1_000 + CHUNK_BYTES
    assert isinstance(flooded.value, ConnectionError)  # tried again next time
    (ftp_location.path / "endless.csv").write_bytes(b"ok")
    assert read(storage, "endless.csv") == b"ok"  # the connection out of step was dropped; the next one works


def test_a_server_that_never_answers_times_out(ftp_location, settings):
    settings.FTP_TIMEOUT_SECONDS = 0.5
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), then says nothing
    try:
        url = f"ftp://tester@127.0.0.1:{silent.getsockname()[1]}/in"
        with pytest.raises(TimeoutError):
            list(list_folder(storage_for(url)))
    finally:
        silent.close()


def test_a_download_that_stalls_mid_transfer_times_out_and_the_next_one_works(ftp_location, settings):
    settings.FTP_TIMEOUT_SECONDS = 0.5
    storage = storage_for(ftp_location.url)
    (ftp_location.path / "slow.csv").write_bytes(b"0123456789" * 100_000)
    ftp_location.server.stall_after("slow.csv", 70_000)

    try:
        with pytest.raises(FTPFailure, match="broke off after [0-9,]+ bytes of 1,000,000 \\(timed out\\)"):
            open_file(storage, "slow.csv")
    finally:
        ftp_location.server.release()

    assert read(storage, "slow.csv") == b"0123456789" * 100_000


def test_a_server_naming_another_address_in_its_pasv_reply_is_not_followed(ftp_location):
    # A server may answer PASV with an address of its own network (behind NAT, or to make the hub call it): the
    # data connection goes to the address of the control connection, which was checked. 127.0.0.2 refuses
    # connections here (the server listens on 127.0.0.1 only), so following it would fail.
    ftp_location.server.pasv_address = "127.0.0.2"
    storage = storage_for(ftp_location.url)
    (ftp_location.path / "a.csv").write_bytes(b"abc")

    assert read(storage, "a.csv") == b"abc"
    assert [f.name for f in list_folder(storage)] == ["a.csv"]
    assert save_file(storage, "b.csv", io.BytesIO(b"def")) == "b.csv"


def test_a_big_file_goes_through_ftp_without_being_held_in_memory(ftp_location, tmp_path):
    storage = storage_for(ftp_location.url)
    source = tmp_path / "big.bin"
    with open(source, "wb") as fh:
        for i in range(BIG_BYTES // (1024 * 1024)):
            fh.write(bytes([i % 256]) * (1024 * 1024))
    read_back = hashlib.sha256()

    tracemalloc.start()
    try:
        save_file(storage, "big file.bin", source)
        with open_file(storage, "big file.bin") as stream:
            while chunk := stream.read(1024 * 1024):
                read_back.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert read_back.hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()
    assert peak < BIG_BYTES / 4, f"peak {peak:,} bytes for a {BIG_BYTES:,}-byte file"


def test_ftps_protects_the_data_and_checks_the_certificate(ftps_location, settings, tmp_path):
    # The server refuses plain data connections (tls_data_required): a transfer works only under PROT P.
    storage = storage_for(ftps_location.url)
    (ftps_location.path / "a.csv").write_bytes(b"abc")
    assert read(storage, "a.csv") == b"abc"

    settings.FTPS_CA_FILE = None  # the server's self-signed certificate is then signed by nobody the hub trusts
    with pytest.raises(ssl.SSLCertVerificationError):
        list(list_folder(storage_for(ftps_location.url)))


def test_a_private_host_is_refused_unless_listed_before_any_connection(ftp_location, nothing_listed):
    storage = storage_for(ftp_location.url)

    with pytest.raises(OutboundRefused, match="loopback address.*IMPEX_ALLOWED_HOSTS_OUTBOUND"):
        list(list_folder(storage))
    assert any("loopback" in e for e in location_errors(ftp_location.url, what="inbox"))


def test_a_host_not_in_ftp_hosts_is_refused_when_saved_and_when_used(ftp_location, settings):
    settings.FTP_HOSTS = {"ftp.example.com": {}}

    assert "not listed in FTP_HOSTS" in location_errors(ftp_location.url, what="inbox")[0]
    with pytest.raises(LocationRefused, match="not listed in FTP_HOSTS"):
        storage_for(ftp_location.url)


def test_a_password_in_the_location_is_refused(ftp_location):
    url = ftp_location.url.replace("tester@", "tester:secret@")

    assert location_errors(url, what="inbox") == [
        "Keep the password out of the inbox URL: it would be stored and shown in plain text."
    ]


def test_a_wrong_password_is_refused_saying_who_and_where_but_not_the_password(ftp_location, settings):
    settings.FTP_HOSTS = {"127.0.0.1": {"password": "wrong-for-this-host"}}

    with pytest.raises(FTPFailure) as refused:
        list(list_folder(storage_for(ftp_location.url)))

    message = str(refused.value)
    assert "'tester'" in message and f"127.0.0.1:{ftp_location.server.port}" in message
    assert "FTP_HOSTS['127.0.0.1'] password" in message and "wrong-for-this-host" not in message


def test_an_entry_of_its_own_in_ftp_hosts_wins_over_ftp_password(ftp_location, settings):
    settings.FTP_HOSTS = {f"127.0.0.1:{ftp_location.server.port}": {"password": ftp_location.server.password}}
    settings.FTP_PASSWORD = "not-this-one"

    assert list(list_folder(storage_for(ftp_location.url))) == []
