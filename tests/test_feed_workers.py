"""The order update feed on several processes at once, one killed half-way (issue 18): each event applied once.

Real processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from impex.tests.helpers import lapse, process_env
from orders.feeds import feed_events_receive
from orders.models import FeedEvent, Order, OrderEvent
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

LEASE = 3  # seconds the processes' claims last: the killed worker's batch is due again soon after
DEADLINE = 180
ORDERS = 1000


def start(log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "orders_feed", "--json"],
        cwd=settings.BASE_DIR,
        env=process_env(IMPEX_LEASE_SECONDS=LEASE),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, *, seconds: float = DEADLINE):
    """Poll condition until it returns something true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def results(log: Path) -> list[dict]:
    return json.loads(log.read_text().strip().splitlines()[-1])["events"]


def test_four_feed_workers_with_one_killed_apply_each_event_once(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    names = [f"O{n}" for n in range(ORDERS)]
    import_orders(tmp_path, [order_row(n) for n in names], [line_row(n, k, f"SKU{k}") for n in names for k in (1, 2)])
    at = timezone.now()
    # Each order: line 1, then the rest; then the first events again (replays: ignored).
    events = [
        {"event_id": f"A-{n}", "shipment_id": f"SA-{n}", "order_id": n, "shipped_at": at, "line_nos": [1]}
        for n in names
    ]
    events += [{"event_id": f"B-{n}", "shipment_id": f"SB-{n}", "order_id": n, "shipped_at": at} for n in names]
    events += [dict(e) for e in events[:ORDERS]]
    feed_events_receive(connection=kore_connection, events=events)

    logs = [tmp_path / f"feed-{n}.log" for n in range(4)]
    doomed = start(logs[0])
    # Killed while it holds a claim (in the middle of a batch, or between two).
    mine = FeedEvent.objects.filter(claimed_by__contains=f":{doomed.pid}:")
    claimed_by = wait_for(lambda: mine.values_list("claimed_by", flat=True).first())
    assert claimed_by, logs[0].read_text()[-2000:]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=DEADLINE)
    workers = [start(log) for log in logs[1:]]
    assert [w.wait(timeout=DEADLINE * 2) for w in workers] == [0, 0, 0], [log.read_text()[-2000:] for log in logs[1:]]
    # What the killed worker held is due again once its lease runs out (the others have ended: a lease left is its
    # own), as a machine whose clock is past it sees it: a last pass takes it.
    lapse(FeedEvent.objects.all())
    last = start(tmp_path / "feed-last.log")
    assert last.wait(timeout=DEADLINE * 2) == 0, (tmp_path / "feed-last.log").read_text()[-2000:]

    reported = [r for log in [*logs[1:], tmp_path / "feed-last.log"] for r in results(log)]
    assert Counter(r["status"] for r in reported) == {"applied": 2 * ORDERS, "ignored": ORDERS}
    assert Counter(FeedEvent.objects.values_list("status", flat=True)) == {"applied": 2 * ORDERS, "ignored": ORDERS}
    assert not FeedEvent.objects.exclude(claimed_by="").exists()
    assert Counter(Order.objects.filter(order_id__in=names).values_list("state", flat=True)) == {"completed": ORDERS}
    shipments = Counter(OrderEvent.objects.filter(kind="shipment").values_list("order_id", flat=True))
    assert set(shipments.values()) == {2}  # one timeline row per applied event
    moves = Counter(OrderEvent.objects.filter(kind="transition", by__contains="orders_feed").values_list("transition"))
    assert moves == {("ship_partially",): ORDERS, ("ship",): ORDERS, ("complete",): ORDERS}
    for order in Order.objects.filter(order_id__in=names[:50]):
        kinds = list(order.events.filter(kind__in=["shipment", "transition"]).values_list("transition", flat=True))
        assert kinds[-5:] == ["", "ship_partially", "", "ship", "complete"], (order.order_id, kinds)
