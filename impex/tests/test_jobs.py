"""The job lifecycle (issue 5): claims with leases, a file finished once, redelivered tasks, stale sequences."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from impex.models import ConnectionState, ImportedFileName, ImportEvent, ImportFile, ImportJob
from impex.runner import run_job
from impex.services.imports import FileImport
from impex.services.jobs import job_create
from impex.services.lifecycle import job_claim, job_rerun, job_terminate, jobs_requeue
from impex.services.schedules import SYSTEM_SCHEDULES, schedules_sync
from impex.tasks import import_job_run
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
    from impex.services.jobs import file_match

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
    assert f.chunks.get().claimed_by == "w-2"


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


def test_schedules_are_installed_once_however_often_migrate_runs(db):
    assert set(Schedule.objects.values_list("name", flat=True)) >= set(SYSTEM_SCHEDULES)
    schedules_sync()
    schedules_sync()

    for name, (func, minutes) in SYSTEM_SCHEDULES.items():
        schedule = Schedule.objects.get(name=name)
        assert (schedule.func, schedule.minutes) == (func, minutes)


# -- a job resumed late, sequences behind ------------------------------------------------------------------------


def test_a_job_resumed_after_a_newer_copy_was_imported_skips_its_stale_file(tmp_path, kore_connection, settings):
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
    assert code == 0 and {f["status"] for f in report["files"]} == {"imported"}

    killed = run_job(killed.pk)

    f.refresh_from_db()
    assert (killed.status, f.status) == ("completed", "duplicate")
    assert set(Customer.objects.values_list("first_name", flat=True)) == {"New"}
    ledger = ImportedFileName.objects.get(name=f.name)
    assert ledger.file_id != f.pk


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
