"""The job lifecycle (issue 5): claims with leases, a file finished once, redelivered tasks, stale sequences."""

import io
import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from impex.choices import JOB_TRANSITIONS
from impex.exceptions import IllegalTransition, LeaseLost
from impex.models import Connection, ConnectionState, ImportChunk, ImportedFileName, ImportEvent, ImportFile, ImportJob
from impex.runner import run_job
from impex.services.imports import FileImport
from impex.services.jobs import file_match, job_create
from impex.services.lifecycle import (
    file_transition,
    job_cancel,
    job_claim,
    job_lease_renew,
    job_rerun,
    job_set_aside,
    job_terminate,
    job_transition,
    jobs_requeue,
)
from impex.services.schedules import schedules_sync, system_schedules
from impex.tasks import import_job_run, import_jobs_requeue
from impex.tests.helpers import customer_row, file_named, only_file, run_import, write_kore
from syncapp.models import Customer


def run_command(name: str, *args) -> tuple[int, dict, str]:
    """Run a command with --json; return its exit code, its JSON and its whole output."""
    out = io.StringIO()
    code = 0
    try:
        call_command(name, *[str(a) for a in args], "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    text = out.getvalue()
    return code, json.loads(text.strip().splitlines()[-1]), text


def state() -> dict:
    """Return every customer's e-mail and active flag."""
    return {c.customer_id: (c.email, c.active) for c in Customer.objects.all()}


def started_file(tmp_path, connection, rows, *, sequence=1, mode="FULL", worker="w-1"):
    """Create a job with one file and start it by hand as a worker would: claimed, scanned, chunked."""
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", sequence, rows, mode=mode)], connection=connection)
    job, claimed = job_claim(job_id=job.pk, worker=worker)
    assert claimed
    f = job.files.get()
    file_match(f, group=None)
    f.refresh_from_db()
    handle = FileImport(f, worker=worker, job_id=job.pk)
    assert handle.start()
    return job, f, handle


# -- a file is finished exactly once ---------------------------------------------------------------------------


def test_finishing_a_file_twice_retires_nothing_the_second_time(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 2
    for n in range(4):
        Customer.objects.create(customer_id=f"OLD{n}", email=f"old{n}@example.com", connection=kore_connection)
    job, f, first = started_file(tmp_path, kore_connection, [customer_row(f"C{n}") for n in range(5)])
    assert first.work() == 3
    second = FileImport(ImportFile.objects.get(pk=f.pk), worker="w-2", job_id=job.pk)

    assert first.finish() is True
    retired_after_first = {c: a for c, (_, a) in state().items()}
    assert second.finish() is False
    assert first.finish() is False

    f.refresh_from_db()
    assert (f.status, f.created, f.retired, f.rows_done) == ("imported", 5, 4, 5)
    assert {c: a for c, (_, a) in state().items()} == retired_after_first
    assert sum(a for a in retired_after_first.values()) == 5
    assert ImportedFileName.objects.filter(connection=kore_connection).count() == 1
    assert f.events.filter(kind="imported").count() == 1


def test_a_file_whose_chunks_are_not_all_done_is_not_finished(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 2
    job, f, handle = started_file(tmp_path, kore_connection, [customer_row(f"C{n}") for n in range(5)])
    chunk_id = handle.chunk_claim()
    handle.chunk_apply(chunk_id)

    assert handle.finish() is False
    f.refresh_from_db()
    assert (f.status, f.rows_done, f.created) == ("running", 2, 2)


def test_a_chunk_taken_over_by_another_worker_is_not_applied_by_the_first(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 3
    job, f, first = started_file(tmp_path, kore_connection, [customer_row(f"C{n}") for n in range(3)], mode="NET")
    chunk_id = first.chunk_claim()
    f.chunks.filter(pk=chunk_id).update(lease_until=timezone.now() - timedelta(seconds=1))  # its worker died
    second = FileImport(ImportFile.objects.get(pk=f.pk), worker="w-2", job_id=job.pk)

    assert second.chunk_claim() == chunk_id
    assert first.chunk_apply(chunk_id) is False
    assert not Customer.objects.exists()
    assert second.chunk_apply(chunk_id) is True
    assert Customer.objects.count() == 3
    # The chunk keeps the worker that applied it, and counts both workers that started it.
    assert (f.chunks.get().claimed_by, f.chunks.get().attempts) == ("w-2", 2)


def test_a_small_file_of_a_job_taken_over_meanwhile_commits_nothing(tmp_path, kore_connection):
    # The file's last writes go in one round trip with the job's lease; the lease's check fails once sent, and
    # the whole file (records, status, ledger, chunk, events, sequence) is rolled back with it.
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)
    job, claimed = job_claim(job_id=job.pk, worker="w-1")
    assert claimed
    f = job.files.get()
    file_match(f, group=None)
    f.refresh_from_db()
    handle = FileImport(f, worker="w-1", job_id=job.pk)
    scanned = handle.scan()
    assert scanned.small()
    ImportJob.objects.filter(pk=job.pk).update(claimed_by="w-2")  # another worker took the job over

    def renew(writes):
        job_lease_renew(job_id=job.pk, worker="w-1", grown=(1, 1), writes=writes, lost=lost)

    def lost():
        raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        handle.import_whole(scanned, before_commit=renew)

    f.refresh_from_db()
    assert (f.status, f.rows_total, f.started_at) == ("queued", 0, None)
    assert not Customer.objects.exists()
    assert not ImportedFileName.objects.exists()
    assert not f.chunks.exists() and not f.events.filter(kind__in=["running", "imported"]).exists()
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence is None
    assert ImportJob.objects.get(pk=job.pk).rows_total == 0


# -- claims, leases, redelivery ----------------------------------------------------------------------------------


def test_a_running_job_is_claimed_once_until_its_lease_runs_out(tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)

    job, first = job_claim(job_id=job.pk, worker="w-1")
    _, second = job_claim(job_id=job.pk, worker="w-2")
    assert (first, second) == (True, False)
    assert (job.status, job.claimed_by, job.attempts) == ("running", "w-1", 1)

    ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    job, third = job_claim(job_id=job.pk, worker="w-3")

    assert third is True
    assert (job.claimed_by, job.attempts) == ("w-3", 2)
    takeover = job.events.get(kind="takeover")
    assert "the lease of w-1 had run out" in takeover.message


def test_only_the_worker_holding_a_job_ends_it_and_only_once(tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)
    job, _ = job_claim(job_id=job.pk, worker="w-1")

    job = job_terminate(job=job, worker="w-2", status="completed")
    assert job.status == "running"
    job = job_terminate(job=job, worker="w-1", status="failed")
    assert job.status == "failed"
    job = job_terminate(job=job, worker="w-1", status="completed")

    assert job.status == "failed"
    assert job.events.filter(kind__in=["completed", "failed"]).count() == 1


def test_a_redelivered_task_does_nothing(tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)
    assert import_job_run(job.pk) == "completed"
    before = (state(), list(ImportEvent.objects.values_list("pk", flat=True)), ImportJob.objects.values().get())

    assert import_job_run(job.pk) == "completed"

    after = (state(), list(ImportEvent.objects.values_list("pk", flat=True)), ImportJob.objects.values().get())
    assert after == before


def test_a_job_whose_worker_died_is_queued_again_and_resumed(
    tmp_path, kore_connection, settings, django_capture_on_commit_callbacks
):
    settings.IMPEX_CHUNK_ROWS = 2
    rows = [customer_row(f"C{n}") for n in range(5)]
    job, f, handle = started_file(tmp_path, kore_connection, rows, mode="NET")
    handle.chunk_apply(handle.chunk_claim())
    ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=5))

    with django_capture_on_commit_callbacks() as queued:
        assert jobs_requeue() == [job.pk]
    assert len(queued) == 1
    assert jobs_requeue() == []  # already queued: not twice
    job.refresh_from_db()
    assert job.status == "queued" and "ran out" in job.events.get(kind="requeued").message

    assert import_job_run(job.pk) == "completed"
    f.refresh_from_db()
    assert (f.status, f.created, f.rows_done) == ("imported", 5, 5)
    assert Customer.objects.count() == 5


def test_an_errored_job_runs_again_from_where_it_stopped(tmp_path, kore_connection, django_capture_on_commit_callbacks):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)
    job, _ = job_claim(job_id=job.pk, worker="w-1")
    job = job_terminate(job=job, worker="w-1", status="errored", error="OperationalError: the server went away")

    assert import_job_run(job.pk) == "errored"  # a task does not re-run an errored job by itself
    with django_capture_on_commit_callbacks() as queued:
        assert job_rerun(job=job, by="ops") is True
    assert (ImportJob.objects.get(pk=job.pk).status, len(queued)) == ("queued", 1)
    assert import_job_run(job.pk) == "completed"
    assert job_rerun(job=ImportJob.objects.get(pk=job.pk), by="ops") is False
    assert Customer.objects.filter(customer_id="C1").exists()


