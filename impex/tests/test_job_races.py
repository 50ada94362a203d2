"""Races and interruptions around a job's small files (issue 18's review): what a job remembers of the connection it
holds, the job's caches of subscriptions and open sync errors, the copies it puts away at its end, and the
statement batches (WriteBatch) and session bounds a job uses. A race is injected at one point by wrapping a step."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from impex import runner
from impex.models import ImportFile, ImportJob, WebhookSubscription
from impex.runner import run_job
from impex.services.jobs import job_create
from impex.services.lifecycle import lease_end
from impex.storage import file_exists, hub_storage
from impex.tests.helpers import bspk_name, customer_row, special_order_row, table_text, write_kore, write_raw
from syncapp import services as sync
from syncapp.models import Customer, SpecialOrder


def special_orders(folder: Path, timestamp: str, status: str, *, so: str = "SO-1", name_ts: str | None = None) -> Path:
    rows = [special_order_row(so, status=status)]
    folder.mkdir(parents=True, exist_ok=True)
    return write_raw(folder, bspk_name("SPECIAL-ORDERS", name_ts or timestamp), table_text(rows, delimiter=","))


def hook_before_nth_file(monkeypatch, job_id: int, n: int, action):
    """Run action() just before the job's n-th call of process() (1-based)."""
    real = runner._JobRun.process
    seen = {"n": 0}

    def process(self, f):
        if self.job.pk == job_id:
            seen["n"] += 1
            if seen["n"] == n:
                action()
        return real(self, f)

    monkeypatch.setattr(runner._JobRun, "process", process)


