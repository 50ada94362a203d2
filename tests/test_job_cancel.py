"""Cancelling an import job (SPEC 9, `impex_job ID --cancel`): it never runs, or its workers stop at the next chunk;
what it committed stays, and running it again finishes it exactly once."""

import io
import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from impex.choices import JobStatus
from impex.models import ImportChunk, ImportedFileName, ImportEvent, ImportFile, ImportJob
from impex.services.jobs import job_create
from impex.services.lifecycle import job_cancel, job_claim, job_enqueue, jobs_requeue
from impex.tasks import import_job_run
from impex.tests.helpers import customer_row, process_env, write_kore
from impex.tests.test_jobs import started_file
from syncapp.models import Customer
from tests.admin_helpers import staff_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("builtin_installed")]


def impex_job(*args) -> tuple[int, dict, str]:
    """Run impex_job with --json here; return its exit code, its JSON and its whole output."""
    out = io.StringIO()
    code = 0
    try:
        call_command("impex_job", *[str(a) for a in args], "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    text = out.getvalue()
    return code, json.loads(text.strip().splitlines()[-1]), text


def customers(n: int, *, start: int = 0) -> list[dict]:
    return [customer_row(f"C{i:06d}") for i in range(start, start + n)]


def test_a_queued_job_cancelled_never_runs_and_running_it_again_imports_it(tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, customers(5))], connection=kore_connection)
    job_enqueue(job=job)

    code, result, text = impex_job(job.pk, "--cancel")

    assert code == 0
    assert result == {"job": job.pk, "status": "cancelled", "cancelled": True, "message": text.splitlines()[0]}
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert job.events.filter(kind="cancelled", worker="impex_job --cancel").count() == 1
    # The task queued for it, delivered now, and the requeue sweeper leave it alone.
    assert import_job_run(job.pk) == JobStatus.CANCELLED
    assert jobs_requeue() == []
    assert not Customer.objects.exists()
    assert job.files.get().status == "queued"
    # Cancelling it again changes nothing, and says so.
    assert impex_job(job.pk, "--cancel")[:2] == (
        0,
        {
            "job": job.pk,
            "status": "cancelled",
            "cancelled": True,
            "message": f"import job #{job.pk} was cancelled already; nothing changed",
        },
    )
    assert job.events.filter(kind="cancelled").count() == 1

    code, result, _ = impex_job(job.pk)  # without --cancel: run again, it finishes

    assert code == 0
    assert [f["status"] for f in result["files"]] == ["imported"]
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    assert Customer.objects.count() == 5


def test_a_finished_job_is_not_cancelled_and_nothing_changes(tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, customers(2))], connection=kore_connection)
    assert impex_job(job.pk)[0] == 0
    before = ImportJob.objects.values().get(pk=job.pk)
    events = ImportEvent.objects.filter(job=job).count()

    code, result, _ = impex_job(job.pk, "--cancel")

    assert code == 1
    assert result["cancelled"] is False and result["status"] == "completed"
    assert "only a queued or running job can be cancelled; nothing changed" in result["message"]
    assert ImportJob.objects.values().get(pk=job.pk) == before
    assert ImportEvent.objects.filter(job=job).count() == events


def test_a_running_job_cancelled_half_way_keeps_its_chunks_and_a_rerun_finishes_it_exactly(
    tmp_path, kore_connection, settings
):
    settings.IMPEX_CHUNK_ROWS = 4
    job, f, handle = started_file(tmp_path, kore_connection, customers(20))
    for _ in range(2):
        assert handle.chunk_apply(handle.chunk_claim())

    assert job_cancel(job_id=job.pk, by="alice") is True

    assert Customer.objects.count() == 8  # the committed chunks stay
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert jobs_requeue() == []  # its running file is not handed to a sweeper job: running it again finishes it
    assert ImportFile.objects.get(pk=f.pk).status == "running"

    code, result, _ = impex_job(job.pk)

    assert code == 0, result
    ((done,),) = [result["files"]]
    assert (done["status"], done["created"], done["failed"]) == ("imported", 20, 0)
    assert Customer.objects.count() == 20
    chunks = ImportChunk.objects.filter(file=f)
    assert set(chunks.values_list("status", flat=True)) == {"done"}
    assert sum(chunks.values_list("rows_done", flat=True)) == 20
    assert ImportedFileName.objects.filter(connection=kore_connection, name=f.name).count() == 1


def test_the_files_of_a_cancelled_job_pushed_again_go_in_once(tmp_path, kore_connection):
    first = tmp_path / "first"
    again = tmp_path / "again"
    first.mkdir()
    again.mkdir()
    job = job_create(paths=[write_kore(first, "KS_CUSTOMERS", 1, customers(3))], connection=kore_connection)
    assert job_cancel(job_id=job.pk, by="alice")
    repushed = job_create(paths=[write_kore(again, "KS_CUSTOMERS", 1, customers(3))], connection=kore_connection)

    assert impex_job(repushed.pk)[1]["files"][0]["status"] == "imported"  # the ledger did not hold the name
    code, result, _ = impex_job(job.pk)  # the cancelled job run later: its copy is the same file, a duplicate

    assert code == 0
    assert result["files"][0]["status"] == "duplicate"
    assert Customer.objects.count() == 3
    assert ImportedFileName.objects.filter(connection=kore_connection).count() == 1