# impex's own schedules and those syncapp and orders register in their ready() (impex.registry).
HUB_SCHEDULES = {
    "impex: queue again import jobs whose worker died": ("impex.tasks.import_jobs_requeue", 1),
    "impex: fail export runs whose worker died, remove temporary files": ("impex.tasks.export_runs_sweep", 1),
    "impex: tell contacts about long sequence waits": ("impex.tasks.sequence_wait_alerts", 5),
    "impex: deliver outbound webhooks": ("impex.tasks.webhooks_deliver", 1),
    "impex: purge the history older than the retention": ("impex.tasks.history_purge", 24 * 60),
    "impex: apply single-record updates": ("syncapp.tasks.record_events", 1),
    "impex: push flagged orders through their exporters": ("orders.tasks.orders_export", 1),
    "impex: apply order update feed events": ("orders.tasks.orders_feed", 1),
}


def test_schedules_are_installed_once_however_often_migrate_runs(db):
    assert system_schedules() == HUB_SCHEDULES
    assert set(Schedule.objects.values_list("name", flat=True)) >= set(HUB_SCHEDULES)
    schedules_sync()
    schedules_sync()

    for name, (func, minutes) in HUB_SCHEDULES.items():
        schedule = Schedule.objects.get(name=name)
        assert (schedule.func, schedule.minutes) == (func, minutes)


