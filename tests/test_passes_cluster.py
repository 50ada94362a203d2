"""A slow webhook subscriber keeps no scan waiting (issue 16 M2): a real `qcluster` with two workers, events that
keep coming for a subscriber that takes seconds to answer, and a connection's scheduled inbox scan, which still runs
and imports its file while the deliveries go on, each delivered once.

Without the bounds (one delivery task queued at most, IMPEX_PASS_WORKERS passes at once, each stopping after
IMPEX_PASS_SECONDS) every event queued a pass and both workers stayed in delivery passes while anything was due.
The cluster's processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

from collections import Counter

import pytest
from django.db import connection, transaction

from impex.models import ImportJob, WebhookDelivery, WebhookSubscription
from impex.services.connections import connection_save
from impex.services.webhooks import webhook_emit
from impex.tests.helpers import aged, customer_row, inbox_of, write_kore
from syncapp.models import Customer
from tests.test_inbox_scan_e2e import (  # noqa: F401 (cluster, env, mail_dir, shared_db: fixtures used here)
    DEADLINE,
    cluster,
    env,
    explain,
    jobs_ended,
    mail_dir,
    shared_db,
    wait_for,
)

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a cluster's processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
]

ANSWER = 3  # seconds the subscriber takes to answer each delivery


def emit(n: int) -> None:
    """Record one customer.updated event, as an import's batch does (its delivery is asked for on commit)."""
    with transaction.atomic():
        webhook_emit("customer.updated", data={"customer_ids": [f"X-{n}"], "count": 1})


def scan_while_events_come(running, code: str, *, seconds: float) -> ImportJob:
    """Emit events, ten at first, then two a second (more than a slow subscriber takes: deliveries stay due), until
    the connection's scan job has ended; return that job, or fail saying what the cluster did."""
    for n in range(10):
        emit(n)
    sent = 10

    def scanned():
        nonlocal sent
        emit(sent)
        sent += 1
        return jobs_ended(code, 1)

    delivered = lambda: WebhookDelivery.objects.filter(status="delivered").count()  # noqa: E731
    jobs = wait_for(scanned, seconds=seconds, step=0.5) or pytest.fail(
        f"{delivered()} of {sent} delivered\n{explain(running, code)}"
    )
    (job,) = jobs
    assert job.status == "completed", explain(running, code)
    return job


# cluster: the fixture of tests/test_inbox_scan_e2e.py (a qcluster on the test's database), imported above.
def test_a_slow_subscriber_with_events_coming_keeps_no_scheduled_scan_waiting(cluster, webhook_receiver):  # noqa: F811
    webhook_receiver.default = (200, ANSWER)
    WebhookSubscription.objects.create(code="slow", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    conn, _ = connection_save(code="kore-erp", convention="kore", integration_id="INT1", interval_minutes=1)
    aged(write_kore(inbox_of(conn), "KS_CUSTOMERS", 1, [customer_row("C-1"), customer_row("C-2")]))
    cluster.start(IMPEX_PASS_SECONDS=5)

    scan_while_events_come(cluster, conn.code, seconds=DEADLINE)

    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C-1", "C-2"]
    assert WebhookDelivery.objects.exclude(status="delivered").exists()  # the slow subscriber still had work
    assert webhook_receiver.received, "the subscriber got nothing meanwhile"
    receipts = Counter(post.headers["X-Event-Id"] for post in webhook_receiver.received)
    assert set(receipts.values()) == {1}


def test_slow_receivers_of_two_kinds_of_pass_keep_no_scheduled_scan_waiting(
    cluster,  # noqa: F811
    webhook_receiver,
    tmp_path,
):
    """A slow subscriber and a slow order webhook exporter at once: passes of all kinds together hold at most all
    but one of the cluster's two workers, so the scan's job finds one (the hostile review saw it wait 2 minutes)."""
    from orders.models import OrderFlag
    from orders.tests.helpers import _next_sequence, configure, import_catalogue, import_orders, line_row, order_row

    webhook_receiver.default = (200, ANSWER)
    WebhookSubscription.objects.create(code="slow", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    configure("erp", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url, "--secret", "k")
    conn, _ = connection_save(code="kore-erp", convention="kore", integration_id="INT1", interval_minutes=1)
    ids = [f"O{n}" for n in range(40)]  # 2 minutes of answers: more than a pass may take
    import_catalogue(tmp_path / "in")
    import_orders(tmp_path / "in", [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
    aged(write_kore(inbox_of(conn), "KS_CUSTOMERS", _next_sequence("kore-erp"), [customer_row("C-1")]))
    # Passes as long as the receivers keep them busy: each would hold its worker for two minutes (one POST at a
    # time: 40 orders of 3 s).
    cluster.start(IMPEX_PASS_SECONDS=120, IMPEX_WEBHOOK_CONCURRENCY=1)

    # The scheduler looks every ~30 s: the scan is queued within that, and then finds a free worker at once.
    scan_while_events_come(cluster, conn.code, seconds=75)

    assert Customer.objects.filter(customer_id="C-1").exists()
    # Both slow receivers still had work when the scan's job was done: it did not wait for them.
    assert WebhookDelivery.objects.exclude(status="delivered").exists()
    assert OrderFlag.objects.filter(flag="erp").exists()
    receipts = Counter(post.headers["X-Event-Id"] for post in webhook_receiver.received)
    assert set(receipts.values()) == {1}
