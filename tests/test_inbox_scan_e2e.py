"""The inbox scan end to end (issue 7), as real processes: a `qcluster` takes what lands in local and S3 inboxes on
its schedule, two `impex_scan` processes race on one inbox, a cluster killed in the middle of a big file is started
again, and a scan killed while taking files leaves nothing behind.

Every process works on the test's own database: PostgreSQL's test database, or on SQLite a file copy of the
in-memory test database (see shared_db), so these run on both. Nothing waits on the clock except for what the
cluster does: each wait polls the database (or the folders) up to a generous deadline, and says what it saw.
"""

import csv
import email
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

import impex.demo
from impex.models import (
    ConnectionState,
    ImportChunk,
    ImportedFileName,
    ImportFile,
    ImportJob,
    InboxFile,
)
from impex.services.connections import connection_save
from impex.services.inbox import inbox_scan_start
from impex.services.schedules import scan_schedule_name
from impex.tests.helpers import LAPSED, customer_row, kore_name, lapse, process_env, table_text, write_kore
from syncapp.models import Customer, SpecialOrder, SpecialOrderEvent, SpecialOrderLineItem

pytestmark = [pytest.mark.django_db(transaction=True)]

DEMO = Path(impex.demo.__file__).parent
BSPK_DEMO = sorted(DEMO.glob("SPECIAL-ORDER*_V2_Acme_*.csv"))
KORE_DEMO = sorted(DEMO.glob("ERP_*_INT1_*"))
DEADLINE = 120  # seconds for the cluster to do one thing: its scheduler alone looks at schedules every ~30 s
REQUEUE = "impex: queue again import jobs whose worker died"


# -- processes on the test's database ----------------------------------------------------------------------


@pytest.fixture
def shared_db(builtin_installed, tmp_path):
    """Make the test's database one that other processes open too.

    PostgreSQL's test database already is. SQLite's is in memory, visible to this process only: it is copied
    (built-in descriptors included) to a file, which this process then uses as well until the test ends. The
    in-memory database stays open meanwhile (closing its connection would destroy it) and is used again after.
    """
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    memory, name = connection.connection, connection.settings_dict["NAME"]
    path = tmp_path / "shared.sqlite3"
    copy = sqlite3.connect(path)
    memory.backup(copy)
    copy.close()
    connection.connection = None
    connection.settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
        connection.connection = memory


@pytest.fixture
def mail_dir(tmp_path) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    return folder


@pytest.fixture
def env(shared_db, mail_dir):
    """The environment of the processes a test starts: its database, folders, a quick inbox and mails as files."""
    return process_env(
        IMPEX_INBOX_QUIET_SECONDS=1,
        IMPEX_POLL_SECONDS=0.2,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=mail_dir,
        Q_WORKERS=2,
        PYTHONUNBUFFERED=1,
    )


class Cluster:
    """A `manage.py qcluster` in a process group of its own (main process, sentinel, workers, monitor, pusher)."""

    def __init__(self, env: dict, log: Path):
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, **extra) -> "Cluster":
        with open(self.log, "ab") as out:
            out.write(b"\n--- qcluster starts ---\n")
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=settings.BASE_DIR,
                env={**self.env, **{k: str(v) for k, v in extra.items()}},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL every process of the cluster at once, as a machine that loses power."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        # The group outlives its leader while any member lives: wait until the kernel has reaped them all.
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster(env, tmp_path):
    """A cluster on the test's database, not yet started; killed (its whole group) at the end of the test."""
    running = Cluster(env, tmp_path / "qcluster.log")
    try:
        yield running
    finally:
        running.kill()


def wait_for(condition, *, seconds: float = DEADLINE, step: float = 0.2):
    """Poll condition until it returns something true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def scan_now(code: str) -> None:
    """Make a connection's scan schedule due: the scheduler of the cluster takes it at its next look."""
    from impex.models import Connection

    conn = Connection.objects.get(code=code)
    assert Schedule.objects.filter(name=scan_schedule_name(conn)).update(next_run=timezone.now()) == 1