# -- a job resumed late, sequences behind ------------------------------------------------------------------------


def test_the_next_job_of_a_connection_finishes_a_file_a_killed_job_left_running_first(
    tmp_path, kore_connection, settings
):
    settings.IMPEX_CHUNK_ROWS = 2
    old = [customer_row(f"C{n}", first_name="Old") for n in range(5)]
    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    killed, f, handle = started_file(killed_dir, kore_connection, old, mode="NET")
    handle.chunk_apply(handle.chunk_claim())  # then the worker dies
    ImportJob.objects.filter(pk=killed.pk).update(lease_until=timezone.now() - timedelta(seconds=5))
    newer_dir = tmp_path / "newer"
    newer_dir.mkdir()
    copy = write_kore(newer_dir, "KS_CUSTOMERS", 1, old, mode="NET")
    newer = write_kore(newer_dir, "KS_CUSTOMERS", 2, [customer_row(f"C{n}", first_name="New") for n in range(5)])

    code, report = run_import(copy, newer)

    # The file sequence 1 started in goes on where it stopped, before sequence 2; the new copy is the same file.
    assert code == 0
    assert [(r["name"], r["status"], r["created"]) for r in report["files"]] == [
        (f.name, "imported", 5),
        (copy.name, "duplicate", 0),
        (newer.name, "imported", 0),
    ]
    f.refresh_from_db()
    new_job = ImportJob.objects.exclude(pk=killed.pk).get()
    assert (f.status, f.processed_by_id, f.rows_done) == ("imported", new_job.pk, 5)
    assert "taken over from job" in new_job.events.get(kind="taken-over").message
    assert set(Customer.objects.values_list("first_name", flat=True)) == {"New"}
    assert ImportedFileName.objects.get(name=f.name).file_id == f.pk

    killed = run_job(killed.pk)

    assert killed.status == "completed"
    assert set(Customer.objects.values_list("first_name", flat=True)) == {"New"}


def test_a_kore_file_behind_the_last_applied_sequence_is_rejected(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 14, [customer_row("C1", first_name="Fourteen")]))

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1", first_name="Two")]))

    assert code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert "sequence 2 is behind: sequence 14 is already applied" in result["errors"][0]["message"]
    assert Customer.objects.get().first_name == "Fourteen"
    assert ConnectionState.objects.get(connection=kore_connection).last_applied_sequence == 14