def test_the_job_page_cancels_a_queued_job_after_asking(client, django_user_model, tmp_path, kore_connection):
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, customers(1))], connection=kore_connection)
    runner = staff_user(django_user_model, "runner", "impex.view_importjob", "impex.run_import")
    viewer = staff_user(django_user_model, "viewer", "impex.view_importjob")
    page = reverse("admin:impex_importjob_change", args=[job.pk])
    cancel = reverse("admin:impex_importjob_cancel", args=[job.pk])

    client.force_login(viewer)
    assert 'id="cancel-job"' not in client.get(page).content.decode()
    assert client.post(cancel).status_code == 403  # the server checks, whatever the page shows
    assert ImportJob.objects.get(pk=job.pk).status == "queued"

    client.force_login(runner)
    assert 'id="cancel-job"' in client.get(page).content.decode()
    asked = client.get(cancel)
    assert asked.status_code == 200 and 'id="job-cancel-submit"' in asked.content.decode()
    assert ImportJob.objects.get(pk=job.pk).status == "queued"  # a GET only asks
    done = client.post(cancel, follow=True)
    assert ImportJob.objects.get(pk=job.pk).status == "cancelled"
    text = done.content.decode()
    assert "is cancelled" in text and 'id="run-again"' in text and 'id="cancel-job"' not in text
    assert ImportEvent.objects.filter(job=job, kind="cancelled", worker="runner").count() == 1


def test_csrf_is_checked_on_cancel(django_user_model, tmp_path, kore_connection):
    from django.test import Client

    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, customers(1))], connection=kore_connection)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, "runner", "impex.view_importjob", "impex.run_import"))

    assert client.post(reverse("admin:impex_importjob_cancel", args=[job.pk])).status_code == 403
    assert ImportJob.objects.get(pk=job.pk).status == "queued"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="several processes share the database: PostgreSQL")
def test_a_job_cancelled_from_another_process_stops_its_workers_and_runs_again_to_the_end(tmp_path, kore_connection):
    from tests.test_workers import manage, wait_for

    rows = 60_000
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, customers(rows), mode="NET")
    job = job_create(paths=[path], connection=kore_connection)
    env = process_env(
        IMPEX_CHUNK_ROWS=1000,
        IMPEX_WORKERS=2,
        IMPEX_WORKERS_MIN_ROWS=1000,
        IMPEX_LEASE_SECONDS=6,
        IMPEX_POLL_SECONDS=0.1,
    )
    log = tmp_path / "worker.log"
    with open(log, "wb") as handle:
        worker = manage("impex_job", job.pk, "--json", env=env, log=handle)
        try:
            assert wait_for(lambda: ImportChunk.objects.filter(status="done").count() >= 3, seconds=240), (
                log.read_text()
            )
            cancel = subprocess.run(
                [sys.executable, "manage.py", "impex_job", str(job.pk), "--cancel", "--json"],
                cwd=settings.BASE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            worker.wait(timeout=240)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert json.loads(cancel.stdout.strip().splitlines()[-1])["cancelled"] is True
    assert worker.returncode == 1, log.read_text()  # a cancelled job did not import its files
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    f = ImportFile.objects.get(job=job)
    chunks = ImportChunk.objects.filter(file=f)
    done = chunks.filter(status="done").count()
    assert 3 <= done < chunks.count(), "it stopped at a chunk, before the end"
    assert not chunks.filter(status="running").exists() or wait_for(
        lambda: not chunks.filter(status="running").exists(), seconds=30
    )
    assert Customer.objects.count() == sum(chunks.filter(status="done").values_list("rows_done", flat=True))
    assert job.events.filter(kind="stopped").exists()
    assert f.status == "running"
    assert not ImportedFileName.objects.exists()

    code, result, _ = impex_job(job.pk)  # run again here: it finishes what was left

    assert code == 0, result
    assert (result["files"][0]["status"], result["files"][0]["created"]) == ("imported", rows)
    assert Customer.objects.count() == rows
    assert set(chunks.values_list("status", flat=True)) == {"done"}
    assert sum(chunks.values_list("rows_done", flat=True)) == rows
    assert ImportedFileName.objects.filter(connection=kore_connection, name=path.name).count() == 1
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED


def test_the_job_list_action_cancels_the_queued_and_running_and_skips_the_ended(
    client, django_user_model, tmp_path, kore_connection
):
    jobs = [
        job_create(paths=[write_kore(tmp_path / str(n), "KS_CUSTOMERS", n, customers(1))], connection=kore_connection)
        for n in (1, 2, 3)
        if (tmp_path / str(n)).mkdir() is None
    ]
    job_claim(job_id=jobs[1].pk, worker="w-1")
    ImportJob.objects.filter(pk=jobs[2].pk).update(status="completed")
    client.force_login(staff_user(django_user_model, "runner", "impex.view_importjob", "impex.run_import"))

    response = client.post(
        reverse("admin:impex_importjob_changelist"),
        {"action": "cancel", "_selected_action": [j.pk for j in jobs]},
        follow=True,
    )

    text = response.content.decode()
    assert f"Cancelled: #{jobs[0].pk}, #{jobs[1].pk}." in text
    assert f"Not cancelled (not queued or running): #{jobs[2].pk}." in text
    assert list(ImportJob.objects.order_by("pk").values_list("status", flat=True)) == [
        "cancelled",
        "cancelled",
        "completed",
    ]
