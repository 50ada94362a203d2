"""Exactly once with receivers slower than the lease (issue 16 H2): several real processes share the work, each
claim is checked again just before its side effect, and no order, delivery or update goes out twice.

The processes run with IMPEX_LEASE_SECONDS shorter than one answer of the receiver, so a claim taken in a batch runs
out before the worker reaches it; a worker started then finds those items due. Real processes share the test
database, so this runs on PostgreSQL (CI runs it).
"""

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from impex.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.services.webhooks import webhook_emit
from impex.tests.helpers import customer_row, process_env, run_import, write_kore
from orders.models import Order, OrderExportRun, OrderFlag
from orders.tests.helpers import configure, import_catalogue, import_orders, line_row, order_row
from syncapp.models import RecordEvent
from syncapp.record_events import record_event_receive

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

LEASE = 2  # seconds the processes' claims last unless renewed
ANSWER = 3  # seconds the receiver takes to answer: longer than a lease
DEADLINE = 120

RUN_EVENTS = (
    "import json; from syncapp.record_events import record_events_pass; "
    "print(json.dumps([r.as_json() for r in record_events_pass(by='worker')]))"
)
RUN_DELIVERIES = (
    "import json; from impex.services.webhooks import webhooks_deliver_pass; "
    "print(json.dumps([r.as_json() for r in webhooks_deliver_pass()]))"
)


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=process_env(IMPEX_LEASE_SECONDS=LEASE),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, *, seconds: float = DEADLINE):
    """Poll condition until it returns something true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def staggered(args: list[str], tmp_path: Path, name: str, started) -> list[Path]:
    """Run three workers: the second once the receiver has seen two requests (the first worker's batch has outlived
    its lease by then), the third after the third; return their logs once all have ended well."""
    logs = [tmp_path / f"{name}-{n}.log" for n in range(3)]
    procs = [start(args, logs[0])]
    for n in (1, 2):
        assert wait_for(lambda n=n: started() >= n + 1), [log.read_text()[-2000:] for log in logs[:n]]
        procs.append(start(args, logs[n]))
    assert [p.wait(timeout=DEADLINE * 2) for p in procs] == [0, 0, 0], [log.read_text()[-2000:] for log in logs]
    return logs


def last_json(log: Path):
    return json.loads(log.read_text().strip().splitlines()[-1])


def test_a_receiver_slower_than_the_lease_gets_each_order_once_from_three_workers(
    tmp_path, kore_connection, webhook_receiver
):
    webhook_receiver.default = (200, ANSWER)
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url, "--secret", "k")
    ids = [f"O{n}" for n in range(8)]
    import_catalogue(tmp_path / "in")
    import_orders(tmp_path / "in", [order_row(i) for i in ids], [line_row(i, 1) for i in ids])

    logs = staggered(["orders_export", "--json"], tmp_path, "orders", lambda: len(webhook_receiver.received))

    receipts = Counter(post.json["order"]["order_id"] for post in webhook_receiver.received)
    assert receipts == dict.fromkeys(ids, 1)
    done = Counter(OrderExportRun.objects.filter(status="done").values_list("order__order_id", flat=True))
    assert done == dict.fromkeys(ids, 1)
    assert not OrderExportRun.objects.exclude(status="done").exists()
    reported = Counter(r["order"] for log in logs for r in last_json(log)["runs"])
    assert reported == dict.fromkeys(ids, 1)
    assert set(Order.objects.values_list("state", flat=True)) == {"exported"}
    assert not OrderFlag.objects.exists()


def test_a_subscriber_slower_than_the_lease_gets_each_delivery_once_from_three_workers(tmp_path, webhook_receiver):
    webhook_receiver.default = (200, ANSWER)
    WebhookSubscription.objects.create(code="crm", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    for n in range(8):
        with transaction.atomic():
            webhook_emit("customer.updated", data={"customer_ids": [f"C-{n}"], "count": 1})

    logs = staggered(["shell", "-c", RUN_DELIVERIES], tmp_path, "hooks", lambda: len(webhook_receiver.received))

    receipts = Counter(post.headers["X-Event-Id"] for post in webhook_receiver.received)
    event_ids = {str(e) for e in WebhookDelivery.objects.values_list("event_id", flat=True)}
    assert receipts == dict.fromkeys(event_ids, 1) and len(receipts) == 8
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert WebhookAttempt.objects.count() == 8
    assert Counter(r["event_id"] for log in logs for r in last_json(log)) == dict.fromkeys(event_ids, 1)


def test_single_record_updates_apply_once_in_order_from_three_workers_on_a_short_lease(tmp_path, kore_connection):
    ids = [f"C-{n:02}" for n in range(20)]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(i) for i in ids]))
    assert code == 0, report
    for version in range(4):
        for customer_id in ids:
            record_event_receive(
                connection=kore_connection,
                kind="customers",
                body={"customer_id": customer_id, "last_name": f"v{version}"},
            )
    logs = [tmp_path / f"events-{n}.log" for n in range(3)]
    procs = [start(["shell", "-c", RUN_EVENTS], log) for log in logs]
    assert [p.wait(timeout=DEADLINE) for p in procs] == [0, 0, 0], [log.read_text()[-2000:] for log in logs]

    reports = [r for log in logs for r in last_json(log)]
    assert Counter(r["event"] for r in reports) == dict.fromkeys(RecordEvent.objects.values_list("pk", flat=True), 1)
    assert {r["status"] for r in reports} == {"applied"}
    assert set(RecordEvent.objects.values_list("attempts", flat=True)) == {1}
    for customer_id in ids:
        applied = list(
            RecordEvent.objects.filter(record_key=customer_id).order_by("applied_at").values_list("pk", flat=True)
        )
        assert applied == sorted(applied), f"{customer_id}: applied out of order"