def test_files_sharing_the_last_applied_sequence_still_go_in(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C1")]))

    path = tmp_path / "ERP_0000003_INT1_KS_ORDERS.NET"
    path.write_text("order_id\tcustomer_id\torder_date\tcurrency\ttotal\nO1\tC1\t2026-11-01T10:00:00Z\tEUR\t1\n")
    code, report = run_import(path)

    assert (code, only_file(report)["status"]) == (0, "imported")


def test_a_waiting_file_once_imported_no_longer_says_it_waits(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")]))
    assert (code, only_file(report)["status"]) == (1, "waiting")

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")]))

    assert code == 0
    third = file_named(report, "ERP_0000003_INT1_KS_CUSTOMERS.NET")
    assert third["status"] == "imported"
    f = ImportFile.objects.get(name="ERP_0000003_INT1_KS_CUSTOMERS.NET")
    assert (f.status, f.message) == ("imported", "")


# -- a file a killed job had taken over from a waiting job (issue 16, R1) -----------------------------------------


def full_taken_over_then_killed(tmp_path, connection, settings) -> tuple[ImportJob, ImportFile, ImportFile]:
    """Job 1's FULL file (sequence 61) waits for its window; job 2 (sequence 62) takes it up once the window opens,
    and job 2's worker dies half-way through it: a chunk applied, one held by the dead worker, one not started.

    Return job 2, the FULL file and job 2's own file.
    """
    settings.IMPEX_CHUNK_ROWS = 2
    for n in range(4):
        Customer.objects.create(customer_id=f"OLD{n}", email=f"old{n}@example.com", connection=connection)
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 60, [customer_row("C60")]))[0] == 0
    hour = datetime.now(UTC).hour
    Connection.objects.filter(pk=connection.pk).update(
        timezone="UTC", full_window_start=time((hour + 2) % 24), full_window_end=time((hour + 3) % 24)
    )
    full_path = write_kore(tmp_path, "KS_CUSTOMERS", 61, [customer_row(f"C{n}") for n in range(5)], mode="FULL")
    code, report = run_import(full_path)
    assert (code, only_file(report)["status"]) == (1, "waiting")
    Connection.objects.filter(pk=connection.pk).update(full_window_start=None, full_window_end=None)
    net = write_kore(tmp_path, "KS_CUSTOMERS", 62, [customer_row("C0", first_name="Sixty-two")])
    job2 = job_create(paths=[net], connection=connection)
    # What job 2's runner does before it dies: its own file waits for 61, it takes the FULL file up and starts it.
    job2, _ = job_claim(job_id=job2.pk, worker="dead")
    own = job2.files.get()
    file_match(own, group=None)
    assert file_transition(own, new="waiting", job_id=job2.pk, message="waiting for sequence 61", worker="dead")
    full = ImportFile.objects.get(name=full_path.name)
    ImportFile.objects.filter(pk=full.pk).update(processed_by=job2)
    full.refresh_from_db()
    handle = FileImport(full, worker="dead", job_id=job2.pk)
    assert handle.start()
    assert handle.chunk_apply(handle.chunk_claim())
    assert handle.chunk_claim() is not None  # held when the worker dies
    handle.close()
    past = timezone.now() - timedelta(seconds=5)
    ImportJob.objects.filter(pk=job2.pk).update(lease_until=past)
    ImportChunk.objects.filter(file=full, status="running").update(lease_until=past)
    return job2, full, own


def assert_imported_once(connection, full: ImportFile, own: ImportFile) -> None:
    """The FULL file and the next one went in once, in order: retired what the FULL lacked, sequence 62 applied."""
    full.refresh_from_db()
    own.refresh_from_db()
    assert (full.status, full.created, full.retired, full.rows_done, full.rows_total) == ("imported", 5, 5, 5, 5)
    assert (own.status, own.updated) == ("imported", 1)
    assert state() == {
        **{f"OLD{n}": (f"old{n}@example.com", False) for n in range(4)},
        "C60": ("c60@example.com", False),
        **{f"C{n}": (f"c{n}@example.com", True) for n in range(5)},
    }
    assert Customer.objects.get(customer_id="C0").first_name == "Sixty-two"
    assert set(full.chunks.values_list("status", flat=True)) == {"done"}
    assert full.events.filter(kind="imported").count() == 1
    assert ImportedFileName.objects.filter(connection=connection, name=full.name).count() == 1
    assert ConnectionState.objects.get(connection=connection).last_applied_sequence == 62
    connection.refresh_from_db()
    assert connection.next_expected_sequence == 63


def test_impex_job_resumes_a_file_its_killed_worker_had_taken_over_from_a_waiting_job(
    tmp_path, kore_connection, settings
):
    job2, full, own = full_taken_over_then_killed(tmp_path, kore_connection, settings)

    code, payload, text = run_command("impex_job", job2.pk)

    assert code == 0, text
    assert sorted((f["name"], f["status"]) for f in payload["files"]) == [
        (full.name, "imported"),
        (own.name, "imported"),
    ]
    job2.refresh_from_db()
    assert (job2.status, job2.error) == ("completed", "")
    assert_imported_once(kore_connection, full, own)
    full.refresh_from_db()
    assert full.path.endswith(f"archive/{full.name}")
    # Later files of the connection go on.
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 63, [customer_row("C63")]))
    assert (code, only_file(report)["status"]) == (0, "imported")


