"""Sequence waits (alerts and release), contact e-mails and job progress."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from impex.models import Connection, ImportFile
from impex.runner import run_job
from impex.services.jobs import job_create
from impex.services.waits import connection_release_wait, wait_alerts_send
from syncapp.models import Customer

HEADER = "customer_id\temail"


def customers_file(folder, seq, *rows):
    path = folder / f"ERP_{seq:07d}_INT1_KS_CUSTOMERS.NET"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def run(paths, connection):
    return run_job(job_create(paths=paths, connection=connection).pk)


@pytest.fixture
def contacts(kore_connection):
    Connection.objects.filter(pk=kore_connection.pk).update(contacts="ops@example.com, it@example.com")
    kore_connection.refresh_from_db()
    return kore_connection


def test_waiting_file_alerts_the_contacts_once_past_the_alert_time(
    tmp_path, contacts, django_capture_on_commit_callbacks
):
    run([customers_file(tmp_path, 1, "C1\tc1@example.com")], contacts)
    run([customers_file(tmp_path, 3, "C3\tc3@example.com")], contacts)
    waiting = ImportFile.objects.get(name__contains="0000003")
    assert waiting.status == "waiting"
    assert waiting.message == "waiting for sequence 2"
    mail.outbox.clear()

    assert wait_alerts_send(now=timezone.now()) == 0
    later = timezone.now() + timedelta(minutes=contacts.sequence_wait_alert_minutes + 1)
    with django_capture_on_commit_callbacks(execute=True):  # the problem's mail goes once its transaction commits
        assert wait_alerts_send(now=later) == 1
        assert wait_alerts_send(now=later) == 0

    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "it@example.com"]
    assert "ERP_0000003_INT1_KS_CUSTOMERS.NET" in message.body
    assert "waiting for sequence 2" in message.body


def test_admin_release_queues_a_job_that_imports_the_waiting_files_in_order(
    tmp_path, kore_connection, django_capture_on_commit_callbacks
):
    first = run([customers_file(tmp_path, 1, "C1\tc1@example.com")], kore_connection)
    fourth = run([customers_file(tmp_path, 4, "C1\tc1-four@example.com")], kore_connection)
    third = run([customers_file(tmp_path, 3, "C1\tc1-three@example.com")], kore_connection)
    assert ImportFile.objects.filter(status="waiting").count() == 2

    with django_capture_on_commit_callbacks() as queued:
        job = connection_release_wait(connection=kore_connection, created_by="admin")

    assert (job.status, len(queued)) == ("queued", 1)  # handed to the cluster, not run in the request
    assert Customer.objects.get(customer_id="C1").email == "c1@example.com"

    job = run_job(job.pk)

    assert job.status == "completed"
    assert sorted(job.processed_files.values_list("name", "status")) == [
        ("ERP_0000003_INT1_KS_CUSTOMERS.NET", "imported"),
        ("ERP_0000004_INT1_KS_CUSTOMERS.NET", "imported"),
    ]
    # Each file stays in the job it came with; the release job records that it imported them.
    assert list(third.files.values_list("status", "message")) == [("imported", "")]
    assert list(fourth.files.values_list("status", "message")) == [("imported", "")]
    assert job.events.filter(kind="taken-up").count() == 2
    assert third.events.filter(kind="taken-up", message__contains=f"imported by job #{job.pk}").exists()
    assert first.files.get().status == "imported"
    assert Customer.objects.get(customer_id="C1").email == "c1-four@example.com"
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 5
    assert connection_release_wait(connection=kore_connection) is None


def test_a_job_with_refused_rows_mails_the_contacts(tmp_path, contacts, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        job = run([customers_file(tmp_path, 1, "C1\tc1@example.com", "C2\t")], contacts)

    assert job.status == "completed"
    (message,) = mail.outbox
    assert f"import job #{job.pk} has errors" in message.subject
    assert "1 row refused" in message.body


def test_a_clean_job_mails_nobody_and_reports_its_progress(
    tmp_path, contacts, settings, django_capture_on_commit_callbacks
):
    settings.IMPEX_CHUNK_ROWS = 2
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        job = run([customers_file(tmp_path, 1, *(f"C{n}\tc{n}@example.com" for n in range(5)))], contacts)

    assert mail.outbox == []
    assert (job.rows_total, job.rows_done) == (5, 5)
    f = job.files.get()
    assert f.chunks.count() == 3
    assert set(f.chunks.values_list("status", flat=True)) == {"done"}
    assert job.events.filter(kind="imported", message__contains="imported: 5 created").exists()


def test_statistics_are_refreshed_while_a_file_grows_a_table(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 3
    settings.IMPEX_ANALYZE_MIN_ROWS = 2
    rows = [f"C{n}\tc{n}@example.com" for n in range(20)]

    job = run([customers_file(tmp_path, 1, *rows)], kore_connection)

    assert job.status == "completed"
    assert Customer.objects.count() == 20
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'syncapp_customer'")
            assert cursor.fetchone()[0] >= 9  # analysed at 2, 4, 8 and 16 rows: the planner knows it grew


def test_the_contacts_mail_lists_every_rejected_file_and_refused_rows(
    tmp_path, contacts, django_capture_on_commit_callbacks
):
    bad_zip = tmp_path / "broken.zip"
    bad_zip.write_bytes(b"PK\x03\x04 not really a zip")
    bad_name = tmp_path / "ERP_0000001_INT1_KS_NOTHING.NET"
    bad_name.write_text(HEADER + "\nC1\tc1@example.com\n", encoding="utf-8")
    rows = customers_file(tmp_path, 1, "C1\tc1@example.com", "C2\t")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        job = run([bad_zip, bad_name, rows], contacts)

    assert job.status == "failed"
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "it@example.com"]
    body = message.body
    assert "- broken.zip: rejected: broken.zip: the zip archive is damaged or truncated" in body
    assert "- ERP_0000001_INT1_KS_NOTHING.NET: rejected:" in body
    assert "- ERP_0000001_INT1_KS_CUSTOMERS.NET: 1 row refused" in body
