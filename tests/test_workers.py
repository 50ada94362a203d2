"""Jobs safe anywhere (issue 5): several worker processes on one job, one killed; racing imports; stuck locks.

These start real `manage.py` processes on the test database, so they need a database that several
processes share: they run on PostgreSQL (CI runs the suite on it).
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from datetime import time as clock
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from impex.models import (
    Connection,
    ConnectionState,
    DataGroup,
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
)
from impex.services.connections import connection_save
from impex.services.jobs import job_create
from impex.services.lifecycle import job_enqueue
from impex.services.sql import database_url
from impex.tests.helpers import aged, customer_row, inbox_of, lapse, process_env, run_import, write_kore
from syncapp.models import Customer
from tests.shop import shop_row, write_shop_file
from tests.test_patterns_convention import shop_descriptor

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

ROWS = 100_000
OLD = 20_000  # customers stored before the FULL file: the first half leave (retired), the second half stay


def manage(*args, env: dict, log):
    """Start a manage.py process."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *map(str, args)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, *, seconds: float, step: float = 0.05) -> bool:
    """Poll condition until it is true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def last_json(path) -> dict:
    """Return the JSON object a command printed last."""
    return json.loads(path.read_text().strip().splitlines()[-1])


def full_file_rows() -> list[dict]:
    """The FULL file: customers OLD/2 .. OLD/2+ROWS-1, some refused, three repeated, half the stored ones changed.

    Stored customers with an odd number are sent as stored (unchanged), even ones with a new name (updated).
    """
    rows = []
    for n in range(OLD // 2, OLD // 2 + ROWS):
        row = customer_row(f"C{n:07d}", first_name=f"First {n}", discount_percentage=f"{n % 40}.5")
        if n < OLD and n % 2:
            row["first_name"] = f"Stored {n}"  # the same as stored: unchanged
        if n % 25_000 == 7:
            row["email"] = ""  # refused: a required value is missing
        rows.append(row)
    rows += [customer_row(f"C{n:07d}", first_name="Repeated") for n in (OLD, OLD + 1, 75_000)]
    return rows


def expected_customers(rows) -> dict:
    """Return customer_id -> (email, first_name, discount, active) after one clean import of the FULL file."""
    state = {f"C{n:07d}": (f"c{n:07d}@example.com", f"Stored {n}", Decimal("0.500"), False) for n in range(OLD)}
    seen = set()
    for row in rows:
        key = row["customer_id"]
        if key in seen:
            continue  # a repeated key is refused; the first row stands
        seen.add(key)
        if not row["email"]:
            if key in state:
                state[key] = (*state[key][:3], True)  # sent, if badly: not retired, not changed
            continue
        state[key] = (row["email"], row["first_name"], Decimal(row["discount_percentage"]), True)
    return state


def stored_customers() -> dict:
    return {
        c.customer_id: (c.email, c.first_name, c.discount_percentage, c.active)
        for c in Customer.objects.only("customer_id", "email", "first_name", "discount_percentage", "active")
    }


def test_three_workers_on_one_job_with_one_killed_end_in_the_state_of_one_clean_run(tmp_path, kore_connection):
    Customer.objects.bulk_create(
        [
            Customer(
                customer_id=f"C{n:07d}",
                email=f"c{n:07d}@example.com",
                first_name=f"Stored {n}",
                discount_percentage=Decimal("0.5") if n < OLD // 2 or not n % 2 else Decimal(f"{n % 40}.5"),
                connection=kore_connection,
            )
            for n in range(OLD)
        ],
        batch_size=5000,
    )
    rows = full_file_rows()
    expected = expected_customers(rows)
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, rows, mode="FULL")
    job = job_create(paths=[path], connection=kore_connection)
    job_enqueue(job=job)
    env = process_env(IMPEX_CHUNK_ROWS=5000, IMPEX_LEASE_SECONDS=4, IMPEX_POLL_SECONDS=0.1)
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    handles = [open(log, "wb") for log in logs]
    workers = [manage("impex_job", job.pk, "--json", env=env, log=handle) for handle in handles]
    try:
        started = wait_for(lambda: ImportChunk.objects.filter(status="done").count() >= 8, seconds=240)
        assert started, "\n".join(log.read_text() for log in logs)
        runner = ImportJob.objects.get(pk=job.pk).claimed_by
        pid = int(runner.split(":")[1])
        killed = next(w for w in workers if w.pid == pid)
        killed.send_signal(signal.SIGKILL)  # the job's runner dies half-way
        survivors = [w for w in workers if w is not killed]
        for w in survivors:
            w.wait(timeout=600)
        killed.wait()
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for handle in handles:
            handle.close()

    outputs = [last_json(log) for w, log in zip(workers, logs, strict=True) if w is not killed]
    assert [w.returncode for w in survivors] == [0, 0], "\n".join(log.read_text() for log in logs)
    assert outputs[0] == outputs[1]
    (result,) = outputs[0]["files"]
    job.refresh_from_db()
    f = ImportFile.objects.get(job=job)
    bad = sum(1 for r in rows if not r["email"])  # all of them new customers
    assert (job.status, f.status) == ("completed", "imported")
    assert (result["created"], result["updated"], result["unchanged"], result["retired"], result["failed"]) == (
        ROWS - OLD // 2 - bad,
        OLD // 4,
        OLD // 4,
        OLD // 2,
        bad + 3,
    )
    assert (f.rows_total, f.rows_done) == (ROWS + 3, ROWS + 3)
    assert stored_customers() == expected
    # Imported once: one ledger entry, one "imported" event, every chunk done once, by more than one worker.
    assert ImportedFileName.objects.filter(connection=kore_connection, name=path.name).count() == 1
    assert ImportEvent.objects.filter(file=f, kind="imported").count() == 1
    chunks = ImportChunk.objects.filter(file=f)
    assert set(chunks.values_list("status", flat=True)) == {"done"}
    assert sum(chunks.values_list("rows_done", flat=True)) == ROWS + 3
    assert len(set(chunks.values_list("claimed_by", flat=True))) >= 2
    assert job.events.filter(kind="takeover").exists()


def test_two_imports_racing_on_copies_of_the_same_files_import_each_file_once(tmp_path, kore_connection):
    n = 20_000
    everyone = [customer_row(f"C{i:06d}", first_name="Full") for i in range(n)]
    net2 = [customer_row(f"C{i:06d}", first_name="Full", email=f"new{i}@example.com") for i in range(0, n, 4)]
    net3 = [customer_row(f"C{i:06d}", first_name="Three") for i in range(1, n, 4)]
    folders = []
    for copy in ("a", "b"):
        folder = tmp_path / copy
        folder.mkdir()
        write_kore(folder, "KS_CUSTOMERS", 1, everyone, mode="FULL")
        write_kore(folder, "KS_CUSTOMERS", 2, net2)
        write_kore(folder, "KS_CUSTOMERS", 3, net3)
        folders.append(folder)
    env = process_env(IMPEX_CHUNK_ROWS=2000)
    logs = [tmp_path / f"{copy}.log" for copy in ("a", "b")]
    handles = [open(log, "wb") for log in logs]
    runs = [
        manage("impex_import", *sorted(folder.iterdir()), "--json", env=env, log=handle)
        for folder, handle in zip(folders, handles, strict=True)
    ]
    for run in runs:
        run.wait(timeout=600)
    for handle in handles:
        handle.close()

    assert [r.returncode for r in runs] == [0, 0], "\n".join(log.read_text() for log in logs)
    statuses: dict[str, list[str]] = {}
    for log in logs:
        for f in last_json(log)["files"]:
            statuses.setdefault(f["name"], []).append(f["status"])
    assert {name: sorted(s) for name, s in statuses.items()} == {name: ["duplicate", "imported"] for name in statuses}
    assert len(statuses) == 3
    stored = {c.customer_id: (c.email, c.first_name, c.active) for c in Customer.objects.all()}
    expected = {}
    for i in range(n):
        email = f"new{i}@example.com" if i % 4 == 0 else f"c{i:06d}@example.com"
        expected[f"C{i:06d}"] = (email, "Three" if i % 4 == 1 else "Full", True)
    assert stored == expected
    assert ImportedFileName.objects.filter(connection=kore_connection).count() == 3


def test_an_import_stuck_behind_a_lock_errors_clearly_and_runs_again(tmp_path, kore_connection, settings):
    settings.IMPEX_LOCK_TIMEOUT_SECONDS = 1
    Customer.objects.create(customer_id="C1", email="c1@example.com", connection=kore_connection)
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="New"), customer_row("C2")])
    with psycopg.connect(database_url()) as other:
        other.execute("UPDATE syncapp_customer SET first_name = 'Editing' WHERE customer_id = 'C1'")

        code, report = run_import(path)

        job = ImportJob.objects.get()
        assert (code, job.status) == (1, "errored")
        assert "waited more than 1 s for a lock held by another database session" in job.error
        assert "run the job again" in job.error
        other.rollback()

    job, _ = job.__class__.objects.get(pk=job.pk), None
    out = subprocess.run(
        [sys.executable, "manage.py", "impex_job", str(job.pk), "--json"],
        cwd=settings.BASE_DIR,
        env=process_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["files"][0]["status"] == "imported"
    assert dict(Customer.objects.values_list("customer_id", "first_name")) == {"C1": "New", "C2": ""}


def test_a_job_queued_twice_and_run_by_two_workers_at_once_is_applied_once(tmp_path, kore_connection):
    rows = [customer_row(f"C{i:05d}") for i in range(30_000)]
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)], connection=kore_connection)
    env = process_env(IMPEX_CHUNK_ROWS=3000)
    code = f"from impex.tasks import import_job_run; print(import_job_run({job.pk}))"
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    job.refresh_from_db()
    f = job.files.get()
    assert (job.status, f.status, f.created, f.rows_done) == ("completed", "imported", 30_000, 30_000)
    assert job.events.filter(kind="started").count() == 1
    assert Customer.objects.count() == 30_000
    assert os.path.exists(settings.IMPEX_ROOT / "kore-erp" / "archive" / f.name)


def test_a_worker_stuck_in_its_chunk_holds_up_neither_other_chunks_nor_the_lease(tmp_path, kore_connection, settings):
    import threading

    from django.db import connection as db

    from impex.services.imports import FileImport
    from impex.services.jobs import file_match
    from impex.services.lifecycle import job_claim, job_lease_renew

    settings.IMPEX_CHUNK_ROWS = 3
    rows = [customer_row(f"C{n}") for n in range(6)]
    Customer.objects.create(customer_id="C0", email="old@example.com", connection=kore_connection)
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)], connection=kore_connection)
    job, _ = job_claim(job_id=job.pk, worker="runner")
    f = job.files.get()
    file_match(f, group=None)
    f.refresh_from_db()
    assert FileImport(f, worker="runner", job_id=job.pk).start()
    stuck = FileImport(ImportFile.objects.get(pk=f.pk), worker="stuck", job_id=job.pk)
    first = stuck.chunk_claim()
    outcome = {}

    def apply_stuck():
        try:
            outcome["applied"] = stuck.chunk_apply(first)
        finally:
            stuck.close()
            db.close()

    with psycopg.connect(database_url()) as other:
        other.execute("UPDATE syncapp_customer SET first_name = 'Editing' WHERE customer_id = 'C0'")
        thread = threading.Thread(target=apply_stuck)
        thread.start()

        def stuck_waits() -> bool:
            with db.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                return cursor.fetchone()[0] == 1

        assert wait_for(stuck_waits, seconds=30)

        # The first chunk's worker waits inside its transaction; the rest of the job goes on.
        helper = FileImport(ImportFile.objects.get(pk=f.pk), worker="helper", job_id=job.pk)
        second = helper.chunk_claim()
        assert second is not None and second != first
        assert helper.chunk_apply(second) is True
        assert job_lease_renew(job_id=job.pk, worker="runner", progress=True) is True
        helper.close()
        other.rollback()
    thread.join(timeout=60)

    assert outcome == {"applied": True}
    assert ImportChunk.objects.filter(file=f, status="done").count() == 2


def helpers_of(pid: int) -> list[int]:
    """Return the processes started with `--helper-of pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    args = cmdline.read().split(b"\0")
            except OSError:
                continue
            if b"--helper-of" in args and args[args.index(b"--helper-of") + 1] == str(pid).encode():
                found.append(int(entry))
    return found


def test_impex_import_shares_a_big_files_chunks_with_helper_processes(tmp_path, kore_connection):
    # Enough chunks (80) that the helper processes have started (a Django start-up each) before the runner alone
    # has applied them all, even on a busy machine.
    rows = [customer_row(f"C{n:05d}", first_name=f"N{n}") for n in range(80_000)]
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)
    env = process_env(IMPEX_WORKERS=3, IMPEX_WORKERS_MIN_ROWS=1000, IMPEX_CHUNK_ROWS=1000, IMPEX_POLL_SECONDS=0.1)

    out = subprocess.run(
        [sys.executable, "manage.py", "impex_import", str(path), "--json"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )

    assert out.returncode == 0, out.stdout + out.stderr
    (result,) = json.loads(out.stdout.strip().splitlines()[-1])["files"]
    assert (result["status"], result["created"], result["failed"]) == ("imported", 80_000, 0)
    job = ImportJob.objects.get()
    assert job.events.filter(kind="note", message__contains="2 more helper processes share its chunks").exists()
    assert len(set(ImportChunk.objects.filter(file__job=job).values_list("claimed_by", flat=True))) >= 2
    assert dict(Customer.objects.values_list("customer_id", "first_name")) == {
        r["customer_id"]: r["first_name"] for r in rows
    }


def test_helper_processes_stop_with_the_import_that_started_them(tmp_path, kore_connection):
    rows = [customer_row(f"C{n:06d}") for n in range(60_000)]
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)
    env = process_env(IMPEX_WORKERS=3, IMPEX_WORKERS_MIN_ROWS=1000, IMPEX_CHUNK_ROWS=500, IMPEX_POLL_SECONDS=0.1)
    log = tmp_path / "import.log"
    with open(log, "wb") as output:
        command = manage("impex_import", path, "--json", env=env, log=output)
        try:
            started = wait_for(lambda: len(helpers_of(command.pid)) == 2, seconds=120)
            assert started, log.read_text()
            assert wait_for(lambda: ImportChunk.objects.filter(status="done").count() >= 4, seconds=120)
        finally:
            command.send_signal(signal.SIGKILL)
            command.wait()

    assert wait_for(lambda: not helpers_of(command.pid), seconds=60)
    job = ImportJob.objects.get()
    assert job.status == "running"  # killed half-way: left for a worker to resume, not finished by orphans
    assert ImportChunk.objects.exclude(status="done").exists()
    # The killed processes' leases (60 s by default) run out, as a machine whose clock is past them sees them.
    assert lapse(ImportJob.objects.filter(pk=job.pk)) == 1
    lapse(ImportChunk.objects.filter(file__job=job))
    resumed = subprocess.run(
        [sys.executable, "manage.py", "impex_job", str(job.pk), "--json"],
        cwd=settings.BASE_DIR,
        env=process_env(IMPEX_LEASE_SECONDS=2, IMPEX_WORKERS=1),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    job.refresh_from_db()
    f = job.files.get()
    assert (job.status, f.status, f.created, f.rows_done) == ("completed", "imported", 60_000, 60_000)
    assert Customer.objects.count() == 60_000


# -- a FULL file taken over from a waiting job, its worker killed half-way (issue 16, R1) --------------------------

FULL_ROWS = 100_000
KEPT = 2_000  # customers stored before: the FULL file does not have them, so it retires them


def full_waits_then_next_job_queued(tmp_path, connection) -> tuple[ImportFile, Path]:
    """Sequence 61, a FULL file, arrives outside the full-refresh window and waits in job 1; the window then opens.

    Return the waiting FULL file and the next file (sequence 62), not imported yet.
    """
    Customer.objects.bulk_create(
        [Customer(customer_id=f"K{n:05d}", email=f"k{n:05d}@example.com", connection=connection) for n in range(KEPT)]
    )
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 60, [customer_row("C60")]))[0] == 0
    hour = datetime.now(UTC).hour
    Connection.objects.filter(pk=connection.pk).update(
        timezone="UTC", full_window_start=clock((hour + 2) % 24), full_window_end=clock((hour + 3) % 24)
    )
    rows = [customer_row(f"F{n:06d}") for n in range(FULL_ROWS)]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 61, rows, mode="FULL"))
    assert (code, report["files"][0]["status"]) == (1, "waiting")
    Connection.objects.filter(pk=connection.pk).update(full_window_start=None, full_window_end=None)
    net = write_kore(tmp_path, "KS_CUSTOMERS", 62, [customer_row("F000000", first_name="Sixty-two")])
    return ImportFile.objects.get(mode="FULL"), net


def run_manage(*args, env: dict) -> subprocess.CompletedProcess:
    """Run a manage.py command to its end; return what it did and printed."""
    return subprocess.run(
        [sys.executable, "manage.py", *map(str, args)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def killed_half_way(full: ImportFile, job: ImportJob) -> None:
    """Check that the worker was killed in the middle of the FULL file it had taken up for job."""
    full.refresh_from_db()
    assert (full.status, full.processed_by_id, full.job_id != job.pk) == ("running", job.pk, True)
    done = ImportChunk.objects.filter(file=full, status="done").count()
    assert 0 < done < FULL_ROWS // 2000, "the file was finished before the kill: make it bigger"


def lapse_dead_worker(full: ImportFile, job: ImportJob) -> None:
    """End the killed worker's leases on the job and the FULL file's chunks (60 s by default), as a machine whose
    clock is past them sees them, rather than wait for them."""
    assert lapse(ImportJob.objects.filter(pk=job.pk)) == 1
    lapse(ImportChunk.objects.filter(file=full))


def imported_once(full: ImportFile, job: ImportJob, connection, folder: Path) -> None:
    """The FULL file went in once (created, retired, every chunk once), then sequence 62; later files go on."""
    full.refresh_from_db()
    job.refresh_from_db()
    assert (job.status, job.error) == ("completed", "")
    assert (full.status, full.created, full.retired, full.failed) == ("imported", FULL_ROWS, KEPT + 1, 0)
    chunks = ImportChunk.objects.filter(file=full)
    assert set(chunks.values_list("status", flat=True)) == {"done"}
    assert sum(chunks.values_list("rows_done", flat=True)) == FULL_ROWS
    assert ImportEvent.objects.filter(file=full, kind="imported").count() == 1
    assert ImportedFileName.objects.filter(connection=connection, name=full.name).count() == 1
    assert Customer.objects.filter(active=True).count() == FULL_ROWS
    assert not Customer.objects.filter(customer_id__startswith="K", active=True).exists()
    assert Customer.objects.get(customer_id="C60").active is False
    assert Customer.objects.get(customer_id="F000000").first_name == "Sixty-two"
    assert ConnectionState.objects.get(connection=connection).last_applied_sequence == 62
    assert os.path.exists(settings.IMPEX_ROOT / connection.code / "archive" / full.name)
    code, report = run_import(write_kore(folder, "KS_CUSTOMERS", 63, [customer_row("C63")]))
    assert (code, report["files"][0]["status"]) == (0, "imported")


def test_impex_job_killed_mid_full_file_taken_over_from_a_waiting_job_imports_it_once_when_run_again(
    tmp_path, kore_connection
):
    full, net = full_waits_then_next_job_queued(tmp_path, kore_connection)
    env = process_env(IMPEX_CHUNK_ROWS=2000, IMPEX_POLL_SECONDS=0.1, IMPEX_WORKERS=1)
    queued = run_manage("impex_import", net, "--queue", "--json", env=env)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    job = ImportJob.objects.get(pk=json.loads(queued.stdout.strip().splitlines()[-1])["job"])
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        first = manage("impex_job", job.pk, "--json", env=env, log=out)
        try:
            started = wait_for(lambda: ImportChunk.objects.filter(file=full, status="done").count() >= 5, seconds=240)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
    assert started, log.read_text()
    killed_half_way(full, job)
    lapse_dead_worker(full, job)

    again = run_manage("impex_job", job.pk, "--json", env=env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Job #{job.pk}: completed" in again.stdout
    statuses = {f["name"]: f["status"] for f in json.loads(again.stdout.strip().splitlines()[-1])["files"]}
    assert statuses == {full.name: "imported", net.name: "imported"}
    imported_once(full, job, kore_connection, tmp_path)


def test_a_cluster_killed_mid_full_file_taken_over_from_a_waiting_job_resumes_it_through_the_sweeper(
    tmp_path, kore_connection
):
    from django_q.models import Schedule

    from impex.services.schedules import schedules_sync
    from tests.test_inbox_scan_e2e import REQUEUE, Cluster

    Connection.objects.filter(pk=kore_connection.pk).update(scan_enabled=False)  # no scan to release the wait
    schedules_sync()
    full, net = full_waits_then_next_job_queued(tmp_path, kore_connection)
    job = job_create(paths=[net], connection=kore_connection)
    job_enqueue(job=job)  # committed at once: handed to the cluster's broker
    cluster = Cluster(process_env(Q_WORKERS=2, PYTHONUNBUFFERED=1, IMPEX_POLL_SECONDS=0.2), tmp_path / "qcluster.log")
    fast = {"IMPEX_CHUNK_ROWS": 2000, "IMPEX_WORKERS": 1}
    try:
        cluster.start(**fast)
        started = wait_for(lambda: ImportChunk.objects.filter(file=full, status="done").count() >= 5, seconds=240)
        cluster.kill()
        assert started, cluster.output()[-6000:]
        killed_half_way(full, job)
        lapse_dead_worker(full, job)
        # The sweeper's schedule runs every minute: make it due now rather than wait for its minute, and have the
        # cluster look at its schedules as it starts (config.test_settings) rather than 30 s later.
        assert Schedule.objects.filter(name=REQUEUE).update(next_run=timezone.now()) == 1

        cluster.start(**fast, Q_SCHEDULER_AT_START=1)
        ended = wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status in ("completed", "failed", "errored"), seconds=360
        )
    finally:
        cluster.kill()

    assert ended, cluster.output()[-6000:]
    imported_once(full, job, kore_connection, tmp_path)
    assert job.events.filter(kind="requeued", message__contains="ran out").exists()


# -- a patterns connection's names are imported once, whatever runs at once ---------------------------------------

SHOP_ROWS = 3000


@pytest.fixture
def shop(builtin_installed):
    """A shop platform: a patterns connection whose import group holds its customers layout."""
    group = DataGroup.objects.create(code="shop-import", name="Shop platform", direction="import")
    group.descriptors.add(shop_descriptor())
    conn, _ = connection_save(code="shop", convention="patterns", groups=["shop-import"])
    return conn


def shop_files(folder) -> list[Path]:
    """Three exports: everyone, then two that change some of them (the names carry no order: they arrive so)."""
    folder.mkdir(parents=True, exist_ok=True)
    people = range(SHOP_ROWS)
    return [
        write_shop_file(folder, f"customers_export_{n}.csv", [shop_row(first, "P", f"p{i}@example.com") for i in ids])
        for n, first, ids in ((1, "First", people), (2, "Second", people[0::3]), (3, "Third", people[1::3]))
    ]


def shop_first_names() -> dict:
    return {f"p{i}@example.com": ("Second", "Third", "First")[i % 3] for i in range(SHOP_ROWS)}


def run_at_once(commands: list[tuple], tmp_path) -> list[tuple[int, dict, str]]:
    """Start manage.py commands at once; return each one's exit code, last JSON line and output once all ended."""
    logs = [tmp_path / f"run-{n}.log" for n in range(len(commands))]
    handles = [open(log, "wb") for log in logs]
    runs = [manage(*command, env=process_env(), log=handle) for command, handle in zip(commands, handles, strict=True)]
    for run in runs:
        run.wait(timeout=600)
    for handle in handles:
        handle.close()
    return [(run.returncode, last_json(log), log.read_text()) for run, log in zip(runs, logs, strict=True)]


def test_two_imports_racing_on_copies_of_the_same_shop_files_import_each_name_once(shop, tmp_path):
    commands = [("impex_import", *shop_files(tmp_path / c), "--connection", "shop", "--json") for c in ("a", "b")]

    results = run_at_once(commands, tmp_path)

    assert [code for code, _, _ in results] == [0, 0], "\n".join(text for _, _, text in results)
    statuses: dict[str, list[str]] = {}
    for _, report, _ in results:
        for f in report["files"]:
            statuses.setdefault(f["name"], []).append(f["status"])
    assert {name: sorted(s) for name, s in statuses.items()} == {
        f"customers_export_{n}.csv": ["duplicate", "imported"] for n in (1, 2, 3)
    }
    assert dict(Customer.objects.values_list("email", "first_name")) == shop_first_names()
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}
    assert ImportedFileName.objects.filter(connection=shop).count() == 3


def test_two_scans_of_a_patterns_inbox_at_once_take_and_import_each_file_once(shop, tmp_path):
    for path in shop_files(inbox_of(shop)):
        aged(path)

    results = run_at_once([("impex_scan", "--connection", "shop", "--json")] * 2, tmp_path)

    assert [code for code, _, _ in results] == [0, 0], "\n".join(text for _, _, text in results)
    imported = ImportFile.objects.filter(connection=shop, status="imported")
    assert sorted(imported.values_list("name", flat=True)) == [f"customers_export_{n}.csv" for n in (1, 2, 3)]
    assert not ImportFile.objects.filter(connection=shop).exclude(status="imported").exists()
    assert dict(Customer.objects.values_list("email", "first_name")) == shop_first_names()
