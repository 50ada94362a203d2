"""Who started it (issue 16, L8): every admin action that starts work records the user, on the work and in its log."""

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone
from django_q.models import OrmQ

from impex.models import (
    Connection,
    DataDescriptor,
    DataGroup,
    ExportRun,
    ImportJob,
    SentFile,
    WebhookDelivery,
    WebhookSubscription,
)
from impex.services.export_runs import export_run
from impex.services.lifecycle import job_claim, job_terminate
from impex.tasks import export_group_run, inbox_scan
from impex.tests.helpers import aged, customer_row, inbox_of, run_import, write_kore
from tests.admin_helpers import admin_url, staff_user


@pytest.fixture(autouse=True)
def quick(settings):
    """Scans take the files at once; passwords hash cheaply."""
    settings.IMPEX_INBOX_QUIET_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(client, django_user_model):
    """A staff user who may run imports and exports and see what they start, logged in."""
    perms = [
        "impex.view_connection",
        "impex.view_importjob",
        "impex.run_import",
        "impex.view_datagroup",
        "impex.view_sentfile",
        "impex.export_data",
        "impex.view_webhookdelivery",
        "impex.change_webhookdelivery",
    ]
    client.force_login(staff_user(django_user_model, "operator", *perms))
    return client


def action(client, model, name: str, *objects, **extra):
    data = {"action": name, "_selected_action": [o.pk for o in objects], "index": "0", **extra}
    return client.post(admin_url(model, "changelist"), data)


def test_sync_now_records_who_asked_on_the_scan_its_job_and_the_connections_history(
    operator, kore_connection, django_capture_on_commit_callbacks
):
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1")]))

    with django_capture_on_commit_callbacks(execute=True):
        operator.post(admin_url(Connection, "sync_now", kore_connection.pk))
    (task,) = OrmQ.objects.all()
    with django_capture_on_commit_callbacks(execute=True):
        summary = inbox_scan(*task.task["args"])

    assert task.task["args"] == (kore_connection.pk, "operator")
    assert summary.endswith("(Sync now by operator)")
    job = ImportJob.objects.get()
    assert (job.source, job.created_by) == ("scan", "operator")
    assert "(Sync now by operator)" in job.events.get(kind="note").message
    entry = LogEntry.objects.get(object_id=str(kore_connection.pk))
    assert (entry.user.username, entry.change_message) == ("operator", "Sync now: a scan of the inbox queued.")


def test_releasing_a_wait_records_the_user_on_the_job_it_queues(operator, tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")]))

    action(
        operator,
        Connection,
        "release_sequence_wait",
        kore_connection,
        post="yes",
        **{f"sequence_{kore_connection.pk}": "3"},
    )

    job = ImportJob.objects.latest("pk")
    assert (job.source, job.created_by) == ("admin", "operator")
    assert "sequence wait released by operator" in job.events.get(kind="queued").message


def test_running_a_job_again_records_the_user(operator, tmp_path, kore_connection):
    code, _ = run_import(write_kore(tmp_path, "KS_NOTHING", 1, [{"x": "1"}]))
    failed = ImportJob.objects.get()
    errored = ImportJob.objects.create(connection=kore_connection)
    job_claim(job_id=errored.pk, worker="w-1")
    job_terminate(job=errored, worker="w-1", status="errored", error="the server went away")

    action(operator, ImportJob, "run_again", failed, errored)

    again = ImportJob.objects.exclude(pk__in=[failed.pk, errored.pk]).get()
    assert (code, again.created_by) == (1, "operator")
    assert f"job #{failed.pk} run again by operator" in again.events.get(kind="queued").message
    assert errored.events.filter(kind="requeued", message="queued again: run again by operator").exists()


def test_run_export_now_and_send_again_record_the_user_on_the_run(
    operator, db, tmp_path, django_capture_on_commit_callbacks
):
    outbox = tmp_path / "out"
    outbox.mkdir()
    group = DataGroup.objects.create(code="customers-out", name="Out", direction="export", destination=str(outbox))
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))

    with django_capture_on_commit_callbacks(execute=True):
        operator.post(admin_url(DataGroup, "run_export", group.pk))
    export_group_run(*OrmQ.objects.get().task["args"])
    run = ExportRun.objects.get()
    action(operator, SentFile, "send_again", SentFile.objects.get(run=run))

    again = ExportRun.objects.exclude(pk=run.pk).get()
    assert (run.created_by, again.created_by) == ("operator", "operator")
    assert run.events.get(status="queued").message == "queued (admin, by operator)"
    assert again.events.get(status="queued").message.endswith("again, by operator")
    assert export_run(group_id=group.pk, trigger="schedule").created_by == ""


def test_sending_webhook_deliveries_again_records_the_user_in_their_history(operator, db):
    subscription = WebhookSubscription.objects.create(
        code="erp", url="http://127.0.0.1:9/hook", events=["customer.created"]
    )
    delivery = WebhookDelivery.objects.create(
        subscription=subscription,
        event="customer.created",
        payload={},
        status="failed",
        next_attempt_at=timezone.now(),
    )

    action(operator, WebhookDelivery, "retry", delivery)

    delivery.refresh_from_db()
    assert delivery.status == "pending"
    entry = LogEntry.objects.get(object_id=str(delivery.pk))
    assert (entry.user.username, entry.change_message) == ("operator", "Sent again from its first try.")
