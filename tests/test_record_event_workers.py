"""Several workers at once over single-record updates and outbound webhooks (SPEC section 10): each event is
applied once, the events of one record in the order received, and each webhook delivery is POSTed once; a worker
SIGKILLed in the middle of a pass leaves what it had not committed to the others, each update applied once.

Real processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from impex.models import WebhookDelivery, WebhookSubscription
from impex.tests.helpers import customer_row, lapse, process_env, run_import, write_kore
from syncapp.models import Customer, RecordEvent
from syncapp.record_events import record_event_receive

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

RECORDS, VERSIONS, WORKERS = 40, 8, 3

RUN_EVENTS = (
    "import json; from syncapp.record_events import record_events_pass; "
    "print(json.dumps([r.as_json() for r in record_events_pass(by='worker')]))"
)
RUN_DELIVERIES = (
    "import json; from impex.services.webhooks import webhooks_deliver_pass; "
    "print(json.dumps([r.as_json() for r in webhooks_deliver_pass()]))"
)


def race(tmp_path, code: str, name: str) -> list[list[dict]]:
    logs = [tmp_path / f"{name}-{n}.log" for n in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=settings.BASE_DIR,
            env=process_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * WORKERS, [log.read_text()[-2000:] for log in logs]
    return [json.loads(log.read_text().strip().splitlines()[-1]) for log in logs]


def test_three_workers_apply_each_event_once_in_order_and_deliver_each_webhook_once(
    tmp_path, kore_connection, webhook_receiver
):
    ids = [f"C-{n:03}" for n in range(RECORDS)]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(i) for i in ids]))
    assert code == 0, report
    WebhookSubscription.objects.create(code="crm", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    for version in range(VERSIONS):
        for customer_id in ids:
            record_event_receive(
                connection=kore_connection,
                kind="customers",
                body={"customer_id": customer_id, "last_name": f"v{version}"},
            )

    # Which worker does how much depends on when each process starts: the test is that none is done twice.
    reports = [r for worker in race(tmp_path, RUN_EVENTS, "events") for r in worker]

    assert Counter(r["event"] for r in reports) == dict.fromkeys(RecordEvent.objects.values_list("pk", flat=True), 1)
    assert {r["status"] for r in reports} == {"applied"}
    assert set(Customer.objects.values_list("last_name", flat=True)) == {f"v{VERSIONS - 1}"}
    for customer_id in ids:
        applied = list(
            RecordEvent.objects.filter(record_key=customer_id).order_by("applied_at").values_list("pk", flat=True)
        )
        assert applied == sorted(applied), f"{customer_id}: applied out of order"
    assert RecordEvent.objects.filter(attempts=1).count() == RECORDS * VERSIONS

    deliveries = [r for worker in race(tmp_path, RUN_DELIVERIES, "hooks") for r in worker]

    # A batch of updates announces its changed customers in one event: each update's change is in exactly one.
    assert len(deliveries) == WebhookDelivery.objects.count()
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    receipts = Counter(post.headers["X-Event-Id"] for post in webhook_receiver.received)
    assert set(receipts.values()) == {1}
    assert len(receipts) == len(deliveries)
    announced = Counter(i for post in webhook_receiver.received for i in post.json["data"]["customer_ids"])
    assert announced == dict.fromkeys(ids, VERSIONS)


def wait_for(condition, *, seconds: float = 120):
    """Poll condition until it returns something true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_worker_killed_mid_pass_leaves_its_batch_to_the_others_and_each_update_applies_once(
    tmp_path, kore_connection
):
    ids = [f"K-{n:02}" for n in range(10)]
    versions = 40
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(i) for i in ids]))
    assert code == 0, report
    for version in range(versions):
        for customer_id in ids:
            record_event_receive(
                connection=kore_connection,
                kind="customers",
                body={"customer_id": customer_id, "last_name": f"v{version}"},
            )
    # One batch holds one update of each customer: the worker goes through 40 batches, and is killed among them.
    log = tmp_path / "killed.log"
    victim = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", RUN_EVENTS],
        cwd=settings.BASE_DIR,
        env=process_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    assert wait_for(lambda: RecordEvent.objects.filter(status="applied").exists() or victim.poll() is not None)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    # What it had claimed and not committed is due again once its lease (60 s by default) runs out, as a machine
    # whose clock is past it sees it.
    lapse(RecordEvent.objects.filter(status="running"))
    applied_before = set(RecordEvent.objects.filter(status="applied").values_list("pk", flat=True))

    reports = [r for worker in race(tmp_path, RUN_EVENTS, "survivors") for r in worker]

    left = set(RecordEvent.objects.values_list("pk", flat=True)) - applied_before
    assert left, "the worker was killed after it had applied everything"
    assert Counter(r["event"] for r in reports) == dict.fromkeys(left, 1)
    assert set(RecordEvent.objects.values_list("status", "attempts")) == {("applied", 1)}
    assert set(Customer.objects.filter(customer_id__in=ids).values_list("last_name", flat=True)) == {f"v{versions - 1}"}
    for customer_id in ids:
        applied = list(
            RecordEvent.objects.filter(record_key=customer_id).order_by("applied_at").values_list("pk", flat=True)
        )
        assert applied == sorted(applied), f"{customer_id}: applied out of order"
