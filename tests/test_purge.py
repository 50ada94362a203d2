"""impex_purge (SPEC 9): the history older than the retention goes, batch by batch, with its stored copies; what is
still at work, the ledger of imported names and an open problem's evidence stay."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from impex.models import (
    DataGroup,
    ExportRun,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    InboxFile,
    Problem,
    RowError,
    SentFile,
    WebhookDelivery,
    WebhookSubscription,
)
from impex.runner import reason_file_name
from impex.services.jobs import job_create
from impex.services.lifecycle import job_cancel
from impex.services.problems import problem_raise, problem_resolve
from impex.services.schedules import schedules_sync
from impex.storage import file_exists, hub_storage, resolve_path, save_file
from impex.tests.helpers import customer_row, process_env, run_import, write_kore, write_raw
from syncapp.models import RecordEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("builtin_installed")]

OLD = timedelta(days=100)


def purge(*args) -> tuple[int, dict]:
    out = io.StringIO()
    code = 0
    try:
        call_command("impex_purge", *args, "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def age(job: ImportJob, by: timedelta = OLD) -> None:
    """Make a job and its files look as if they ended that long ago."""
    then = timezone.now() - by
    ImportJob.objects.filter(pk=job.pk).update(created_at=then, finished_at=then)
    ImportFile.objects.filter(job=job).update(finished_at=then)


def stored(path: str) -> bool:
    return file_exists(*resolve_path(path))


def imported(tmp_path, connection, sequence: int, rows: list[dict], *, folder: str = "") -> ImportJob:
    where = tmp_path / (folder or f"s{sequence}")
    where.mkdir(exist_ok=True)
    run_import(write_kore(where, "KS_CUSTOMERS", sequence, rows), connection=connection.code)
    return ImportJob.objects.latest("pk")


def refused(tmp_path, connection, name: str) -> ImportJob:
    """A job whose one file is rejected (its name does not parse): it fails, and raises a problem."""
    run_import(write_raw(tmp_path, name, "customer_id\temail\n"), connection=connection.code)
    return ImportJob.objects.latest("pk")


@pytest.fixture
def history(tmp_path, kore_connection):
    """Old jobs to purge and old jobs to keep, with row errors, events, archived and rejected copies."""
    conn = kore_connection
    h = {}
    h["old"] = imported(tmp_path, conn, 1, [customer_row("C1"), customer_row("C2", email="")])
    h["rejected"] = refused(tmp_path, conn, "bad-name-1.NET")
    problem_resolve(key=f"job:{h['rejected'].pk}", by="ops")
    h["evidence"] = refused(tmp_path, conn, "bad-name-2.NET")  # its problem is open
    h["waiting"] = imported(tmp_path, conn, 3, [customer_row("C5")])  # waits for sequence 2
    h["cancelled"] = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 6, [customer_row("C6")])], connection=conn)
    job_cancel(job_id=h["cancelled"].pk, by="ops")
    for job in h.values():
        age(job)
    h["recent"] = imported(tmp_path, conn, 2, [customer_row("C7")], folder="recent")  # the sequence 3 goes in too
    age(h["recent"], timedelta(days=10))
    # (The clean jobs since resolved the connection's job problems: the evidence job's is open again.)
    problem_raise(kind="import-job", key=f"job:{h['evidence'].pk}", connection=conn, message="failed")
    return h


def test_old_jobs_go_with_their_rows_and_copies_and_the_rest_stays(history, kore_connection):
    old, rejected = history["old"], history["rejected"]
    assert ImportJob.objects.get(pk=old.pk).status == "completed"
    old_file = ImportFile.objects.get(job=old)
    rejected_file = ImportFile.objects.get(job=rejected)
    assert rejected_file.status == "rejected"
    assert RowError.objects.filter(file=old_file).count() == 1
    copies = [old_file.path, rejected_file.path, reason_file_name(rejected_file.path)]
    assert all(stored(path) for path in copies)

    code, result = purge()

    assert code == 0, result
    gone = {old.pk, rejected.pk}
    assert not ImportJob.objects.filter(pk__in=gone).exists()
    assert set(ImportJob.objects.values_list("pk", flat=True)) == {
        history[name].pk for name in ("evidence", "waiting", "cancelled", "recent")
    }
    assert not ImportFile.objects.filter(job__in=gone).exists()
    assert not RowError.objects.filter(file_id__in=[old_file.pk, rejected_file.pk]).exists()
    assert not ImportEvent.objects.filter(job_id__in=gone).exists()
    assert not any(stored(path) for path in copies)
    assert result["removed"]["jobs"] == 2 and result["removed"]["files"] == 2
    assert result["removed"]["row_errors"] == 2  # the refused row, and the rejected file's reason
    assert result["removed"]["stored_copies"] == 2
    # The kept: the open problem's evidence with its copy, the waiting file, the cancelled job's queued file.
    evidence = ImportFile.objects.get(job=history["evidence"])
    assert evidence.status == "rejected" and stored(evidence.path) and evidence.errors.exists()
    assert ImportFile.objects.get(job=history["waiting"]).status == "imported"  # finished lately by a later job
    assert ImportFile.objects.get(job=history["waiting"]).processed_by_id == history["recent"].pk
    assert ImportFile.objects.get(job=history["cancelled"]).status == "queued"
    # The ledger still has the names: the same file again is a duplicate, other content a conflict.
    assert ImportedFileName.objects.filter(connection=kore_connection, name=old_file.name).exists()


def test_the_ledger_still_refuses_a_name_imported_before_the_purge(history, tmp_path, kore_connection):
    name = ImportFile.objects.get(job=history["old"]).name
    purge()
    assert not ImportFile.objects.filter(name=name).exists()

    again = tmp_path / "again"
    again.mkdir()
    same = write_kore(again, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email="")])
    code, result = run_import(same, connection=kore_connection.code)
    assert (code, result["files"][0]["status"]) == (0, "duplicate")
    other = tmp_path / "other"
    other.mkdir()
    changed = write_kore(other, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="New")])
    code, result = run_import(changed, connection=kore_connection.code)
    assert result["files"][0]["status"] == "rejected"
    assert "with other content: conflict" in result["files"][0]["errors"][0]["message"]


def test_a_dry_run_counts_and_changes_nothing(history):
    tables = (ImportJob, ImportFile, RowError, ImportEvent, ImportedFileName)
    before = {model: sorted(model.objects.values_list("pk", flat=True)) for model in tables}
    paths = list(ImportFile.objects.exclude(path="").values_list("path", flat=True))

    code, result = purge("--dry-run")

    assert code == 0 and result["dry_run"] is True
    assert (result["removed"]["jobs"], result["removed"]["files"], result["removed"]["row_errors"]) == (2, 2, 2)
    assert {model: sorted(model.objects.values_list("pk", flat=True)) for model in tables} == before
    assert all(stored(path) for path in paths)
    assert purge()[1]["removed"]["jobs"] == 2


def test_run_twice_the_second_purge_removes_nothing_and_a_copy_already_gone_is_no_error(history):
    f = ImportFile.objects.get(job=history["old"])
    storage, name = resolve_path(f.path)
    storage.delete(name)  # as a purge killed after deleting it, before its rows went

    first = purge()[1]["removed"]
    second = purge()[1]["removed"]

    assert first["jobs"] == 2
    assert not any(second.values()), second


def test_days_choose_the_retention(history):
    assert purge("--days", "200")[1]["removed"]["jobs"] == 0
    # A retention longer than the calendar goes back keeps everything (no traceback of a date out of range).
    for days in ("1000000", "999999999", "1000000000"):
        code, result = purge("--days", days)
        assert (code, result["removed"]["jobs"]) == (0, 0)
    assert purge("--days", "5")[1]["removed"]["jobs"] == 3  # the recent job (10 days) too
    with pytest.raises(CommandError, match="at least one day"):
        purge("--days", "0")


def test_export_runs_sent_files_deliveries_inbox_records_problems_and_record_events(kore_connection):
    then = timezone.now() - OLD
    group = DataGroup.objects.create(code="cust-out", name="Customers out", direction="export")
    copies = []
    runs = [("completed", then), ("completed", timezone.now()), ("failed", then), ("completed", then)]
    for n, (status, at) in enumerate(runs):
        run = ExportRun.objects.create(group=group, trigger="schedule", status=status, created_at=at, finished_at=at)
        copy = save_file(hub_storage(), f"exports/copy-{n}.csv", io.BytesIO(b"a,b\n"))
        copies.append(copy)
        sent = SentFile.objects.create(
            run=run, group=group, name=f"out-{n}.csv", location="/x", path="/x/out.csv", copy_path=copy, sha256="0"
        )
    # The last old run's file was sent again lately: the resend's record names the same copy.
    resend = ExportRun.objects.create(group=group, trigger="admin", status="completed", resend_of=sent)
    SentFile.objects.create(
        run=resend, group=group, name="out-3.csv", location="/x", path="/x/out.csv", copy_path=copy, sha256="0"
    )
    problem_raise(kind="export", key="export-group:cust-out", message="export run failed")
    sub = WebhookSubscription.objects.create(code="crm", url="https://example.com/hook")
    delivered = WebhookDelivery.objects.create(subscription=sub, event="file.imported", payload={}, status="delivered")
    pending = WebhookDelivery.objects.create(subscription=sub, event="file.imported", payload={})
    WebhookDelivery.objects.filter(pk__in=[delivered.pk, pending.pk]).update(created_at=then)
    gone = InboxFile.objects.create(connection=kore_connection, name="a.NET", status="gone", last_seen=then)
    seen = InboxFile.objects.create(connection=kore_connection, name="b.NET", status="seen", last_seen=then)
    problem_raise(kind="inbox", key="scan:x", message="x")
    problem_resolve(key="scan:x")
    Problem.objects.filter(key="scan:x").update(resolved_at=then)
    update = {"connection": kore_connection, "entity": "customer", "descriptor_code": "KS_CUSTOMERS", "payload": {}}
    applied = RecordEvent.objects.create(**update, record_key="C1", status="applied", applied_at=then)
    failed = RecordEvent.objects.create(**update, record_key="C2", status="failed")

    code, result = purge()

    assert code == 0
    removed = result["removed"]
    assert (removed["export_runs"], removed["sent_files"], removed["sent_copies"]) == (2, 2, 1)
    assert list(ExportRun.objects.order_by("pk").values_list("status", "trigger")) == [
        ("completed", "schedule"),
        ("failed", "schedule"),
        ("completed", "admin"),
    ]
    assert [file_exists(hub_storage(), copy) for copy in copies] == [False, True, True, True]
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [pending.pk]
    assert list(InboxFile.objects.values_list("pk", flat=True)) == [seen.pk] and gone.pk
    assert not Problem.objects.filter(key="scan:x").exists()
    assert Problem.objects.filter(key="export-group:cust-out", resolved_at__isnull=True).exists()
    assert list(RecordEvent.objects.values_list("pk", flat=True)) == [failed.pk] and applied.pk
    assert (removed["webhook_deliveries"], removed["inbox_files"], removed["record_events"]) == (1, 1, 1)


def test_the_purge_runs_daily(db):
    schedules_sync()
    schedule = Schedule.objects.get(func="impex.tasks.history_purge")
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 24 * 60)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="several processes share the database: PostgreSQL")
def test_two_purges_at_once_and_one_killed_half_way_purge_everything_once(tmp_path):
    from tests.history import history_make
    from tests.test_workers import manage, wait_for

    history = history_make(hours=600, end=timezone.now() - OLD)
    ledger = ImportedFileName.objects.count()
    env = process_env()
    logs = [tmp_path / f"purge{n}.log" for n in range(3)]
    handles = [open(log, "wb") for log in logs]
    try:
        killed = manage("impex_purge", "--json", env=env, log=handles[0])
        assert wait_for(lambda: ImportJob.objects.count() < history.jobs, seconds=120)
        killed.kill()  # half-way: what it committed is gone, the rest stays for the next purge
        killed.wait()
        left = (ImportJob.objects.count(), RowError.objects.count())
        assert left[0] > 0
        both = [manage("impex_purge", "--json", env=env, log=handle) for handle in handles[1:]]
        for process in both:
            process.wait(timeout=300)
    finally:
        for handle in handles:
            handle.close()

    assert [p.returncode for p in both] == [0, 0], [log.read_text() for log in logs[1:]]
    results = [json.loads(log.read_text().strip().splitlines()[-1])["removed"] for log in logs[1:]]
    # The jobs that had ended (a cancelled one's file is not done: it stays), each deleted by one of them.
    kept = ImportJob.objects.count()
    assert kept == ImportJob.objects.filter(status="cancelled").count() > 0
    assert sum(r["jobs"] for r in results) == left[0] - kept
    assert sum(r["row_errors"] for r in results) == left[1] - RowError.objects.count()
    assert not RowError.objects.exclude(file__job__status="cancelled").exists()
    assert ImportedFileName.objects.count() == ledger  # the ledger stays whole


def test_a_job_that_stopped_in_another_jobs_file_stays_while_that_file_is_at_work(tmp_path, kore_connection, settings):
    """A job of no files of its own (the sweeper's, a released wait's) that took over another job's running file and
    was cancelled keeps it: purged, the file would look abandoned and a sweeper job would import it, cancel or not."""
    from impex.choices import JobSource
    from impex.services.lifecycle import job_claim, jobs_requeue
    from impex.tests.test_jobs import started_file

    settings.IMPEX_CHUNK_ROWS = 2
    first, f, handle = started_file(tmp_path, kore_connection, [customer_row(f"C{n}") for n in range(6)])
    assert handle.chunk_apply(handle.chunk_claim())
    job_cancel(job_id=first.pk, by="ops")
    # The connection's next job, of no files of its own, took the running file over, then was cancelled too.
    taker = ImportJob.objects.create(connection=kore_connection, source=JobSource.SWEEPER)
    assert job_claim(job_id=taker.pk, worker="w-2")[1]
    ImportFile.objects.filter(pk=f.pk).update(processed_by=taker)
    job_cancel(job_id=taker.pk, by="ops")
    age(first)
    age(taker)

    code, result = purge()

    assert code == 0, result
    assert ImportJob.objects.filter(pk=taker.pk).exists()
    assert ImportFile.objects.get(pk=f.pk).processed_by_id == taker.pk
    assert jobs_requeue() == []  # nobody imports the cancelled file behind the cancels' back
    assert ImportFile.objects.get(pk=f.pk).status == "running"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two sessions and a table lock: PostgreSQL")
def test_a_job_run_again_while_the_purge_reaches_it_is_not_deleted(tmp_path, kore_connection):
    """The purge lists its batch, deletes the rows under it, then locks and deletes the jobs: a job that was run
    again in between (a cancel that came as it ended, run again now) is queued, not history, and stays."""
    from impex.services.lifecycle import job_rerun
    from impex.services.purge import history_purge
    from tests.test_full_sync import in_thread, other_session, wait_for_lock_waiters

    job = imported(tmp_path, kore_connection, 1, [customer_row("C1")])
    # Its cancel came as it ended: its file imported, the job cancelled (run again, it completes).
    ImportJob.objects.filter(pk=job.pk).update(status="cancelled")
    age(job)
    results = []
    with other_session() as holder:
        # The purge has listed the job and waits to delete its row errors.
        holder.execute(f"LOCK TABLE {RowError._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        thread = in_thread(lambda: history_purge(), results)
        wait_for_lock_waiters(holder, 1)
        assert job_rerun(job=job, by="ops")  # meanwhile someone runs it again: it is queued
        holder.rollback()
        thread.join()

    assert not isinstance(results[0], Exception), results
    assert ImportJob.objects.get(pk=job.pk).status == "queued"
    assert ImportFile.objects.filter(job=job).exists() and results[0].removed["jobs"] == 0
