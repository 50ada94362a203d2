"""The order update feed (SPEC sections 7, 9, 10): POST /api/feeds/shipments/, KS_SHIPMENTS rows, orders_feed."""

import io
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from impex.models import ApiToken
from impex.services.tokens import api_token_issue, api_token_revoke
from orders.models import FeedEvent, Order, OrderEvent, Shipment
from orders.services import order_transition
from orders.tests.helpers import import_catalogue, import_orders, import_rows, line_row, order_row

URL = "/api/feeds/shipments/"


def feed_pass() -> list[dict]:
    out = io.StringIO()
    call_command("orders_feed", "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])["events"]


def event(event_id="E1", shipment_id="S1", order_id="O1", **values) -> dict:
    return {
        "event_id": event_id,
        "shipment_id": shipment_id,
        "order_id": order_id,
        "carrier": "DHL",
        "tracking_number": f"T-{shipment_id}",
        "shipped_at": "2026-11-02T10:00:00Z",
        **values,
    }


@pytest.fixture
def token(kore_connection):
    return api_token_issue(connection=kore_connection, by="test")


@pytest.fixture
def post(client, token):
    def post(body, *, auth=None, content_type="application/json", raw=None):
        headers = {"HTTP_AUTHORIZATION": auth} if auth is not None else {}
        data = raw if raw is not None else json.dumps(body)
        return client.post(URL, data=data, content_type=content_type, **headers)

    def with_token(body, **kwargs):
        kwargs.setdefault("auth", f"Bearer {token}")
        return post(body, **kwargs)

    return with_token


@pytest.fixture
def orders(tmp_path, kore_connection):
    """O1 with lines 1-3 and O2 with line 1, both confirmed."""
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O1"), order_row("O2")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2"), line_row("O1", 3, "SKU3"), line_row("O2", 1)],
    )


def test_deliveries_move_the_order_to_partially_shipped_then_shipped_and_completed(post, orders):
    response = post({"events": [event("E1", "S1", line_nos=[1, 2])]})

    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    assert feed_pass() == [{"event_id": "E1", "status": "applied", "message": "shipment S1 (DHL T-S1): lines 1;2"}]
    o1 = Order.objects.get(order_id="O1")
    assert (o1.state, o1.shipped_lines, o1.tracking_numbers) == ("partially_shipped", "1;2", "T-S1")

    post({"events": [event("E2", "S2", tracking_number="T-2", line_nos=[])]})
    (result,) = feed_pass()
    assert result["status"] == "applied"
    o1 = Order.objects.get(order_id="O1")
    assert (o1.state, o1.shipped_lines, o1.tracking_numbers) == ("completed", "1;2;3", "T-S1;T-2")
    moves = list(OrderEvent.objects.filter(order=o1, kind="transition").values_list("transition", "to_state", "by"))
    assert moves[-3:] == [
        ("ship_partially", "partially_shipped", "command: orders_feed"),
        ("ship", "shipped", "command: orders_feed"),
        ("complete", "completed", "command: orders_feed"),
    ]
    assert list(o1.lines.values_list("line_no", "shipment__shipment_id")) == [(1, "S1"), (2, "S1"), (3, "S2")]
    assert Shipment.objects.get(shipment_id="S2").line_nos == ""


def test_a_replayed_event_or_the_same_shipment_again_is_applied_once(post, orders):
    body = {"events": [event("E1", "S1", order_id="O2")]}
    assert post(body).status_code == 202
    assert post(body).status_code == 202  # a replay is accepted...
    post({"events": [event("E9", "S1", order_id="O2")]})  # ...and so is the same shipment under another id

    results = feed_pass()

    assert [(r["event_id"], r["status"]) for r in results] == [("E1", "applied"), ("E1", "ignored"), ("E9", "ignored")]
    assert "event E1 came before" in results[1]["message"]
    assert "shipment S1 came before" in results[2]["message"]
    assert Order.objects.get(order_id="O2").state == "completed"
    assert OrderEvent.objects.filter(order__order_id="O2", kind="shipment").count() == 1
    assert feed_pass() == []


def test_an_event_for_an_unknown_order_fails_is_kept_and_applies_once_the_order_arrives(tmp_path, post, orders):
    post({"events": [event("E7", "S7", order_id="O7")]})

    (result,) = feed_pass()
    assert result == {
        "event_id": "E7",
        "status": "failed",
        "message": "order O7 is not known yet: applied when it arrives",
    }
    assert feed_pass() == []  # not retried while the order is missing

    import_orders(tmp_path, [order_row("O7")], [line_row("O7", 1)])

    (result,) = feed_pass()
    assert result["status"] == "applied"
    assert Order.objects.get(order_id="O7").state == "completed"