def test_the_sweeper_queues_the_killed_job_again_and_its_task_resumes_the_taken_over_file(
    tmp_path, kore_connection, settings, django_capture_on_commit_callbacks
):
    job2, full, own = full_taken_over_then_killed(tmp_path, kore_connection, settings)

    with django_capture_on_commit_callbacks(execute=True):
        assert import_jobs_requeue() == [job2.pk]

    assert import_job_run(job2.pk) == "completed"
    assert_imported_once(kore_connection, full, own)
    assert import_jobs_requeue() == []


def test_the_sweeper_hands_a_file_left_running_by_a_job_that_ended_to_a_new_job(
    tmp_path, kore_connection, settings, django_capture_on_commit_callbacks
):
    job2, full, own = full_taken_over_then_killed(tmp_path, kore_connection, settings)
    # How the killed job ended before this was fixed: failed, its taken-over file left running for good.
    job_claim(job_id=job2.pk, worker="resumed")
    job_terminate(job=job2, worker="resumed", status="failed")

    with django_capture_on_commit_callbacks(execute=True) as queued:
        (new_id,) = import_jobs_requeue()

    new = ImportJob.objects.get(pk=new_id)
    assert (new.source, new.status, new.connection, len(queued)) == ("sweeper", "queued", kore_connection, 1)
    full.refresh_from_db()
    assert full.processed_by == new
    assert f"taken over from job #{job2.pk} (that job is failed)" in new.events.get(kind="taken-over").message
    assert job2.events.filter(kind="taken-over", message__contains=f"job #{new.pk} goes on with it").exists()
    assert import_jobs_requeue() == []  # handed over once

    assert import_job_run(new.pk) == "completed"
    assert_imported_once(kore_connection, full, own)


def test_a_failed_job_says_which_files_did_not_go_in_and_why(tmp_path, kore_connection):
    good = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    bad = tmp_path / "ERP_0000002_INT1_KS_NOTHING.NET"
    bad.write_text("x\ty\n1\t2\n", encoding="utf-8")

    code, report = run_import(good, bad)

    job = ImportJob.objects.get()
    assert (code, job.status) == (1, "failed")
    assert job.error.startswith(f"1 file not imported: {bad.name} (rejected: ")
    assert job.events.get(kind="failed").message == f"failed: {job.error}"


# -- job statuses go through JOB_TRANSITIONS ----------------------------------------------------------------------


def test_an_illegal_job_transition_raises_and_changes_nothing(tmp_path, kore_connection):
    code, _ = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    job = ImportJob.objects.get()
    before = (ImportJob.objects.values().get(), list(ImportEvent.objects.values_list("pk", flat=True)))

    with pytest.raises(IllegalTransition, match=f"import job #{job.pk} cannot go from completed to running"):
        job_transition(job_id=job.pk, old="completed", new="running", claimed_by="w-2")
    with pytest.raises(IllegalTransition, match="cannot go from queued to completed"):
        job_transition(job_id=job.pk, old=["running", "queued"], new="completed")

    assert (ImportJob.objects.values().get(), list(ImportEvent.objects.values_list("pk", flat=True))) == before
    # The lifecycle's own steps refuse what the table forbids: an ended job is neither claimed nor queued again.
    assert job_claim(job_id=job.pk, worker="w-2", rerun=True)[1] is False
    assert job_rerun(job=job, by="ops") is False
    assert ImportJob.objects.values().get() == before[0]