def mails(folder: Path) -> list[email.message.Message]:
    """Return the mails the processes wrote with the file-based backend (several may share one file)."""
    found = []
    for path in sorted(folder.iterdir()):
        # Each mail is followed by a line of dashes: what follows the last one is a mail still being written.
        for part in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n")[:-1]:
            found.append(email.message_from_bytes(part.lstrip()))
    return found


def jobs_ended(code: str, count: int):
    """Return the connection's scan jobs once `count` of them have ended and none is open, else None."""
    jobs = list(ImportJob.objects.filter(connection__code=code, source="scan").order_by("pk"))
    if len(jobs) >= count and all(j.status in ("completed", "failed", "errored", "cancelled") for j in jobs):
        return jobs
    return None


def explain(cluster: Cluster | None, code: str) -> str:
    jobs = [(j.pk, j.status, j.error) for j in ImportJob.objects.filter(connection__code=code)]
    files = [(f.name, f.status, f.message) for f in ImportFile.objects.filter(connection__code=code)]
    inbox = [(f.name, f.status, f.message) for f in InboxFile.objects.filter(connection__code=code)]
    state = ConnectionState.objects.filter(connection__code=code).values().first()
    log = f"--- cluster log ---\n{cluster.output()[-6000:]}" if cluster else ""
    return f"jobs {jobs}\nfiles {files}\ninbox {inbox}\nstate {state}\n{log}"


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# -- 1. a local inbox through the cluster's schedule ----------------------------------------------------------


