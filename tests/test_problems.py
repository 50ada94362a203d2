"""Nothing fails silently (SPEC 8): each failing path raises a problem, mailed once, shown on the home page and in
GET /api/problems/, and resolved by the thing's next success or by hand."""

import io
import threading
from datetime import timedelta

import pytest
from django import db
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from impex import tasks
from impex.models import Connection, DataDescriptor, DataGroup, ImportFile, ImportJob, Problem, WebhookDelivery
from impex.runner import run_job
from impex.services.export_runs import export_run
from impex.services.waits import connection_release_wait, wait_alerts_send
from impex.services.webhooks import webhook_retry, webhooks_deliver_pass
from impex.tests.helpers import customer_row, product_row, run_import, write_kore
from orders.models import Order, OrderFlag
from orders.services import flag_retry, order_transition
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row
from syncapp.models import Customer
from syncapp.record_events import record_events_pass
from tests.admin_helpers import staff_user

CONTACTS = "ops@example.com"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def kore(kore_connection):
    """The Kore connection with a contact."""
    Connection.objects.filter(pk=kore_connection.pk).update(contacts=CONTACTS)
    kore_connection.refresh_from_db()
    return kore_connection


@pytest.fixture
def mails(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (the problems' mails) of the test's block and return the mails sent."""
    mail.outbox.clear()
    return django_capture_on_commit_callbacks


def open_problems(**filters) -> list[Problem]:
    return list(Problem.objects.filter(resolved_at__isnull=True, **filters).order_by("pk"))


def scan() -> int:
    code = 0
    try:
        call_command("impex_scan", "--json", stdout=io.StringIO(), stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    return code


def test_a_rejected_file_is_a_job_problem_mailed_once_that_the_next_clean_job_or_running_it_again_resolves(
    tmp_path, client, admin_client, django_user_model, kore, mails
):
    bad = tmp_path / "ERP_0000001_INT1_KS_NOTHING.NET"
    bad.write_text("customer_id\temail\nC1\tc1@example.com\n", encoding="utf-8")

    with mails(execute=True):
        code, _ = run_import(bad, connection=kore.code)

    assert code != 0
    job = ImportJob.objects.get()
    assert job.status == "failed"
    (problem,) = open_problems()
    assert (problem.connection, problem.kind, problem.key) == (kore, "import-job", f"job:{job.pk}")
    assert "ERP_0000001_INT1_KS_NOTHING.NET: rejected" in problem.message
    assert problem.url == reverse("admin:impex_importjob_change", args=[job.pk])
    assert f'<a href="{problem.url}">run again</a>' in admin_client.get(reverse("admin:index")).text  # failed
    (message,) = mail.outbox
    assert message.to == [CONTACTS]
    assert message.subject == f"[impex-hub] kore-erp: import job #{job.pk} has errors"
    assert problem.url in message.body

    with mails(execute=True):
        code, _ = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection=kore.code)

    assert code == 0
    problem.refresh_from_db()
    assert (problem.resolved_by, problem.resolved_at is not None) == ("auto", True)  # the connection imports again
    assert len(mail.outbox) == 1  # a clean job mails nobody

    bad = tmp_path / "ERP_0000002_INT1_KS_NOTHING.NET"
    bad.write_text("customer_id\temail\nC1\tc1@example.com\n", encoding="utf-8")
    with mails(execute=True):
        run_import(bad, connection=kore.code)
    (problem,) = open_problems()
    client.force_login(staff_user(django_user_model, "ana", "impex.view_importjob", "impex.run_import"))
    response = client.post(reverse("admin:impex_importjob_run_again", args=[int(problem.key.split(":")[1])]))

    assert response.status_code == 302
    problem.refresh_from_db()
    assert (problem.resolved_by, problem.resolved_at is not None) == ("ana", True)


def test_refused_rows_are_a_job_problem_that_the_connection_s_next_clean_job_resolves(
    tmp_path, kore, mails, admin_client
):
    with mails(execute=True):
        code, _ = run_import(
            write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email="")]), connection=kore.code
        )

    job = ImportJob.objects.get()
    assert (code, job.status) == (0, "completed")
    (problem,) = open_problems()
    assert (problem.kind, problem.key) == ("import-job", f"job:{job.pk}")
    assert "1 row refused" in problem.message
    # The job completed: its page shows the refused rows and offers no "Run again", nor does the home page.
    home = admin_client.get(reverse("admin:index")).text
    assert f'<a href="{problem.url}">open the job</a>' in home and "run again" not in home

    with mails(execute=True):
        code, _ = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")]), connection=kore.code)

    assert code == 0
    problem.refresh_from_db()
    assert (problem.resolved_by, problem.resolved_at is not None) == ("auto", True)
    assert len(mail.outbox) == 1


def test_an_errored_job_stays_a_problem_through_other_clean_jobs_until_it_is_run_again_and_completes(
    tmp_path, client, django_user_model, kore, mails, settings
):
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = []
    elsewhere = tmp_path / "elsewhere"  # outside the roots: the job cannot use the connection's error folder
    elsewhere.mkdir()
    error_folder = kore.error_folder
    Connection.objects.filter(pk=kore.pk).update(error_folder=str(elsewhere))
    with mails(execute=True):
        code, _ = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection=kore.code)

    errored = ImportJob.objects.get()
    assert (code, errored.status) == (1, "errored")
    (problem,) = open_problems()
    assert problem.key == f"job:{errored.pk}"
    assert len(mail.outbox) == 1

    Connection.objects.filter(pk=kore.pk).update(error_folder=error_folder)  # mended
    with mails(execute=True):
        code, _ = run_import(
            write_kore(tmp_path, "KS_PRODUCTS", 1, [product_row("P1", "V1", "SKU-1")]), connection=kore.code
        )

    assert code == 0
    assert open_problems() == [problem]  # an unrelated clean job does not finish the errored one

    client.force_login(staff_user(django_user_model, "ana", "impex.view_importjob", "impex.run_import"))
    with mails(execute=True):
        response = client.post(reverse("admin:impex_importjob_run_again", args=[errored.pk]))
    assert response.status_code == 302
    assert open_problems() == [problem]  # queued again, not yet done
    assert tasks.import_job_run(errored.pk) == "completed"

    problem.refresh_from_db()
    assert (problem.resolved_by, problem.resolved_at is not None) == ("auto", True)
    assert Customer.objects.filter(customer_id="C1").exists()
    assert len(mail.outbox) == 1


def test_an_unreadable_inbox_is_one_problem_mailed_once_however_often_it_fails_and_a_good_scan_resolves_it(
    tmp_path, kore, mails
):
    Connection.objects.filter(pk=kore.pk).update(inbox=str(tmp_path / "not-there"))

    with mails(execute=True):
        assert scan() == 1
        assert scan() == 1

    (problem,) = open_problems()
    assert (problem.kind, problem.key, problem.count) == ("inbox", "scan:kore-erp", 2)
    assert "not-there" in problem.message
    (message,) = mail.outbox
    assert message.subject == "[impex-hub] kore-erp: the inbox cannot be scanned"
    assert "The scan of kore-erp's inbox failed:\n\n" in message.body and "not-there" in message.body
    assert "Files that arrive there are not imported until this is fixed. You get this mail once;" in message.body

    (tmp_path / "not-there").mkdir()
    with mails(execute=True):
        assert scan() == 0

    assert open_problems() == []
    assert len(mail.outbox) == 1


def test_a_sequence_wait_past_its_alert_time_is_a_problem_until_the_wait_is_released(tmp_path, kore, mails):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection=kore.code)
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")]), connection=kore.code)
    later = timezone.now() + timedelta(minutes=kore.sequence_wait_alert_minutes + 1)

    with mails(execute=True):
        assert wait_alerts_send(now=timezone.now()) == 0
        assert wait_alerts_send(now=later) == 1

    (problem,) = open_problems()
    assert (problem.kind, problem.key) == ("sequence-wait", "sequence-wait:kore-erp")
    assert "ERP_0000003_INT1_KS_CUSTOMERS.NET" in problem.message and "waiting for sequence 2" in problem.message
    (message,) = mail.outbox
    assert message.subject == "[impex-hub] kore-erp: 1 file waiting for a missing sequence"
    assert "These files of kore-erp wait for an earlier sequence that has not arrived:\n\n" in message.body
    assert "- ERP_0000003_INT1_KS_CUSTOMERS.NET: waiting for sequence 2 (since " in message.body
    assert "release the wait in the admin (Connections > Release the sequence wait)" in message.body

    job = connection_release_wait(connection=kore, created_by="ana")
    assert open_problems() == [problem]  # released, not yet imported
    run_job(job.pk)

    assert open_problems() == []
    assert Customer.objects.filter(customer_id="C3").exists()


def test_a_problem_whose_mail_failed_is_mailed_by_its_next_raise_or_by_the_periodic_task(
    tmp_path, kore, mails, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # a mail server that is down
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    Connection.objects.filter(pk=kore.pk).update(inbox=str(tmp_path / "not-there"))
    with mails(execute=True):
        assert scan() == 1

    (problem,) = open_problems()
    assert problem.mailed_at is None  # not sent: not marked as sent

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # the server is back
    mail.outbox.clear()
    with mails(execute=True):
        assert scan() == 1  # raised again: its mail goes now

    problem.refresh_from_db()
    assert (problem.count, problem.mailed_at is not None) == (2, True)
    (message,) = mail.outbox
    assert message.subject == "[impex-hub] kore-erp: the inbox cannot be scanned"
    with mails(execute=True):
        assert scan() == 1
    assert len(mail.outbox) == 1  # once sent, never again

    # A problem not raised again is mailed by the every-few-minutes task, a minute after it was raised.
    Problem.objects.filter(pk=problem.pk).update(resolved_at=timezone.now())
    Connection.objects.filter(pk=kore.pk).update(inbox=str(tmp_path / "still-not-there"))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # down again
    with mails(execute=True):
        assert scan() == 1
    (second,) = open_problems()
    assert second.mailed_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox.clear()

    assert tasks.sequence_wait_alerts() == 0
    assert mail.outbox == []  # raised under a minute ago: its own mail may still be on its way
    Problem.objects.filter(pk=second.pk).update(since=timezone.now() - timedelta(minutes=2))
    assert tasks.sequence_wait_alerts() == 0
    (message,) = mail.outbox
    assert "still-not-there" in message.body
    assert tasks.sequence_wait_alerts() == 0
    assert len(mail.outbox) == 1


def test_a_failing_scheduled_export_is_a_problem_until_the_group_s_next_run_completes(tmp_path, kore, mails):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the destination's folder should be")
    group = DataGroup.objects.create(
        code="customers-out", name="Customers out", direction="export", connection=kore, destination=str(blocker / "in")
    )
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))

    with mails(execute=True):
        failed = export_run(group_id=group.pk, trigger="schedule")

    assert failed.status == "failed"
    (problem,) = open_problems()
    assert (problem.kind, problem.key, problem.connection) == ("export", "export-group:customers-out", kore)
    assert str(blocker) in problem.message
    assert problem.url == reverse("admin:impex_datagroup_change", args=[group.pk])
    assert len(mail.outbox) == 1

    DataGroup.objects.filter(pk=group.pk).update(destination=str(tmp_path / "good"))
    assert export_run(group_id=group.pk, trigger="schedule").status == "completed"

    assert open_problems() == []


def test_an_exporter_out_of_tries_is_a_problem_until_it_delivers_the_order(tmp_path, kore, webhook_receiver, mails):
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url, "--max-attempts", "1")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    webhook_receiver.answer_next(500)

    with mails(execute=True):
        (run,) = export_pass()

    assert run["status"] == "failed"
    order = Order.objects.get(order_id="O1")
    (problem,) = open_problems()
    assert (problem.kind, problem.key, problem.connection) == ("exporter", "exporter:crm:order:O1", kore)
    assert "gave up after 1 tries" in problem.message
    assert problem.url == reverse("admin:orders_order_change", args=[order.pk])
    (message,) = mail.outbox
    assert message.subject == "[impex-hub] kore-erp: exporter gave up" and message.to == [CONTACTS]

    from django.contrib.auth import get_user_model

    flag_retry(flag=OrderFlag.objects.get(order=order), user=get_user_model().objects.create(username="retrier"))
    (run,) = export_pass()

    assert run["status"] == "done"
    assert open_problems() == []


def test_a_webhook_delivery_given_up_is_a_hub_wide_problem_mailed_to_admins_until_delivered(
    tmp_path, kore, webhook_receiver, settings, mails
):
    settings.ADMINS = [("Hub admin", "admin@example.com")]
    call_command(
        "impex_webhook", "crm", "--url", webhook_receiver.url, "--events", "file.imported", stdout=io.StringIO()
    )
    from impex.models import WebhookSubscription

    WebhookSubscription.objects.update(max_attempts=1)
    webhook_receiver.answer_next(500)

    with mails(execute=True):  # impex_import delivers its file's webhooks before it exits
        run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection=kore.code)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    (problem,) = open_problems()
    assert (problem.kind, problem.key, problem.connection) == ("webhook", f"webhook-delivery:{delivery.pk}", None)
    (message,) = mail.outbox
    assert message.to == ["admin@example.com"] and message.subject == "[impex-hub] hub: webhook delivery given up"

    assert webhook_retry(deliveries=WebhookDelivery.objects.all()) == 1
    (report,) = webhooks_deliver_pass()

    assert report.status == "delivered"
    assert open_problems() == []


def test_a_shipment_event_that_fails_for_good_is_a_problem_of_its_connection(tmp_path, kore, api, mails):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O2")], [line_row("O2", 1)])
    order_transition(order=Order.objects.get(order_id="O2"), transition="cancel", by="test")
    event = {"event_id": "E1", "shipment_id": "S1", "order_id": "O2", "shipped_at": "2026-11-02T10:00:00Z"}
    assert api.post("/api/feeds/shipments/", {"events": [event]}).status_code == 202

    with mails(execute=True):
        call_command("orders_feed", "--json", stdout=io.StringIO())

    (problem,) = open_problems()
    assert (problem.kind, problem.connection) == ("feed-event", kore)
    assert "order O2 is cancelled" in problem.message
    assert len(mail.outbox) == 1


def test_a_single_record_update_that_fails_for_good_is_a_problem_until_its_record_updates(
    tmp_path, kore, api, settings, mails
):
    settings.IMPEX_EVENT_MAX_ATTEMPTS = 1
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C-1")]), connection=kore.code)
    api.post("/api/events/customers/", {"customer_id": "C-3", "email": "c3@x.example", "parent_customer_id": "NOPE"})

    with mails(execute=True):
        (report,) = record_events_pass()

    assert report.status == "failed"
    (problem,) = open_problems()
    assert (problem.kind, problem.key, problem.connection) == ("record-event", f"record-event:{report.event}", kore)
    assert "unknown customer 'NOPE'" in problem.message
    assert len(mail.outbox) == 1

    api.post("/api/events/customers/", {"customer_id": "C-3", "email": "c3@x.example", "parent_customer_id": "C-1"})
    (report,) = record_events_pass()

    assert report.status == "applied"
    assert open_problems() == []


# Where they show: the home page, the admin list, the API.


def some_problems(kore, other) -> list[Problem]:
    from impex.services.problems import problem_raise

    return [
        problem_raise(kind="inbox", key="scan:kore-erp", connection=kore, message="cannot read", url="/admin/x/"),
        problem_raise(kind="export", key="export-group:out", connection=other, message="disk full", url="/admin/y/"),
    ]


def test_the_api_lists_the_open_problems_of_the_caller_s_connection_only(api, kore, bspk_connection):
    mine, _ = some_problems(kore, bspk_connection)
    resolved = Problem.objects.create(connection=kore, kind="inbox", key="scan:old", message="old")
    resolved.resolved_at = timezone.now()
    resolved.save()

    response = api.get("/api/problems/")

    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "id": mine.pk,
                "kind": "inbox",
                "message": "cannot read",
                "since": mine.since.isoformat().replace("+00:00", "Z"),
                "url": "/admin/x/",
            }
        ]
    }


def test_the_api_wants_a_token(client, db):
    assert client.get("/api/problems/").status_code == 401


def test_the_home_page_shows_what_needs_attention_to_those_who_may_see_problems(
    client, django_user_model, kore, bspk_connection
):
    some_problems(kore, bspk_connection)
    viewer = staff_user(django_user_model, "viewer", "impex.view_problem")
    other = staff_user(django_user_model, "other", "impex.view_importjob")

    client.force_login(viewer)
    page = client.get(reverse("admin:index")).text

    assert "Needs attention (2)" in page
    assert '<a href="/admin/x/">open the connection</a>' in page
    assert '<a href="/admin/y/">run again</a>' in page
    assert "cannot read" in page and "disk full" in page

    client.force_login(other)
    assert "Needs attention" not in client.get(reverse("admin:index")).text


def test_mark_resolved_needs_the_change_permission(client, django_user_model, kore, bspk_connection):
    problems = some_problems(kore, bspk_connection)
    viewer = staff_user(django_user_model, "viewer", "impex.view_problem")
    changer = staff_user(django_user_model, "changer", "impex.view_problem", "impex.change_problem")
    url = reverse("admin:impex_problem_changelist")
    post = {"action": "mark_resolved", "_selected_action": [p.pk for p in problems]}

    client.force_login(viewer)
    client.post(url, post)
    assert len(open_problems()) == 2

    client.force_login(changer)
    response = client.post(url, post, follow=True)

    assert "2 problems marked resolved." in response.text
    assert open_problems() == []
    assert set(Problem.objects.values_list("resolved_by", flat=True)) == {"changer"}
    assert "Needs attention (0)" in client.get(reverse("admin:index")).text


def test_the_schema_lists_the_problems_endpoint(api):
    schema = api.get("/api/schema/?format=json").json()

    assert "/api/problems/" in schema["paths"]
    answer = schema["paths"]["/api/problems/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    listed = schema["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]
    assert listed["properties"]["results"]["type"] == "array"
    (problem,) = {
        name for name, value in schema["components"]["schemas"].items() if "kind" in value.get("properties", {})
    }
    assert set(schema["components"]["schemas"][problem]["properties"]) == {"id", "kind", "message", "since", "url"}


# Several workers at once (PostgreSQL: SQLite has one writer and no row locks).


@pytest.mark.skipif(connection.vendor != "postgresql", reason="workers racing on one database: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_two_workers_raising_the_same_problem_at_once_make_one_problem_and_one_mail(builtin_installed, tmp_path):
    kore = Connection.objects.create(
        code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1", contacts=CONTACTS
    )
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection=kore.code)
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")]), connection=kore.code)
    ImportFile.objects.filter(status="waiting").update(waiting_since=timezone.now() - timedelta(days=2))
    mail.outbox.clear()
    start = threading.Barrier(2)
    raised = []

    def worker():
        try:
            start.wait()
            raised.append(tasks.sequence_wait_alerts())  # the every-minute task, as two clusters run it
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(raised) in ([0, 1], [1, 1])  # the second one finds it raised, or updates the open one
    (problem,) = open_problems()
    assert problem.key == "sequence-wait:kore-erp" and problem.mailed_at is not None
    assert len(mail.outbox) == 1