def test_an_unknown_line_fails_with_the_lines_the_order_has_and_is_retried_later(post, orders):
    post({"events": [event("E1", "S1", line_nos=[2, 5])]})

    (result,) = feed_pass()

    assert result["status"] == "failed"
    assert result["message"] == "order O1 has no line 5 (its lines: 1, 2, 3)"
    failed = FeedEvent.objects.get()
    assert failed.retry and failed.next_attempt_at > timezone.now()
    assert Order.objects.get(order_id="O1").state == "confirmed"
    assert not Shipment.objects.exists()


def test_a_delivery_for_a_cancelled_order_fails_for_good(post, orders):
    order_transition(order=Order.objects.get(order_id="O2"), transition="cancel", by="test")
    post({"events": [event("E1", "S1", order_id="O2")]})

    (result,) = feed_pass()

    assert (result["status"], result["message"]) == (
        "failed",
        "order O2 is cancelled: a delivery cannot be applied to it",
    )
    assert FeedEvent.objects.get().retry is False
    assert Order.objects.get(order_id="O2").state == "cancelled"


def shipment_row(shipment_id: str, order_id: str, line_nos: str, tracking: str = "") -> dict:
    return {
        "shipment_id": shipment_id,
        "order_id": order_id,
        "carrier": "UPS",
        "tracking_number": tracking,
        "shipped_at": "2026-11-02T09:00:00Z",
        "line_nos": line_nos,
    }


def test_ks_shipments_rows_become_feed_events_and_apply(tmp_path, orders):
    import_rows(tmp_path, "KS_SHIPMENTS", [shipment_row("F1", "O1", "1;3", "1Z"), shipment_row("F2", "O2", "")])

    results = feed_pass()

    assert [(r["event_id"], r["status"]) for r in results] == [("file:F1", "applied"), ("file:F2", "applied")]
    assert dict(Order.objects.values_list("order_id", "state")) == {"O1": "partially_shipped", "O2": "completed"}
    assert Order.objects.get(order_id="O1").shipped_lines == "1;3"
    # The same file's shipments imported again make no second event.
    import_rows(tmp_path, "KS_SHIPMENTS", [shipment_row("F1", "O1", "1;3", "1Z")])
    assert FeedEvent.objects.count() == 2
    assert feed_pass() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ({"events": []}, "events"),
        ({"events": "nope"}, "events"),
        ({"events": [event(shipped_at="yesterday")]}, "shipped_at"),
        ({"events": [event(shipped_at="9999-12-31T23:00:00-05:00")]}, "shipped_at"),
        ({"events": [event(shipped_at="0001-01-01T00:30:00+01:00")]}, "shipped_at"),
        ({"events": [event(order_id="x" * 101)]}, "order_id"),
        ({"events": [event(line_nos=["a"])]}, "line_nos"),
        ({"events": [event(line_nos=[0])]}, "line_nos"),
        ({"events": [event(line_nos=[1, 1])]}, "line_nos"),
        ({"events": [{k: v for k, v in event().items() if k != "order_id"}]}, "order_id"),
        ({"events": [event(event_id="")]}, "event_id"),
        ({"events": [event(), event(event_id="E2", shipped_at="")]}, "shipped_at"),
    ],
)
def test_a_body_that_does_not_validate_is_400_with_field_errors_and_stores_nothing(post, kore_connection, body, field):
    response = post(body)

    assert response.status_code == 400
    assert field in json.dumps(response.json())
    assert not FeedEvent.objects.exists()


def test_not_json_is_400_and_another_content_type_415(post, kore_connection):
    assert post(None, raw="{not json").status_code == 400
    assert post(None, raw="events=1", content_type="application/x-www-form-urlencoded").status_code == 415
    assert not FeedEvent.objects.exists()


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer ihub_wrong", "Token x", "Basic YTpi"])
def test_no_token_or_a_wrong_one_is_401(post, kore_connection, auth):
    response = post({"events": [event()]}, auth=auth)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not FeedEvent.objects.exists()


def test_a_revoked_token_or_one_of_a_switched_off_connection_is_401(post, token, kore_connection):
    api_token_revoke(token=ApiToken.objects.get(), by="ana")
    assert post({"events": [event()]}).status_code == 401

    fresh = api_token_issue(connection=kore_connection)
    assert post({"events": [event()]}, auth=f"Bearer {fresh}").status_code == 202
    kore_connection.active = False
    kore_connection.save()
    assert post({"events": [event()]}, auth=f"Bearer {fresh}").status_code == 401