# A job whose lease (hence its connection's hold) ran out while it stalled does not go on with what it remembered:
# its file is rolled back, it waits for the connection again and judges the file on what is there now.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_stale_gate_after_hold_lost_applies_older_bspk_over_newer(tmp_path, bspk_connection, monkeypatch):
    a1 = special_orders(tmp_path / "a", "202611011000", "OPEN", so="SO-1")
    a2 = special_orders(tmp_path / "a", "202611011030", "OPEN", so="SO-2")
    b1 = special_orders(tmp_path / "b", "202611011100", "READY", so="SO-2")
    job_a = job_create(paths=[a1, a2], connection=bspk_connection)
    job_b = job_create(paths=[b1], connection=bspk_connection)

    def stall():
        # A stalled past its lease: its hold is free; B takes the connection and imports a newer file.
        ImportJob.objects.filter(pk=job_a.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        done = run_job(job_b.pk, worker="worker-b")
        assert done.status == "completed", done.error
        # A wakes up: its heartbeat renews its own lease (nobody requeued the job meanwhile).
        ImportJob.objects.filter(pk=job_a.pk).update(lease_until=lease_end())

    hook_before_nth_file(monkeypatch, job_a.pk, 2, stall)
    run_job(job_a.pk, worker="worker-a")

    late = ImportFile.objects.get(job=job_a, name=a2.name)
    assert late.status == "rejected", (late.status, late.message)
    assert SpecialOrder.objects.get(special_order_id="SO-2").status == "READY"


# The same, with a file of the same name and other content imported by the other job meanwhile (the ledger).
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_stale_ledger_after_hold_lost_imports_a_name_twice(tmp_path, bspk_connection, monkeypatch):
    a1 = special_orders(tmp_path / "a", "202611011000", "OPEN", so="SO-1")
    a2 = special_orders(tmp_path / "a", "202611011030", "OPEN", so="SO-2")
    b1 = special_orders(tmp_path / "b", "202611011030", "READY", so="SO-2")  # same name, other content
    job_a = job_create(paths=[a1, a2], connection=bspk_connection)
    job_b = job_create(paths=[b1], connection=bspk_connection)

    def stall():
        ImportJob.objects.filter(pk=job_a.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        assert run_job(job_b.pk, worker="worker-b").status == "completed"
        ImportJob.objects.filter(pk=job_a.pk).update(lease_until=lease_end())

    hook_before_nth_file(monkeypatch, job_a.pk, 2, stall)
    run_job(job_a.pk, worker="worker-a")
    statuses = list(ImportFile.objects.filter(name=a2.name).values_list("job_id", "status"))
    assert sorted(s for _, s in statuses) != ["imported", "imported"], statuses


# A file that believes the sync log has no open errors (read up to 2 s ago) still resolves one opened meanwhile
# for a record it applies.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_open_error_opened_meanwhile_is_resolved_by_a_file_that_applies_the_record(
    tmp_path, kore_connection, monkeypatch
):
    f1 = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    f2 = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")])
    job = job_create(paths=[f1, f2], connection=kore_connection)

    def other_session():
        # A single-record update of C2 failed a moment ago (the API's pass): an open error for C2.
        sync.sync_log_add_errors(
            connection=kore_connection, entity="customer", errors={"C2": ("refused: bad email", None)}
        )

    hook_before_nth_file(monkeypatch, job.pk, 2, other_session)
    done = run_job(job.pk, worker="w")
    assert done.status == "completed", done.error
    assert Customer.objects.filter(customer_id="C2").exists()
    still_open = sync.sync_log_has_errors(connection=kore_connection, entity="customer")
    assert not still_open


# A subscription deleted while a job runs gets no delivery row (which would fail the next file's commit).
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_subscription_deleted_mid_job_does_not_break_the_next_file(tmp_path, kore_connection, monkeypatch):
    sub = WebhookSubscription.objects.create(
        code="crm", url="http://127.0.0.1:9/hook", events=["customer.created", "file.imported"], secret="k"
    )
    f1 = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    f2 = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")])
    job = job_create(paths=[f1, f2], connection=kore_connection)
    hook_before_nth_file(monkeypatch, job.pk, 2, lambda: WebhookSubscription.objects.filter(pk=sub.pk).delete())
    done = run_job(job.pk, worker="w")
    assert done.status == "completed", done.error


# Putting copies away stopped half-way: every imported file's path still names a copy that is there.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_put_away_interrupted_keeps_paths_of_moved_files(tmp_path, kore_connection, monkeypatch):
    paths = [write_kore(tmp_path, "KS_CUSTOMERS", n, [customer_row(f"C{n}")]) for n in range(1, 6)]
    job = job_create(paths=paths, connection=kore_connection)
    real = runner.rows_update
    calls = {"n": 0}

    def flaky(model, *, values, fields, same=None):
        if fields == ["path"] and values:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the database went away (or: SIGKILL here)")
        return real(model, values=values, fields=fields, same=same)

    monkeypatch.setattr(runner, "rows_update", flaky)
    done = run_job(job.pk, worker="w")
    hub = hub_storage()
    lost = []
    for f in ImportFile.objects.filter(job=job, kind="data"):
        if f.status == "imported" and (not f.path or not file_exists(hub, f.path)):
            lost.append(f.name)
    # A rerun of the job does not find them either.
    if done.status == "errored":
        monkeypatch.setattr(runner, "rows_update", real)
        run_job(job.pk, worker="w2", rerun=True)
        lost = [
            f.name
            for f in ImportFile.objects.filter(job=job, kind="data", status="imported")
            if not f.path or not file_exists(hub, f.path)
        ]
    assert not lost, f"imported files whose stored copy the hub lost track of: {lost}"


# WriteBatch: the row count of each statement reaches its then=.
@pytest.mark.django_db(transaction=True)
def test_writebatch_counts(kore_connection, bspk_connection):
    from impex.models import Connection
    from impex.services.sql import WriteBatch

    got = []
    with transaction.atomic():
        with WriteBatch() as w:
            w.update(Connection.objects.filter(pk=-1), {"name": "x"}, then=lambda c: got.append(("none", c)))
            w.update(Connection.objects.all(), {"name": "100% y"}, then=lambda c: got.append(("all", c)))
            w.update(
                Connection.objects.filter(name__contains="%"), {"name": "z"}, then=lambda c: got.append(("pct", c))
            )
            w.update(
                Connection.objects.filter(pk=kore_connection.pk), {"name": "k"}, then=lambda c: got.append(("one", c))
            )
    assert got == [("none", 0), ("all", 2), ("pct", 2), ("one", 1)]


KILLER = r"""
import os, signal, sys
import django
django.setup()
from impex import runner
real = runner.rows_update
def killing(model, *, values, fields, same=None):
    if fields == ["path"] and values:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies between the moves and the UPDATE of their paths
    return real(model, values=values, fields=fields, same=same)
runner.rows_update = killing
from django.core.management import call_command
call_command("impex_import", *sys.argv[1:])
"""


# The same with a real SIGKILL of the worker while it puts copies away, then the job taken over.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_sigkill_during_put_away_then_takeover(tmp_path, kore_connection):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database shared between processes (runs on PostgreSQL)")
    import subprocess
    import sys

    from impex.tests.helpers import process_env

    paths = [write_kore(tmp_path, "KS_CUSTOMERS", n, [customer_row(f"C{n}")]) for n in range(1, 6)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *map(str, paths), "--connection", kore_connection.code],
        env=process_env(DJANGO_SETTINGS_MODULE="config.settings"),
        cwd=str(Path(__file__).resolve().parents[2]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    job = ImportJob.objects.get()
    assert ImportFile.objects.filter(job=job, status="imported").count() == 5
    ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert run_job(job.pk, worker="taker").status == "completed"
    hub = hub_storage()
    rows = list(ImportFile.objects.filter(job=job, kind="data").values_list("name", "path"))
    lost = [name for name, path in rows if not path or not file_exists(hub, path)]
    assert not lost, f"imported files whose stored copy the hub lost track of: {lost}"


# A zip entry's copy in the hub gets the mode of every other copy.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_zip_entry_copies_have_the_same_mode_as_file_copies(tmp_path, kore_connection, settings):
    import os
    import stat
    import zipfile

    settings.FILE_UPLOAD_PERMISSIONS = None
    plain = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("ERP_0000002_INT1_KS_CUSTOMERS.NET", table_text([customer_row("C2")], delimiter="\t"))
    job = job_create(paths=[plain, z], connection=kore_connection)
    hub = hub_storage()
    from impex.services.jobs import archive_unpack

    archive = ImportFile.objects.get(job=job, kind="archive")
    archive_unpack(archive, job=job)
    modes = {
        f.name: oct(stat.S_IMODE(os.stat(hub.storage.path(f.path)).st_mode))
        for f in ImportFile.objects.filter(job=job, kind="data")
    }
    assert len(set(modes.values())) == 1, modes


# A file finished by another job while this one waited for the hold is not taken up again.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_file_finished_elsewhere_before_the_hold_is_not_taken_up(tmp_path, kore_connection, monkeypatch):
    from impex.models import ImportEvent

    f1 = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    f2 = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")])
    job = job_create(paths=[f1, f2], connection=kore_connection)
    other = ImportJob.objects.create(connection=kore_connection, status="completed")
    real_hold = runner._JobRun.hold

    def hold(self, connection):
        # While this job waited for the connection, the job holding it imported the second file (as its
        # release_waiting does with a file that waited), and finished.
        ImportFile.objects.filter(job=job, name=f2.name).update(status="imported", processed_by=other)
        return real_hold(self, connection)

    monkeypatch.setattr(runner._JobRun, "hold", hold)
    run_job(job.pk, worker="w")
    second = ImportFile.objects.get(job=job, name=f2.name)
    assert second.processed_by_id == other.pk
    assert not ImportEvent.objects.filter(file=second, kind__in=["taken-up", "running", "imported"]).exists()


# statements_guarded: the session's bounds reset after an error, and nesting does not reset them early.
@pytest.mark.django_db(transaction=True)
def test_statements_guarded_resets():
    from impex.services.sql import is_postgres, statements_guarded

    if not is_postgres():
        pytest.skip("PostgreSQL only")

    def show():
        with connection.cursor() as c:
            c.execute("SHOW lock_timeout")
            a = c.fetchone()[0]
            c.execute("SHOW statement_timeout")
            return a, c.fetchone()[0]

    base = show()
    with pytest.raises(ZeroDivisionError):
        with statements_guarded():
            with statements_guarded():
                inside = show()
            assert show() == inside
            raise ZeroDivisionError
    assert show() == base and inside != base
    # The connection broken by a statement timeout inside (a failed transaction) still resets.
    with statements_guarded():
        try:
            with transaction.atomic():
                with connection.cursor() as c:
                    c.execute("SET LOCAL statement_timeout = '10ms'; SELECT pg_sleep(0.2)")
        except DatabaseError:
            pass  # cancelled by the statement timeout
    assert show() == base


@pytest.mark.django_db(transaction=True)
def test_writebatch_percent_and_no_params(kore_connection, bspk_connection):
    from django.db.models import F

    from impex.models import Connection
    from impex.services.sql import WriteBatch

    got = []
    Connection.objects.filter(pk=kore_connection.pk).update(name="kore-erp and more")
    with transaction.atomic():
        with WriteBatch() as w:
            w.update(
                Connection.objects.filter(name__startswith=F("code")), {"company_name": F("code")}, then=got.append
            )
            w.update(Connection.objects.all(), {"name": F("code")}, then=got.append)
    assert got == [1, 2]