def test_the_cluster_imports_a_local_inbox_on_its_schedule_once_and_rejects_bad_files_with_one_mail(cluster, mail_dir):
    conn, _ = connection_save(
        code="acme-pos",
        convention="bspk",
        company_name="Acme",
        contacts="ops@example.com, buyer@example.com",
        interval_minutes=1,
    )
    root = Path(settings.IMPEX_ROOT) / conn.code
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for path in BSPK_DEMO:
        shutil.copyfile(path, inbox / path.name)
    # The connection's schedule was made when it was saved, due at once: the cluster's scheduler queues the scan at
    # its first look, which it takes as it starts here (config.test_settings) rather than 30 s later.
    assert Schedule.objects.get(name=scan_schedule_name(conn)).next_run <= timezone.now()

    cluster.start(Q_SCHEDULER_AT_START=1)
    (job,) = wait_for(lambda: jobs_ended(conn.code, 1)) or pytest.fail(explain(cluster, conn.code))

    names = [p.name for p in BSPK_DEMO]
    assert job.status == "completed", explain(cluster, conn.code)
    assert listing(inbox) == []
    assert listing(root / "archive") == sorted(names)
    for path in BSPK_DEMO:
        assert (root / "archive" / path.name).read_bytes() == path.read_bytes()
    assert listing(root / "error") == []
    assert sorted(ImportedFileName.objects.filter(connection=conn).values_list("name", flat=True)) == sorted(names)
    assert sorted(ImportFile.objects.filter(connection=conn).values_list("name", "status")) == sorted(
        (n, "imported") for n in names
    )
    taken = InboxFile.objects.filter(connection=conn)
    assert sorted(taken.values_list("name", "status", "job")) == sorted((n, "taken", job.pk) for n in names)
    assert not taken.filter(left_inbox_at=None).exists()
    by_name = {p.name.split("_")[0]: rows_of(p) for p in BSPK_DEMO}
    assert set(SpecialOrder.objects.values_list("special_order_id", flat=True)) == {
        r["special_order_id"] for r in by_name["SPECIAL-ORDERS"]
    }
    assert SpecialOrderLineItem.objects.count() == len(by_name["SPECIAL-ORDER-LINE-ITEMS"])
    orders = set(SpecialOrder.objects.values_list("special_order_id", flat=True))
    events = by_name["SPECIAL-ORDER-EVENTS"]
    assert sorted(SpecialOrderEvent.objects.values_list("event_id", flat=True)) == sorted(
        r["event_id"] for r in events if r["special_order_id"] in orders
    )
    # The demo's one event of an unknown order is a row error: the contacts get one mail with it attached.
    (sent,) = wait_for(lambda: mails(mail_dir), seconds=30) or pytest.fail(explain(cluster, conn.code))
    assert sent["Subject"] == f"[impex-hub] acme-pos: import job #{job.pk} has errors"
    assert "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv: 1 row refused" in text_of(sent)
    assert b"SO-9999" in attachment_of(sent)

    # Files that cannot be imported: a name that does not parse, another company's, another version. "Sync now"
    # queues the scan task itself for the cluster's workers.
    bad = {
        "special-orders-latest.csv": "expected 4",
        "SPECIAL-ORDERS_V2_Globex_202611021000.csv": "Globex",
        "SPECIAL-ORDERS_V3_Acme_202611021000.csv": "V3",
    }
    for name in bad:
        shutil.copyfile(BSPK_DEMO[-1], inbox / name)
    inbox_scan_start(connection=conn, by="test")

    first, second = wait_for(lambda: jobs_ended(conn.code, 2)) or pytest.fail(explain(cluster, conn.code))
    assert first == job and second.status == "failed", explain(cluster, conn.code)
    assert listing(inbox) == []
    assert listing(root / "error") == sorted([*bad, *(f"{n}.reason.txt" for n in bad)])
    for name, why in bad.items():
        reason = (root / "error" / f"{name}.reason.txt").read_text()
        assert why in reason, (name, reason)
        assert (root / "error" / name).read_bytes() == BSPK_DEMO[-1].read_bytes()
    assert listing(root / "archive") == sorted(names)
    assert ImportedFileName.objects.filter(connection=conn).count() == 3
    assert sorted(ImportFile.objects.filter(job=second).values_list("name", "status")) == sorted(
        (n, "rejected") for n in bad
    )

    # One more mail to the contacts, for this job; a later scan of the empty inbox sends no other.
    wait_for(lambda: len(mails(mail_dir)) > 1, seconds=30) or pytest.fail(explain(cluster, conn.code))
    last_scan = ConnectionState.objects.get(connection=conn).last_scan_at
    inbox_scan_start(connection=conn, by="test")
    assert wait_for(lambda: ConnectionState.objects.get(connection=conn).last_scan_at != last_scan)
    assert ImportJob.objects.filter(connection=conn).count() == 2
    sent = mails(mail_dir)
    assert [m["Subject"] for m in sent] == [
        f"[impex-hub] acme-pos: import job #{job.pk} has errors",
        f"[impex-hub] acme-pos: import job #{second.pk} has errors",
    ]
    assert sorted(a.strip() for a in sent[1]["To"].split(",")) == ["buyer@example.com", "ops@example.com"]
    for name in bad:
        assert f"- {name}: rejected: " in text_of(sent[1])


