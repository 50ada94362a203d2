"""The feed applied in batches (issue 18): constant queries per pass, and each event of a batch its own outcome."""

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from impex.services.tokens import api_token_issue
from orders.feeds import feed_events_apply, orders_feed_pass
from orders.models import FeedEvent, Order, OrderEvent
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row

URL = "/api/feeds/shipments/"


def event(event_id: str, shipment_id: str, order_id: str, *line_nos: int) -> dict:
    return {
        "event_id": event_id,
        "shipment_id": shipment_id,
        "order_id": order_id,
        "carrier": "DHL",
        "tracking_number": f"T-{shipment_id}",
        "shipped_at": "2026-11-02T10:00:00Z",
        "line_nos": list(line_nos),
    }


@pytest.fixture
def post(client, kore_connection):
    token = api_token_issue(connection=kore_connection, by="test")

    def post(*events: dict) -> None:
        body = json.dumps({"events": list(events)})
        response = client.post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 202, response.content

    return post


def feed_pass() -> list[dict]:
    out = io.StringIO()
    call_command("orders_feed", "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])["events"]


def events_of(prefix: str, n: int) -> list[dict]:
    """n due events for the orders prefix0..: most ship a line or all, one in ten a replay, one in ten an order not
    there yet (the mix of a real feed, in the same proportions whatever n)."""
    made = []
    for i in range(n):
        if i % 10 == 8:
            made.append(dict(made[-1]))  # a replay of the event before: ignored
        elif i % 10 == 9:
            made.append(event(f"{prefix}-E{i}", f"{prefix}-S{i}", f"{prefix}-missing-{i}"))
        else:
            made.append(event(f"{prefix}-E{i}", f"{prefix}-S{i}", f"{prefix}{i}", *([1] if i % 2 else [])))
    return made


def test_a_pass_takes_as_many_queries_for_100_due_events_as_for_10(tmp_path, post):
    import_catalogue(tmp_path)
    names = [f"A{i}" for i in range(10)] + [f"B{i}" for i in range(100)]
    import_orders(
        tmp_path,
        [order_row(name) for name in names],
        [line_row(name, n, f"SKU{n}") for name in names for n in (1, 2)],
    )

    post(*events_of("A", 10))
    with CaptureQueriesContext(connection) as ten:
        small = orders_feed_pass(by="test")
    post(*events_of("B", 100))
    with CaptureQueriesContext(connection) as hundred:
        large = orders_feed_pass(by="test")

    assert sorted(r.status for r in large) == sorted([r.status for r in small] * 10)
    assert {r.status for r in large} == {"applied", "ignored", "failed"}
    assert len(hundred) == len(ten), "\n".join(q["sql"][:150] for q in hundred.captured_queries)
    states = dict(Order.objects.filter(order_id__startswith="B").values_list("order_id", "state"))
    assert states["B0"] == "completed" and states["B1"] == "partially_shipped"
    assert Order.objects.filter(order_id__startswith="B", state="confirmed").count() == 20  # B8, B9, B18, ...


def test_each_event_of_a_batch_has_its_own_outcome_and_an_order_s_events_apply_in_the_order_received(tmp_path, post):
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O1"), order_row("O2")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2"), line_row("O1", 3, "SKU3"), line_row("O2", 1)],
    )
    post(
        event("E1", "S1", "O1", 1),  # ships line 1 of O1
        event("E3", "S3", "O2", 5),  # O2 has no line 5
        event("E4", "S4", "O9"),  # O9 is not there yet
        event("E2", "S2", "O1"),  # ships the rest of O1, after E1
        event("E1", "S1", "O1", 1),  # a replay of E1
    )

    results = feed_pass()

    assert [(r["event_id"], r["status"]) for r in results] == [
        ("E1", "applied"),
        ("E3", "failed"),
        ("E4", "failed"),
        ("E2", "applied"),  # the later events of O1 waited for the next batch, E1 being untried
        ("E1", "ignored"),
    ]
    messages = [r["message"] for r in results]
    assert messages[0] == "shipment S1 (DHL T-S1): lines 1"
    assert messages[1] == "order O2 has no line 5 (its lines: 1)"
    assert messages[2] == "order O9 is not known yet: applied when it arrives"
    assert messages[3] == "shipment S2 (DHL T-S2): lines 1;2;3"
    assert messages[4].startswith("event E1 came before (event #") and messages[4].endswith(", applied): applied once")
    rows = {e.event_id + e.status: e for e in FeedEvent.objects.all()}
    assert (rows["E3failed"].attempts, rows["E3failed"].retry) == (1, True)
    assert rows["E3failed"].next_attempt_at > timezone.now()  # back-off
    assert rows["E4failed"].next_attempt_at <= timezone.now()  # due as soon as O9 arrives
    assert all(e.claimed_by == "" and e.lease_until is None for e in rows.values())
    o1 = Order.objects.get(order_id="O1")
    assert (o1.state, o1.shipped_lines, o1.tracking_numbers) == ("completed", "1;2;3", "T-S1;T-S2")
    timeline = list(o1.events.filter(kind__in=["shipment", "transition"]).values_list("kind", "transition"))
    assert timeline[-5:] == [
        ("shipment", ""),
        ("transition", "ship_partially"),
        ("shipment", ""),
        ("transition", "ship"),
        ("transition", "complete"),
    ]
    assert list(o1.lines.values_list("line_no", "shipment__shipment_id")) == [(1, "S1"), (2, "S2"), (3, "S2")]
    assert Order.objects.get(order_id="O2").state == "confirmed"

    import_orders(tmp_path, [order_row("O9")], [line_row("O9", 1)])
    assert [(r["event_id"], r["status"]) for r in feed_pass()] == [("E4", "applied")]
    assert FeedEvent.objects.get(event_id="E4").attempts == 1
    assert Order.objects.get(order_id="O9").state == "completed"


