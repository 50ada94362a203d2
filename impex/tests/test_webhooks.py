"""Outbound webhooks (SPEC section 10): customer.created, customer.updated and file.imported, delivered after
commit to a receiver on loopback, signed, one event per batch of ids, retried with back-off, every attempt logged."""

import hashlib
import hmac
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from impex.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.services.webhooks import webhook_retry, webhooks_deliver_pass
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.record_events import record_events_pass

SECRET = "s3cret"


def subscribe(receiver, events="customer.created,customer.updated,file.imported", code="crm", *extra) -> dict:
    out = io.StringIO()
    call_command(
        "impex_webhook",
        code,
        "--url",
        receiver.url,
        "--events",
        events,
        "--secret",
        SECRET,
        *extra,
        "--json",
        stdout=out,
    )
    return json.loads(out.getvalue().strip().splitlines()[-1])


def received(receiver) -> list[dict]:
    return [r.json for r in receiver.received]


def import_customers(tmp_path, sequence: int, rows: list[dict], **options) -> dict:
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", sequence, rows), **options)
    assert code == 0, report
    return report


def make_due() -> None:
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_impex_webhook_creates_and_updates_a_subscription(db, webhook_receiver):
    created = subscribe(webhook_receiver)
    assert created == {
        "webhook": "crm",
        "created": True,
        "url": webhook_receiver.url,
        "events": ["customer.created", "customer.updated", "file.imported"],
        "signed": True,
        "enabled": True,
    }

    out = io.StringIO()
    call_command("impex_webhook", "crm", "--events", "file.imported", "--off", "--json", stdout=out)

    updated = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (updated["created"], updated["events"], updated["enabled"]) == (False, ["file.imported"], False)
    assert WebhookSubscription.objects.get().url == webhook_receiver.url


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "ftp://x", "--events", "file.imported"], "http:// or https://"),
        (["--url", "http://x/", "--events", "order.shipped"], "unknown event order.shipped"),
        (["--url", "http://x/"], "name at least one event"),
    ],
)
def test_impex_webhook_refuses_what_cannot_work(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("impex_webhook", "bad", *args, stdout=io.StringIO())
    assert not WebhookSubscription.objects.exists()


def test_a_file_sends_one_event_per_batch_with_the_ids_signed(tmp_path, kore_connection, webhook_receiver):
    subscribe(webhook_receiver)

    import_customers(tmp_path, 1, [customer_row(f"C-{n}") for n in range(1, 6)])

    bodies = received(webhook_receiver)
    assert sorted(b["event"] for b in bodies) == ["customer.created", "file.imported"]
    created = next(b for b in bodies if b["event"] == "customer.created")
    assert created["data"]["customer_ids"] == ["C-1", "C-2", "C-3", "C-4", "C-5"]
    assert created["data"]["count"] == 5
    assert created["data"]["source"] == "file"
    assert created["connection"] == "kore-erp"
    imported = next(b for b in bodies if b["event"] == "file.imported")
    assert imported["data"]["file"] == "ERP_0000001_INT1_KS_CUSTOMERS.NET"
    assert (imported["data"]["created"], imported["data"]["descriptor"]) == (5, "KS_CUSTOMERS")
    for request in webhook_receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Signature"] == expected
        assert request.headers["X-Event-Id"] == request.json["id"]
    assert WebhookAttempt.objects.filter(ok=True, http_status=200).count() == 2


def test_only_changed_records_are_announced_and_in_batches(tmp_path, kore_connection, webhook_receiver, settings):
    import_customers(tmp_path, 1, [customer_row(f"C-{n}") for n in range(1, 6)])
    subscribe(webhook_receiver, "customer.created,customer.updated")
    settings.IMPEX_WEBHOOK_BATCH_IDS = 2

    rows = [customer_row(f"C-{n}") for n in range(1, 6)]
    rows[1]["first_name"] = "Changed"
    rows[3]["first_name"] = "Changed"
    rows[4]["first_name"] = "Changed"
    import_customers(tmp_path, 2, [*rows, customer_row("C-6")])

    events = sorted((b["event"], tuple(b["data"]["customer_ids"])) for b in received(webhook_receiver))
    assert events == [
        ("customer.created", ("C-6",)),
        ("customer.updated", ("C-2", "C-4")),
        ("customer.updated", ("C-5",)),
    ]


def test_a_dry_run_and_a_switched_off_subscription_send_nothing(tmp_path, kore_connection, webhook_receiver):
    subscribe(webhook_receiver)
    import_customers(tmp_path, 1, [customer_row("C-1")], dry_run=True)
    assert received(webhook_receiver) == []

    subscribe(webhook_receiver, "customer.created", "crm", "--off")
    import_customers(tmp_path, 1, [customer_row("C-1")])

    assert received(webhook_receiver) == []
    assert not WebhookDelivery.objects.exists()


def test_a_failing_receiver_is_retried_with_back_off_and_each_attempt_logged(
    tmp_path, kore_connection, webhook_receiver
):
    subscribe(webhook_receiver, "file.imported")
    webhook_receiver.answer_next(503)

    import_customers(tmp_path, 1, [customer_row("C-1")])

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "503" in delivery.last_error and "try 1 of 10" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=50)
    assert webhooks_deliver_pass() == []  # not due yet

    make_due()
    (report,) = webhooks_deliver_pass()

    assert report.status == "delivered"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    attempts = list(delivery.attempt_log.values_list("number", "ok", "http_status", "response"))
    assert attempts == [(1, False, 503, "answer 503"), (2, True, 200, "answer 200")]
    first, second = webhook_receiver.received
    assert first.body == second.body
    assert first.headers["X-Event-Id"] == second.headers["X-Event-Id"]