def test_get_on_the_feed_is_405(client, token, kore_connection):
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_new_token_is_printed_once_and_only_its_hash_is_kept(kore_connection):
    out = io.StringIO()
    call_command("impex_connection", kore_connection.code, "--new-token", "--json", stdout=out)

    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    assert list(printed) == ["token"]
    stored = ApiToken.objects.get()
    assert printed["token"] not in (stored.key_hash, stored.prefix)
    assert printed["token"].startswith(stored.prefix)
    kore_connection.refresh_from_db()
    assert kore_connection.convention == "kore"  # nothing else changed


@pytest.mark.django_db
def test_new_token_of_an_unknown_connection_is_refused():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no connection is called nope"):
        call_command("impex_connection", "nope", "--new-token", stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_the_openapi_schema_is_served_and_describes_the_feed(client, token):
    response = client.get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    schema = response.json()
    assert "/api/feeds/shipments/" in schema["paths"]
    assert "202" in schema["paths"]["/api/feeds/shipments/"]["post"]["responses"]


def test_a_time_without_an_offset_is_read_in_the_connection_s_time_zone(post, orders, kore_connection):
    kore_connection.timezone = "Europe/Paris"
    kore_connection.save()

    post({"events": [event("E1", "S1", order_id="O2", shipped_at="2026-11-02T10:00:00")]})

    stored = FeedEvent.objects.get()
    assert stored.shipped_at.isoformat() == "2026-11-02T09:00:00+00:00"


def test_the_path_without_its_slash_takes_the_post_too(client, token, orders):
    response = client.post(
        URL.rstrip("/"),
        data=json.dumps({"events": [event()]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 202
    assert FeedEvent.objects.count() == 1


# -- one connection's feed acts on its own orders (issue 16 L7) -------------------------------------------------


@pytest.fixture
def shop(tmp_path, orders):
    """A second connection with its own order O5 (line 1), confirmed, and a token."""
    from impex.models import Connection
    from impex.tests.helpers import run_import, write_kore

    connection = Connection.objects.create(code="kore-shop", name="Shop", convention="kore", integration_id="INT2")
    folder = tmp_path / "shop"
    folder.mkdir()
    for sequence, (api, rows) in enumerate(
        [("KS_ORDERS", [order_row("O5")]), ("KS_ORDER_LINES", [line_row("O5", 1)])], start=1
    ):
        code, report = run_import(write_kore(folder, api, sequence, rows, integration="INT2"))
        assert code == 0, report
    assert Order.objects.get(order_id="O5").connection == connection
    return api_token_issue(connection=connection, by="test")


def test_an_event_for_another_connection_s_order_fails_as_an_unknown_order_and_changes_nothing(post, shop):
    post({"events": [event("E5", "S5", order_id="O1")]}, auth=f"Bearer {shop}")

    (result,) = feed_pass()

    assert result == {
        "event_id": "E5",
        "status": "failed",
        "message": "order O1 is not known yet: applied when it arrives",
    }
    assert feed_pass() == []  # not retried: O1 is not, and never becomes, an order of this connection
    assert Order.objects.get(order_id="O1").state == "confirmed"
    assert not Shipment.objects.exists()


def test_event_ids_are_the_sender_s_two_connections_may_send_the_same_one(post, shop):
    post({"events": [event("E1", "S1", order_id="O1")]})
    post({"events": [event("E1", "S5", order_id="O5")]}, auth=f"Bearer {shop}")
    post({"events": [event("E1", "S6", order_id="O5")]}, auth=f"Bearer {shop}")

    results = feed_pass()

    assert [(r["event_id"], r["status"]) for r in results] == [("E1", "applied"), ("E1", "applied"), ("E1", "ignored")]
    assert "event E1 came before" in results[2]["message"]
    assert dict(Order.objects.filter(order_id__in=["O1", "O5"]).values_list("order_id", "state")) == {
        "O1": "completed",
        "O5": "completed",
    }


def test_an_apply_by_a_worker_that_lost_the_event_s_claim_changes_nothing(post, orders):
    from orders.feeds import feed_events_apply

    post({"events": [event("E1", "S1", order_id="O1")]})
    stored = FeedEvent.objects.get()
    # Another worker holds the claim now (this one's lease ran out and the event was taken over).
    FeedEvent.objects.filter(pk=stored.pk).update(claimed_by="worker-b", lease_until=timezone.now())

    assert feed_events_apply(ids=[stored.pk], by="test", worker="worker-a") == []

    assert FeedEvent.objects.values_list("status", "claimed_by").get() == ("pending", "worker-b")
    assert Order.objects.get(order_id="O1").state == "confirmed"
    assert not Shipment.objects.exists()