def test_a_batch_applies_only_the_events_this_worker_still_holds(post, tmp_path):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O2", 1)])
    post(event("E1", "S1", "O1"), event("E2", "S2", "O2"))
    first, second = FeedEvent.objects.order_by("pk")
    FeedEvent.objects.filter(pk=first.pk).update(claimed_by="worker-a", lease_until=timezone.now())
    # worker-a's lease ran out and worker-b took the second event over.
    FeedEvent.objects.filter(pk=second.pk).update(claimed_by="worker-b", lease_until=timezone.now())

    results = feed_events_apply(ids=[first.pk, second.pk], by="test", worker="worker-a")

    assert [(r.event_id, r.status) for r in results] == [("E1", "applied")]
    assert FeedEvent.objects.values_list("status", "claimed_by").get(pk=second.pk) == ("pending", "worker-b")
    assert dict(Order.objects.values_list("order_id", "state")) == {"O1": "completed", "O2": "confirmed"}
    assert not OrderEvent.objects.filter(order__order_id="O2", kind="shipment").exists()


def test_a_transition_of_the_feed_sets_the_flags_configured_for_it_once(tmp_path, post):
    from orders.models import OrderFlag, TransitionFlag

    TransitionFlag.objects.create(transition="ship_partially", flag="wms")
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O1"), order_row("O2")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2"), line_row("O2", 1), line_row("O2", 2, "SKU2")],
    )
    o2 = Order.objects.get(order_id="O2")
    OrderFlag.objects.create(order=o2, flag="wms", set_by="test")  # O2 carries the flag already
    post(event("E1", "S1", "O1", 1), event("E2", "S2", "O2", 1))

    assert [r["status"] for r in feed_pass()] == ["applied", "applied"]

    assert sorted(OrderFlag.objects.filter(flag="wms").values_list("order__order_id", flat=True)) == ["O1", "O2"]
    o1_rows = list(Order.objects.get(order_id="O1").events.values_list("kind", "transition", "flag"))
    assert o1_rows[-3:] == [("shipment", "", ""), ("transition", "ship_partially", ""), ("flag_set", "", "wms")]
    assert not o2.events.filter(kind="flag_set", flag="wms").exists()


def test_an_event_that_breaks_its_batch_is_set_aside_alone_and_the_others_apply(post, tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(
        tmp_path, [order_row("B1"), order_row("B2"), order_row("B3")], [line_row(o, 1) for o in ("B1", "B2", "B3")]
    )
    post(event("E1", "S1", "B1"))
    # A row no release of the hub writes (line numbers must be whole numbers): applying it raises a TypeError.
    FeedEvent.objects.create(
        connection=kore_connection,
        source="api",
        event_id="E2",
        shipment_id="S2",
        order_ref="B2",
        shipped_at=timezone.now(),
        line_nos=[[1]],
    )
    post(event("E3", "S3", "B3"))

    results = orders_feed_pass(by="test")

    assert sorted((r.event_id, r.status) for r in results) == [("E1", "applied"), ("E3", "applied")]
    broken = FeedEvent.objects.get(event_id="E2")
    assert (broken.status, broken.attempts, broken.retry, broken.claimed_by) == ("failed", 1, True, "")
    assert broken.message.startswith("unexpected error: TypeError") and "(try 1 of" in broken.message
    assert broken.next_attempt_at > timezone.now()
    assert dict(Order.objects.values_list("order_id", "state")) == {
        "B1": "completed",
        "B2": "confirmed",
        "B3": "completed",
    }