def text_of(message: email.message.Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode()


def attachment_of(message: email.message.Message) -> bytes:
    return next(p for p in message.walk() if p.get_content_type() == "text/csv").get_payload(decode=True)


# -- 2. inboxes on S3 (moto's server on loopback) --------------------------------------------------------------


def s3_env(s3_server) -> dict:
    return {
        "AWS_S3_ENDPOINT_URL": s3_server,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def keys(s3_client, bucket: str, prefix: str) -> list[str]:
    """Return the names (after prefix/) of the objects under a prefix."""
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    return sorted(o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", []))


def s3_settled(s3_client, bucket: str, prefix: str, quiet: timedelta) -> bool:
    """Tell whether every object under a prefix was last modified, by S3's time, at least `quiet` ago."""
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    oldest_fresh = timezone.now() - quiet
    return all(o["LastModified"] <= oldest_fresh for page in pages for o in page.get("Contents", []))


def s3_text(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_the_cluster_imports_s3_inboxes_once_into_local_or_s3_archive_and_error_folders(
    cluster, s3_bucket, s3_server, s3_client
):
    # acme: inbox on S3, archive and error folders by default (local, under IMPEX_ROOT/acme-s3).
    acme, _ = connection_save(
        code="acme-s3",
        convention="bspk",
        company_name="Acme",
        inbox=f"s3://{s3_bucket}/acme/inbox",
        interval_minutes=1,
    )
    # kore: inbox, archive and error folders all on S3.
    kore, _ = connection_save(
        code="kore-s3",
        convention="kore",
        integration_id="INT1",
        inbox=f"s3://{s3_bucket}/kore/inbox",
        contacts="ops@example.com",
        interval_minutes=1,
    )
    kore.archive_folder = f"s3://{s3_bucket}/kore/archive"
    kore.error_folder = f"s3://{s3_bucket}/kore/error"
    kore.save(update_fields=["archive_folder", "error_folder"])
    for path in BSPK_DEMO:
        s3_client.put_object(Bucket=s3_bucket, Key=f"acme/inbox/{path.name}", Body=path.read_bytes())
    for path in KORE_DEMO:
        s3_client.put_object(Bucket=s3_bucket, Key=f"kore/inbox/{path.name}", Body=path.read_bytes())
    wrong = kore_name("KS_CUSTOMERS", 6, integration="INT9")
    s3_client.put_object(Bucket=s3_bucket, Key=f"kore/inbox/{wrong}", Body=KORE_DEMO[0].read_bytes())
    scan_now(acme.code)
    scan_now(kore.code)

    cluster.start(**s3_env(s3_server), Q_SCHEDULER_AT_START=1)  # its scheduler's first look: as it starts
    (acme_job,) = wait_for(lambda: jobs_ended(acme.code, 1)) or pytest.fail(explain(cluster, acme.code))
    (kore_job,) = wait_for(lambda: jobs_ended(kore.code, 1)) or pytest.fail(explain(cluster, kore.code))

    # acme: taken from S3, imported once, archived locally.
    assert acme_job.status == "completed", explain(cluster, acme.code)
    assert keys(s3_client, s3_bucket, "acme/inbox") == []
    archive = Path(settings.IMPEX_ROOT) / acme.code / "archive"
    assert listing(archive) == sorted(p.name for p in BSPK_DEMO)
    for path in BSPK_DEMO:
        assert (archive / path.name).read_bytes() == path.read_bytes()
    assert ImportedFileName.objects.filter(connection=acme).count() == len(BSPK_DEMO)
    assert ImportFile.objects.filter(connection=acme).count() == len(BSPK_DEMO)
    assert SpecialOrder.objects.count() == len(rows_of(BSPK_DEMO[-1]))

    # kore: the demo's Kore files in sequence order, archived on S3; the other integration's file in its error
    # folder on S3 with the reason beside it.
    assert kore_job.status == "failed", explain(cluster, kore.code)
    assert keys(s3_client, s3_bucket, "kore/inbox") == []
    assert keys(s3_client, s3_bucket, "kore/archive") == sorted(p.name for p in KORE_DEMO)
    for path in KORE_DEMO:
        assert s3_text(s3_client, s3_bucket, f"kore/archive/{path.name}") == path.read_bytes()
    assert keys(s3_client, s3_bucket, "kore/error") == [wrong, f"{wrong}.reason.txt"]
    assert b"INT9" in s3_text(s3_client, s3_bucket, f"kore/error/{wrong}.reason.txt")
    imported = ImportFile.objects.filter(connection=kore, status="imported")
    assert sorted(imported.values_list("name", flat=True)) == sorted(p.name for p in KORE_DEMO)
    assert ImportedFileName.objects.filter(connection=kore).count() == len(KORE_DEMO)
    assert list(ImportedFileName.objects.filter(connection=kore).order_by("pk").values_list("name", flat=True)) == [
        f.name for f in sorted(imported, key=lambda f: (f.sequence, f.descriptor.precedence))
    ]
    assert Customer.objects.count() == len(rows_of_tsv(KORE_DEMO[0]))
    newest = max(int(p.name.split("_")[1]) for p in KORE_DEMO)
    assert ConnectionState.objects.get(connection=kore).last_applied_sequence == newest == 6
    assert not Path(settings.IMPEX_ROOT, kore.code, "archive").exists()
    assert not Path(settings.IMPEX_ROOT, kore.code, "error").exists()


def rows_of_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# -- 3. two impex_scan processes at the same moment on one inbox ------------------------------------------------

FILES = {"local": 12, "s3": 25}  # per round: on S3 taking each file takes longer, the window is wider anyway
CUSTOMERS = 300
# The second scan starts this long after the first: the rounds sweep the moments at which it can meet the first
# one's work (Django starts in ~1 s, give or take a few hundred ms, so the moments overlap).
OFFSETS = (0.0, 0.1, 0.25, 0.5)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_impex_scans_started_together_import_each_file_once_in_sequence_order(where, env, tmp_path, request):
    if where == "s3":
        # On S3 each file is a request to copy and one to remove: the scan takes longer to fill its job.
        bucket, client = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_client")
        env = {**env, **s3_env(request.getfixturevalue("s3_server"))}
        conn, _ = connection_save(
            code="kore-erp", convention="kore", integration_id="INT1", inbox=f"s3://{bucket}/inbox"
        )

        def in_inbox() -> list[str]:
            return keys(client, bucket, "inbox")
    else:
        conn, _ = connection_save(code="kore-erp", convention="kore", integration_id="INT1")

        def in_inbox() -> list[str]:
            return listing(Path(settings.IMPEX_ROOT) / conn.code / "inbox")

    command = [sys.executable, "manage.py", "impex_scan", "--connection", conn.code, "--json"]
    files = FILES[where]
    quiet = timedelta(seconds=float(env["IMPEX_INBOX_QUIET_SECONDS"]))
    all_names: list[str] = []
    for round_, offset in enumerate(OFFSETS):
        # Every file sends every customer again with its sequence as the name, and one customer of its own.
        drop = tmp_path / f"round{round_}"
        drop.mkdir()
        for seq in range(round_ * files + 1, (round_ + 1) * files + 1):
            rows = [customer_row(f"C{n:04d}", first_name=f"seq {seq}") for n in range(CUSTOMERS)]
            rows.append(customer_row(f"N{seq:04d}", first_name=f"new in {seq}"))
            write_kore(drop, "KS_CUSTOMERS", seq, rows)
        names = sorted(os.listdir(drop))
        if where == "s3":
            for name in names:
                client.put_object(Bucket=bucket, Key=f"inbox/{name}", Body=(drop / name).read_bytes())
            # Settled at the first look: S3 gives no way to set an object's time (moto neither), so wait until its
            # own times say so (whole seconds: up to one second here), as the scan reads them.
            assert wait_for(lambda: s3_settled(client, bucket, "inbox", quiet), seconds=30, step=0.05)
        else:
            inbox = Path(settings.IMPEX_ROOT) / conn.code / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            past = time.time() - 60  # they have sat there a while: settled at the first look
            for name in names:
                os.utime(shutil.copyfile(drop / name, inbox / name), (past, past))
        all_names += names

        logs = [tmp_path / f"scan{round_}-{n}.log" for n in range(2)]
        outs = [open(log, "wb") for log in logs]
        try:
            scans = []
            for out, delay in zip(outs, (0.0, offset), strict=True):
                time.sleep(delay)
                scans.append(
                    subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
            codes = [scan.wait(timeout=300) for scan in scans]
        finally:
            for out in outs:
                out.close()

        texts = [log.read_text() for log in logs]
        detail = f"round {round_} (offset {offset} s)\n" + "\n\n".join(texts) + "\n" + explain(None, conn.code)
        assert codes == [0, 0], detail
        reported: dict[str, list[str]] = {}
        for text in texts:
            for entry in json.loads(text.strip().splitlines()[-1])["connections"]:
                for f in entry["files"]:
                    reported.setdefault(f["name"], []).append(f["status"])
        assert reported == {name: ["imported"] for name in names}, detail
        assert in_inbox() == []
        assert sorted(ImportFile.objects.filter(connection=conn).values_list("name", "status")) == [
            (n, "imported") for n in all_names
        ], detail
        ledger = list(ImportedFileName.objects.filter(connection=conn).order_by("pk").values_list("name", flat=True))
        assert ledger == all_names, detail  # each once, applied in sequence order
        last = (round_ + 1) * files
        assert set(Customer.objects.filter(customer_id__startswith="C").values_list("first_name", flat=True)) == {
            f"seq {last}"
        }
        assert Customer.objects.count() == CUSTOMERS + last
        assert ConnectionState.objects.get(connection=conn).last_applied_sequence == last

    assert listing(Path(settings.IMPEX_ROOT) / conn.code / "archive") == all_names
    assert sorted(InboxFile.objects.filter(connection=conn).values_list("name", "status")) == [
        (n, "taken") for n in all_names
    ]


# -- 4. the cluster killed in the middle of a big file ----------------------------------------------------------

BIG = 150_000  # at least IMPEX_WORKERS_MIN_ROWS (100,000): the import shares it with a helper process
CHUNK = 5_000


def write_big(folder: Path) -> Path:
    """Write a KS_CUSTOMERS file of BIG customers (without building them all as dicts first)."""
    path = folder / kore_name("KS_CUSTOMERS", 1)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(table_text([customer_row("X", first_name="x")], delimiter="\t").splitlines()[0] + "\n")
        for n in range(BIG):
            out.write(f"B{n:07d}\tb{n:07d}@example.com\tBig {n}\n")
    return path


def test_a_cluster_killed_in_the_middle_of_a_big_file_is_started_again_and_the_file_is_imported_once(cluster, tmp_path):
    conn, _ = connection_save(code="kore-erp", convention="kore", integration_id="INT1")
    inbox = Path(settings.IMPEX_ROOT) / conn.code / "inbox"
    inbox.mkdir(parents=True)
    big = write_big(tmp_path)
    size = big.stat().st_size
    shutil.move(big, inbox / big.name)
    # Leases as long as by default (60 s): the dead cluster's run out only when the test says so, below.
    fast = {"IMPEX_CHUNK_ROWS": CHUNK, "IMPEX_BATCH_SIZE": 1000}

    cluster.start(**fast)
    inbox_scan_start(connection=conn, by="test")  # "Sync now": the scan task, queued for the cluster

    def chunks_done():
        return ImportChunk.objects.filter(file__name=big.name, status="done").count() >= 3

    wait_for(chunks_done, step=0.02) or pytest.fail(explain(cluster, conn.code))
    cluster.kill()

    f = ImportFile.objects.get(name=big.name)
    job = f.job
    done = ImportChunk.objects.filter(file=f, status="done").count()
    assert (job.status, f.status) == ("running", "running"), "the file was finished before the kill: make it bigger"
    assert 0 < done < BIG // CHUNK
    assert listing(inbox) == []  # the scan had taken it
    # The dead worker's leases on the job and its chunks run out, as the clock of a machine past them sees them;
    # the requeue task runs every minute: make it due now rather than wait for its minute, and have the cluster
    # look at its schedules as it starts (config.test_settings).
    assert lapse(ImportJob.objects.filter(pk=job.pk)) == 1
    lapse(ImportChunk.objects.filter(file=f))  # the chunks it was working on (if any between two claims)
    assert Schedule.objects.filter(name=REQUEUE).update(next_run=timezone.now()) == 1

    cluster.start(**fast, Q_SCHEDULER_AT_START=1)
    (ended,) = wait_for(lambda: jobs_ended(conn.code, 1), seconds=3 * DEADLINE) or pytest.fail(
        explain(cluster, conn.code)
    )

    f.refresh_from_db()
    assert (ended.pk, ended.status, f.status) == (job.pk, "completed", "imported"), explain(cluster, conn.code)
    assert (f.created, f.failed, f.rows_done) == (BIG, 0, BIG)
    assert ImportFile.objects.filter(name=big.name).count() == 1
    assert ImportedFileName.objects.filter(connection=conn, name=big.name).count() == 1
    assert set(ImportChunk.objects.filter(file=f).values_list("status", flat=True)) == {"done"}
    assert sum(ImportChunk.objects.filter(file=f).values_list("rows_done", flat=True)) == BIG
    assert Customer.objects.count() == BIG
    assert Customer.objects.filter(customer_id=f"B{BIG - 1:07d}", first_name=f"Big {BIG - 1}").exists()
    assert {"takeover", "requeued"} & set(ended.events.values_list("kind", flat=True))
    assert listing(inbox) == []
    archive = Path(settings.IMPEX_ROOT) / conn.code / "archive"
    assert listing(archive) == [big.name]
    assert (archive / big.name).stat().st_size == size
    assert InboxFile.objects.filter(connection=conn).values_list("name", "status").get() == (big.name, "taken")


# -- 5. a scanner killed while it takes files ---------------------------------------------------------------------

TAKEN = 40


def test_a_scan_killed_while_taking_files_loses_none_the_next_scans_import_each_once(
    cluster, env, tmp_path, s3_bucket, s3_server, s3_client
):
    conn, _ = connection_save(code="kore-s3", convention="kore", integration_id="INT1", inbox=f"s3://{s3_bucket}/inbox")
    names = []
    for seq in range(1, TAKEN + 1):
        rows = [customer_row(f"C{n:03d}", first_name=f"seq {seq}") for n in range(50)]
        rows.append(customer_row(f"N{seq:03d}"))
        name = kore_name("KS_CUSTOMERS", seq)
        s3_client.put_object(Bucket=s3_bucket, Key=f"inbox/{name}", Body=table_text(rows, delimiter="\t").encode())
        names.append(name)
    fast = {**s3_env(s3_server), "IMPEX_INBOX_QUIET_SECONDS": 0}

    # The schedule's task, in a process of its own (as in a worker of the cluster), killed half-way through taking.
    log = tmp_path / "scan.log"
    with open(log, "wb") as out:
        scanner = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", f"from impex.tasks import inbox_scan; inbox_scan({conn.pk})"],
            cwd=settings.BASE_DIR,
            env={**env, **{k: str(v) for k, v in fast.items()}},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # The job exists from the moment the scanner has claimed files until it has queued the job.
            taking = wait_for(lambda: ImportJob.objects.filter(connection=conn).exists(), seconds=60, step=0.01)
        finally:
            scanner.kill()
            scanner.wait()
    assert taking, log.read_text()
    (job,) = ImportJob.objects.filter(connection=conn)
    assert job.queued_at is None and keys(s3_client, s3_bucket, "inbox"), (
        "the scan was not killed half-way: give it more files"
    )

    # The dead scanner's hold on the connection's scan (and on the files it claimed) runs out, as the clock of a
    # machine past it sees it (120 s by default: it would still hold it here).
    state = ConnectionState.objects.filter(connection=conn).exclude(scan_by="")
    assert state.update(scan_until=timezone.now() - LAPSED) == 1
    lapse(InboxFile.objects.filter(connection=conn, status="claimed"))

    cluster.start(**fast)
    inbox_scan_start(connection=conn, by="test")  # "Sync now"
    # The files taken before the kill go in with their job; the others wait for it, then the next scan takes them.
    wait_for(lambda: jobs_ended(conn.code, 1)) or pytest.fail(explain(cluster, conn.code))
    inbox_scan_start(connection=conn, by="test")

    def all_in():
        return ImportedFileName.objects.filter(connection=conn).count() == TAKEN and jobs_ended(conn.code, 2)

    wait_for(all_in) or pytest.fail(explain(cluster, conn.code))
    assert keys(s3_client, s3_bucket, "inbox") == []
    assert sorted(ImportFile.objects.filter(connection=conn).values_list("name", "status")) == [
        (n, "imported") for n in names
    ], explain(cluster, conn.code)
    ledger = list(ImportedFileName.objects.filter(connection=conn).order_by("pk").values_list("name", flat=True))
    assert ledger == names  # in sequence order
    assert listing(Path(settings.IMPEX_ROOT) / conn.code / "archive") == names
    assert set(Customer.objects.filter(customer_id__startswith="C").values_list("first_name", flat=True)) == {
        f"seq {TAKEN}"
    }
    assert Customer.objects.count() == 50 + TAKEN
