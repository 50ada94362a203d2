"""Issue 16 M1 for outbound webhooks: a subscription's URL must name a public host unless IMPEX_ALLOWED_HOSTS_OUTBOUND
lists it (refused when saved, by impex_webhook and the admin alike, and again when sending, without a connection);
a receiver's answer is kept short and shown only to who may change the subscription."""

import importlib
import io
import socket

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from impex.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.services.signed_post import BODY_SHOWN
from impex.tests.helpers import customer_row, run_import, write_kore
from tests.admin_helpers import admin_url, staff_user

MIGRATION = importlib.import_module("impex.migrations.0014_webhook_answers")
PUBLIC_URL = "https://93.184.216.34/hooks"
# What a receiver's answer may give away about the system behind it.
ANSWER = "Traceback: db=postgres://erp:hunter2@10.0.0.7/erp"


def impex_webhook(*args: str) -> None:
    call_command("impex_webhook", *args, stdout=io.StringIO())


def import_customer(tmp_path) -> None:
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C-1")]))
    assert code == 0, report


NOT_PUBLIC = [
    ("http://127.0.0.1:8000/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]:8000/hook", "loopback"),
    ("http://10.0.0.5/hook", "private"),
    ("http://192.168.1.20:8080/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://0.0.0.0:8000/hook", "address"),
]


@pytest.mark.parametrize(("url", "why"), NOT_PUBLIC)
def test_impex_webhook_refuses_a_host_that_is_not_public(db, nothing_listed, url, why):
    with pytest.raises(CommandError) as refused:
        impex_webhook("crm", "--url", url, "--events", "file.imported")

    assert why in str(refused.value) and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in str(refused.value)
    assert not WebhookSubscription.objects.exists()


def test_impex_webhook_keeps_the_url_it_had_when_the_new_one_is_refused(db, nothing_listed):
    impex_webhook("crm", "--url", PUBLIC_URL, "--events", "file.imported")

    with pytest.raises(CommandError, match="metadata"):
        impex_webhook("crm", "--url", "http://169.254.169.254/latest/")

    assert WebhookSubscription.objects.get().url == PUBLIC_URL


@pytest.mark.parametrize(("url", "why"), NOT_PUBLIC[:1] + NOT_PUBLIC[3:6])
def test_the_admin_refuses_a_host_that_is_not_public(admin_client, nothing_listed, url, why):
    add = admin_client.post(
        admin_url(WebhookSubscription, "add"),
        {"code": "crm", "url": url, "events": ["file.imported"], "timeout_seconds": "10", "max_attempts": "10"},
    )
    sub = WebhookSubscription.objects.create(code="other", url=PUBLIC_URL, events=["file.imported"])
    change = admin_client.post(
        admin_url(WebhookSubscription, "change", sub.pk),
        {"code": "other", "url": url, "events": ["file.imported"], "timeout_seconds": "10", "max_attempts": "10"},
    )

    for response in (add, change):
        assert response.status_code == 200
        (error,) = response.context["adminform"].form.errors["url"]
        assert why in error and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in error
    assert list(WebhookSubscription.objects.values_list("code", "url")) == [("other", PUBLIC_URL)]


def test_a_listed_host_is_taken(db, settings):
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["10.20.0.0/16", "erp.internal"]

    impex_webhook("crm", "--url", "http://10.20.3.4:8080/hook", "--events", "file.imported")

    assert WebhookSubscription.objects.get().url == "http://10.20.3.4:8080/hook"


def test_a_saved_url_no_longer_listed_still_lets_the_subscription_be_switched_off(db, settings):
    impex_webhook("crm", "--url", "http://127.0.0.1:9/hook", "--events", "file.imported")  # listed by the tests
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []

    impex_webhook("crm", "--off")

    assert WebhookSubscription.objects.get().enabled is False


def test_a_receiver_on_loopback_that_is_not_listed_gets_no_connection(tmp_path, kore_connection, settings):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        impex_webhook("crm", "--url", url, "--events", "file.imported")  # saved while loopback was listed
        settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []

        import_customer(tmp_path)  # delivers what is due before it returns

        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was ever made to the receiver's port

    delivery = WebhookDelivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # a refusal is not tried again
    for text in (attempt.message, delivery.last_error):
        assert "refused" in text and "loopback" in text and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in text
    assert attempt.http_status is None


def test_an_answer_is_kept_short(tmp_path, kore_connection, webhook_receiver):
    webhook_receiver.body = b"x" * 5000
    impex_webhook("crm", "--url", webhook_receiver.url, "--events", "file.imported")

    import_customer(tmp_path)

    attempt = WebhookDelivery.objects.get().attempt_log.get()
    assert attempt.ok and len(attempt.response.encode()) <= BODY_SHOWN