def test_a_refusal_fails_at_once_and_staff_can_retry(tmp_path, kore_connection, webhook_receiver):
    subscribe(webhook_receiver, "file.imported")
    webhook_receiver.answer_next(400)

    import_customers(tmp_path, 1, [customer_row("C-1")])

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "400" in delivery.last_error

    assert webhook_retry(deliveries=WebhookDelivery.objects.all()) == 1
    (report,) = webhooks_deliver_pass()
    assert report.status == "delivered"


def test_tries_are_used_up(tmp_path, kore_connection, webhook_receiver):
    subscribe(webhook_receiver, "file.imported")
    WebhookSubscription.objects.update(max_attempts=2)
    webhook_receiver.answer_next(500, 500)

    import_customers(tmp_path, 1, [customer_row("C-1")])
    make_due()
    webhooks_deliver_pass()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert "2 tries used up" in delivery.last_error


def test_a_receiver_that_is_down(db, kore_connection, tmp_path):
    call_command(
        "impex_webhook", "down", "--url", "http://127.0.0.1:9/hook", "--events", "file.imported", stdout=io.StringIO()
    )

    import_customers(tmp_path, 1, [customer_row("C-1")])

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert "refused" in delivery.last_error.lower()
    assert delivery.attempt_log.get().http_status is None


def test_a_single_record_update_announces_its_customer(api, tmp_path, kore_connection, webhook_receiver):
    import_customers(tmp_path, 1, [customer_row("C-1")])
    subscribe(webhook_receiver, "customer.created,customer.updated")

    api.post("/api/events/customers/", {"customer_id": "C-1", "last_name": "New"})
    api.post("/api/events/customers/", {"customer_id": "C-1", "last_name": "New"})
    api.post("/api/events/customers/", {"customer_id": "C-7", "email": "c7@example.com"})
    record_events_pass(by="test")
    webhooks_deliver_pass()

    events = sorted((b["event"], b["data"]["customer_ids"], b["data"]["source"]) for b in received(webhook_receiver))
    assert events == [("customer.created", ["C-7"], "api"), ("customer.updated", ["C-1"], "api")]