def test_the_job_transition_table_is_every_move_the_lifecycle_makes(
    tmp_path, kore_connection, django_capture_on_commit_callbacks
):
    seen = set()

    def step(job: ImportJob, action) -> None:
        old = ImportJob.objects.get(pk=job.pk).status
        action()
        new = ImportJob.objects.get(pk=job.pk).status
        seen.add((old, new))

    def dead(job: ImportJob) -> None:
        ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    a, b, c, d = (
        job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore_connection)
        for _ in range(4)
    )
    with django_capture_on_commit_callbacks(execute=True):
        step(a, lambda: job_claim(job_id=a.pk, worker="w-1"))  # claimed
        dead(a)
        step(a, lambda: job_claim(job_id=a.pk, worker="w-2"))  # taken over
        step(a, lambda: job_set_aside(job=a, worker="w-2", reason="busy", retry_in=60))
        job_claim(job_id=a.pk, worker="w-3")
        dead(a)
        step(a, lambda: jobs_requeue())  # its worker died
        job_claim(job_id=a.pk, worker="w-4")
        step(a, lambda: job_terminate(job=a, worker="w-4", status="completed"))
        job_claim(job_id=b.pk, worker="w-1")
        step(b, lambda: job_terminate(job=b, worker="w-1", status="failed"))
        job_claim(job_id=c.pk, worker="w-1")
        step(c, lambda: job_terminate(job=c, worker="w-1", status="errored", error="boom"))
        step(c, lambda: job_rerun(job=c, by="ops"))  # run again
        job_claim(job_id=c.pk, worker="w-2")
        job_terminate(job=c, worker="w-2", status="errored", error="boom")
        step(c, lambda: job_claim(job_id=c.pk, worker="w-3", rerun=True))  # impex_job on an errored job
        step(d, lambda: job_cancel(job_id=d.pk, by="ops"))  # impex_job --cancel on a queued job
        step(d, lambda: job_rerun(job=d, by="ops"))  # "Run again" on a cancelled job
        job_claim(job_id=d.pk, worker="w-1")
        step(d, lambda: job_cancel(job_id=d.pk, by="ops"))  # on a running job
        step(d, lambda: job_claim(job_id=d.pk, worker="w-2", rerun=True))  # impex_job on a cancelled job

    assert seen == {(old, new) for old, moves in JOB_TRANSITIONS.items() for new in moves}


# -- the commands ----------------------------------------------------------------------------------------------


def test_impex_import_queue_creates_a_queued_job_that_impex_job_runs(
    tmp_path, kore_connection, django_capture_on_commit_callbacks
):
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email="")])

    with django_capture_on_commit_callbacks(execute=True):
        code, payload, text = run_command("impex_import", path, "--queue")

    assert code == 0
    job = ImportJob.objects.get()
    assert payload["job"] == job.pk
    assert [(f["name"], f["status"]) for f in payload["files"]] == [(path.name, "queued")]
    assert job.status == "queued" and not Customer.objects.exists()
    assert OrmQ.objects.count() == 1  # handed to the cluster's broker

    code, payload, text = run_command("impex_job", job.pk)

    assert code == 0
    assert payload["job"] == job.pk
    (result,) = payload["files"]
    assert (result["status"], result["created"], result["failed"]) == ("imported", 1, 1)
    assert result["errors"][0]["column"] == "email"
    assert Customer.objects.count() == 1


def test_impex_job_reports_a_finished_job_without_running_it_again(tmp_path, kore_connection):
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    job = ImportJob.objects.get()
    events = job.events.count()

    code, payload, text = run_command("impex_job", job.pk)

    assert code == 0
    assert payload == {"job": job.pk, "files": report["files"]}
    assert job.events.count() == events


def test_impex_job_exit_code_and_refusal_of_an_unknown_job(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    waiting = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")])])

    code, payload, text = run_command("impex_job", waiting.pk)

    assert (code, payload["files"][0]["status"]) == (1, "waiting")
    assert "waiting for sequence 2" in text
    with pytest.raises(CommandError, match="no import job #999999"):
        call_command("impex_job", "999999")


def test_a_cluster_task_asks_the_cluster_for_helpers_when_a_big_file_starts(tmp_path, kore_connection, settings):
    settings.IMPEX_WORKERS = 3
    settings.IMPEX_WORKERS_MIN_ROWS = 10
    settings.IMPEX_CHUNK_ROWS = 5
    job = job_create(
        paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(f"C{n}") for n in range(30)])],
        connection=kore_connection,
    )

    assert import_job_run(job.pk) == "completed"

    assert OrmQ.objects.count() == 2  # two more tasks of the cluster may take its chunks
    assert job.events.filter(message__contains="2 more tasks of the cluster share its chunks").exists()
    assert Customer.objects.count() == 30


def test_a_small_file_is_imported_by_its_runner_alone(tmp_path, kore_connection, settings):
    settings.IMPEX_WORKERS = 3
    settings.IMPEX_CHUNK_ROWS = 5
    job = job_create(
        paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(f"C{n}") for n in range(30)])],
        connection=kore_connection,
    )

    assert import_job_run(job.pk) == "completed"

    assert OrmQ.objects.count() == 0