def test_an_answer_is_shown_only_to_who_may_change_the_subscription(
    tmp_path, kore_connection, webhook_receiver, client, django_user_model
):
    webhook_receiver.body = ANSWER.encode()
    webhook_receiver.answer_next(500)
    impex_webhook("crm", "--url", webhook_receiver.url, "--events", "file.imported", "--secret", "k")
    import_customer(tmp_path)
    delivery = WebhookDelivery.objects.get()
    pages = {
        "deliveries": admin_url(WebhookDelivery, "changelist"),
        "delivery": admin_url(WebhookDelivery, "change", delivery.pk),
        "search": admin_url(WebhookDelivery, "changelist") + "?q=hunter2",
    }
    deliveries = ("impex.view_webhookdelivery", "impex.view_webhookattempt")
    viewer = staff_user(django_user_model, "vic", *deliveries, "impex.view_webhooksubscription")
    editor = staff_user(django_user_model, "eve", *deliveries, "impex.change_webhooksubscription")

    client.force_login(viewer)
    seen_by_viewer = {name: client.get(url) for name, url in pages.items()}
    client.force_login(editor)
    seen_by_editor = client.get(pages["delivery"])

    attempt = delivery.attempt_log.get()
    assert attempt.response == ANSWER  # kept for who may change the subscription
    assert ANSWER not in attempt.message and ANSWER not in delivery.last_error
    assert "500 Internal Server Error" in delivery.last_error
    assert {name: page.status_code for name, page in seen_by_viewer.items()} == dict.fromkeys(pages, 200)
    assert [name for name in ("deliveries", "delivery") if "hunter2" in seen_by_viewer[name].text] == []
    assert list(seen_by_viewer["search"].context["cl"].result_list) == []  # nor found by searching for it
    assert "500 Internal Server Error" in seen_by_viewer["delivery"].text
    assert "each POST and what came back" in seen_by_viewer["delivery"].text  # the attempts, without answers
    assert "hunter2" in seen_by_editor.text


def test_the_migration_drops_answers_from_earlier_messages(db):
    sub = WebhookSubscription.objects.create(code="crm", url=PUBLIC_URL, events=["file.imported"])
    said = f"POST {PUBLIC_URL}: 503: {ANSWER}"
    delivery = WebhookDelivery.objects.create(
        subscription=sub,
        event="file.imported",
        payload={},
        attempts=1,
        last_error=f"{said} (try 1 of 10; next in 0:01:00)",
    )
    attempt = WebhookAttempt.objects.create(delivery=delivery, number=1, http_status=503, response=ANSWER, message=said)
    down = WebhookAttempt.objects.create(delivery=delivery, number=2, message=f"POST {PUBLIC_URL}: timed out")

    MIGRATION.drop_answers(apps, None)

    for row in (delivery, attempt, down):
        row.refresh_from_db()
    assert delivery.last_error == f"POST {PUBLIC_URL}: 503 (try 1 of 10; next in 0:01:00)"
    assert (attempt.message, attempt.response) == (f"POST {PUBLIC_URL}: 503", ANSWER)
    assert down.message == f"POST {PUBLIC_URL}: timed out"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        # urlsplit reads host 1.1.1.1 here, http.client 127.0.0.1: what is checked must be what is called.
        ("http://127.0.0.1:8899\\@1.1.1.1/x", "backslash"),
        ("http://127.0.0.1:8899 @1.1.1.1/x", "space"),
        ("http://user:s3cretpw@93.184.216.34/hook", "user names and passwords"),
        ("https://token@93.184.216.34/hook", "user names and passwords"),
    ],
)
def test_a_url_parsers_read_differently_or_holding_a_login_is_refused(db, nothing_listed, url, why):
    with pytest.raises(CommandError, match=why):
        impex_webhook("crm", "--url", url, "--events", "file.imported")

    assert not WebhookSubscription.objects.exists()


def test_a_url_saved_before_the_checks_that_cannot_be_called_fails_its_delivery_and_the_pass_goes_on(
    tmp_path, kore_connection, webhook_receiver
):
    impex_webhook("bad", "--url", PUBLIC_URL, "--events", "file.imported")
    impex_webhook("good", "--url", webhook_receiver.url, "--events", "file.imported")
    WebhookSubscription.objects.filter(code="bad").update(url="http://127.0.0.1:8899\\@1.1.1.1/x")

    import_customer(tmp_path)  # delivers what is due before it returns, in one pass

    bad = WebhookDelivery.objects.get(subscription__code="bad")
    good = WebhookDelivery.objects.get(subscription__code="good")
    assert (bad.status, bad.attempts) == ("failed", 1)  # not tried again: the URL will not parse next time either
    assert "cannot be called" in bad.last_error
    assert good.status == "delivered" and len(webhook_receiver.received) == 1


def test_a_password_in_a_url_saved_before_the_checks_is_kept_out_of_messages(tmp_path, kore_connection):
    impex_webhook("crm", "--url", PUBLIC_URL, "--events", "file.imported")
    WebhookSubscription.objects.update(url="http://user:s3cretpw@no-such-host.invalid/hook")

    import_customer(tmp_path)

    delivery = WebhookDelivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert "s3cretpw" not in attempt.message and "s3cretpw" not in delivery.last_error
    assert "***" in delivery.last_error
