"""The one work queue (impex.services.queue): moves checked against the queue's table, claims held in batches, and
a pass whose statements do not grow with its batch (issue 18)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from impex.exceptions import IllegalTransition
from impex.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.services.queue import queue_claim, queue_finish, queue_hold, queue_release, queue_reset, retry_plan
from impex.services.webhooks import DELIVERIES, _due, webhook_emit, webhook_retry, webhooks_deliver_pass


@pytest.fixture
def receiver(db, webhook_receiver):
    WebhookSubscription.objects.create(code="crm", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    return webhook_receiver


def emit(n: int) -> None:
    for i in range(n):
        webhook_emit("customer.updated", data={"customer_ids": [f"C-{i}"], "count": 1})


def test_a_move_the_queue_does_not_name_raises_and_writes_nothing(receiver):
    emit(1)
    delivery = WebhookDelivery.objects.get()

    with pytest.raises(IllegalTransition, match="cannot go from delivered to pending"):
        queue_reset(DELIVERIES, WebhookDelivery.objects.all(), old="delivered")
    with pytest.raises(IllegalTransition, match="cannot go from running to bogus"):
        queue_finish(DELIVERIES, [delivery.pk], worker="w1", status="bogus")

    delivery.refresh_from_db()
    assert (delivery.status, delivery.claimed_by, delivery.attempts) == ("pending", "", 0)


def test_a_claim_is_one_workers_and_only_its_holder_ends_or_gives_it_back(receiver):
    emit(3)
    first = queue_claim(DELIVERIES, _due(timezone.now()), worker="w1", size=2)
    second = queue_claim(DELIVERIES, _due(timezone.now()), worker="w2", size=5)

    assert len(first) == 2 and len(second) == 1 and not set(first) & set(second)
    assert queue_hold(DELIVERIES, first + second, worker="w1") == first
    assert queue_finish(DELIVERIES, second, worker="w1", status="delivered") == 0  # w2's row: not w1's to end
    assert queue_finish(DELIVERIES, first[:1], worker="w1", status="delivered") == 1
    assert queue_release(DELIVERIES, first, worker="w1") == 1  # the one w1 had not ended goes back
    rows = dict(WebhookDelivery.objects.values_list("pk", "status"))
    assert rows == {first[0]: "delivered", first[1]: "pending", second[0]: "running"}
    assert WebhookDelivery.objects.get(pk=first[0]).attempts == 1


def test_the_shared_back_off_says_what_comes_next():
    assert retry_plan(attempt=2, limit=5, message="503").message == "503 (try 2 of 5; next in 0:02:00)"
    assert retry_plan(attempt=5, limit=5, message="503").message == "503 (5 tries used up)"
    assert retry_plan(attempt=1, limit=5, message="refused", retry=False).final


def _pass_queries(n: int) -> int:
    WebhookDelivery.objects.all().delete()
    emit(n)
    with CaptureQueriesContext(connection) as queries:
        reports = webhooks_deliver_pass()
    assert [r.status for r in reports] == ["delivered"] * n
    return len(queries)


def test_a_delivery_pass_costs_the_same_statements_for_10_and_100_deliveries(receiver, settings):
    settings.IMPEX_LEASE_SECONDS = 3600  # one batch holds all 100

    assert _pass_queries(10) == _pass_queries(100)
    assert WebhookAttempt.objects.filter(ok=True).count() == 100
    assert len(receiver.received) == 110


def test_failures_each_keep_their_own_message_and_a_retry_starts_them_again(receiver):
    emit(3)
    receiver.answer_next(200, 503, 400)

    reports = webhooks_deliver_pass()

    assert sorted(r.status for r in reports) == ["delivered", "failed", "pending"]
    failed = WebhookDelivery.objects.get(status="failed")
    assert "400" in failed.last_error
    assert "(try 1 of" in WebhookDelivery.objects.get(status="pending").last_error
    assert webhook_retry(deliveries=WebhookDelivery.objects.all()) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 0, "")
