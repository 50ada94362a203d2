"""Hostile inputs to the automatic ImpEx (issue 7 review). Each test here failed on main when it was written.

Real files, a real database, a real S3 server on loopback; no mocks.
"""

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest
from django.conf import settings

from impex.models import ConnectionState, ImportFile, InboxFile
from impex.services.connections import connection_save
from impex.services.inbox import inbox_scan
from impex.tests.helpers import aged, inbox_of

DEMO = Path(__file__).resolve().parents[1] / "impex" / "demo"
ORDERS = "SPECIAL-ORDERS_V2_Acme_202611010900.csv"


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


class FifoWatch:
    """Unblock whoever opens a FIFO for reading (writing `payload`), and remember that someone did.

    Polls with a non-blocking open until stopped: ENXIO means nobody reads it yet. `then` runs just before the
    first reader is released (the reader is then stuck in open(), so whatever `then` does happens mid-scan).
    """

    def __init__(self, fifo: Path, payload: bytes = b"", then=None):
        self.fifo, self.payload, self.then = fifo, payload, then
        self.opened = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    return
                self.stop.wait(0.05)
                continue
            if self.then and not self.opened:
                self.then()
            self.opened = True
            os.write(fd, self.payload)
            os.close(fd)
            self.stop.wait(0.05)  # each open of the pipe (the hashing, then the zip sniff) is released in turn

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_a_fifo_in_a_local_inbox_is_not_opened_by_the_scan(bspk_connection):
    """A named pipe is not a file: reading it blocks for ever (the scan holds its lease by heartbeat, for good)."""
    fifo = inbox_of(bspk_connection) / "SPECIAL-ORDERS_V2_Acme_202611020000.csv"
    os.mkfifo(fifo)
    aged(fifo)
    with FifoWatch(fifo) as watch:
        inbox_scan(connection=bspk_connection)
    assert not watch.opened, "the scan opened a FIFO of the inbox: without a writer it would hang for ever"
    assert not InboxFile.objects.filter(name=fifo.name, status__in=["claimed", "taken"]).exists()


def test_a_file_swapped_for_a_symlink_during_the_scan_is_not_read(bspk_connection, tmp_path):
    """The listing skips links, but copy_in opens the name later and follows a link put there meanwhile.

    A FIFO (sorted first) holds the scan between listing and copying, deterministically; a real attacker uses a big
    file instead (copy_in hashes it first). The secret lands in the job's folder and then in the error folder.
    """
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:TOP SECRET\n")
    inbox = inbox_of(bspk_connection)
    fifo = inbox / "SPECIAL-ORDERS_V2_Acme_202611020000.csv"
    os.mkfifo(fifo)
    aged(fifo)
    victim = inbox / "SPECIAL-ORDERS_V2_Acme_202611020100.csv"
    shutil.copyfile(DEMO / ORDERS, victim)
    aged(victim)

    def swap():
        victim.unlink()
        victim.symlink_to(secret)

    with FifoWatch(fifo, payload=b"", then=swap):
        inbox_scan(connection=bspk_connection, run_here=True)

    taken = ImportFile.objects.filter(name=victim.name)
    hub = Path(settings.IMPEX_ROOT)
    leaked = [str(p) for p in hub.rglob("*") if p.is_file() and b"TOP SECRET" in p.read_bytes()]
    assert leaked == [] and not taken.filter(content_hash__isnull=False, size=secret.stat().st_size).exists(), (
        f"a file outside the inbox was taken through a symlink: {leaked}"
    )


def test_a_rejected_file_with_a_long_name_gets_its_reason_and_a_true_path(bspk_connection):
    """A 244-character name (a legal name) is rejected: NAME.reason.txt (and its hidden .part) exceed NAME_MAX.

    On main the file is moved to the error folder, the reason file fails, and the job says the file "stays at
    jobs/N/0" while its recorded path points at nothing.
    """
    name = "X" * 240 + ".csv"
    aged(Path(shutil.copyfile(DEMO / ORDERS, inbox_of(bspk_connection) / name)))

    inbox_scan(connection=bspk_connection, run_here=True)

    f = ImportFile.objects.get(name=name)
    assert f.status == "rejected"
    error_folder = Path(settings.IMPEX_ROOT) / bspk_connection.code / "error"
    reasons = [p.name for p in error_folder.iterdir() if p.name.endswith(".txt")] if error_folder.exists() else []
    assert reasons, "no reason file for the rejected file in the error folder"
    from impex.storage import file_exists, resolve_path

    storage, stored = resolve_path(f.path)
    assert file_exists(storage, stored), f"the recorded path {f.path} of the rejected file is not there"


def test_an_s3_key_longer_than_the_inbox_file_name_field_does_not_stop_every_scan(
    bspk_connection, s3_bucket, s3_client
):
    """S3 keys reach 1024 bytes; InboxFile.name holds 300. On PostgreSQL the INSERT raises DataError (not the
    IntegrityError _first_look expects): every scan of the connection fails, and the good files never go in."""
    connection_save(code=bspk_connection.code, inbox=f"s3://{s3_bucket}/in")
    bspk_connection.refresh_from_db()
    s3_client.put_object(Bucket=s3_bucket, Key="in/" + "Y" * 400 + ".csv", Body=b"x\n")
    s3_client.put_object(Bucket=s3_bucket, Key=f"in/{ORDERS}", Body=(DEMO / ORDERS).read_bytes())

    result = inbox_scan(connection=bspk_connection, run_here=True)

    assert result.error == "", result.error
    assert ImportFile.objects.get(name=ORDERS).status == "imported"
    assert ConnectionState.objects.get(connection=bspk_connection).last_scan_ok is True
