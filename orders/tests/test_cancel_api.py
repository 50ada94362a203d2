"""POST /api/orders/{order_id}/cancel/ (SPEC section 10): a connection cancels its own orders with a reason."""

import json

import pytest

from impex.models import Connection
from impex.services.tokens import api_token_issue
from orders.models import Order, OrderEvent, OrderLine
from orders.services import order_transition
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row


@pytest.fixture
def shop(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O2", 1)])
    OrderLine.objects.filter(order__order_id="O2").update(shipped_at="2026-11-02T10:00:00Z")
    order_transition(order=Order.objects.get(order_id="O2"), transition="ship", by="test")


@pytest.fixture
def cancel(client, kore_connection):
    token = api_token_issue(connection=kore_connection, by="test")

    def post(order_id: str, body, *, auth: str | None = f"Bearer {token}"):
        headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
        return client.post(
            f"/api/orders/{order_id}/cancel/", data=json.dumps(body), content_type="application/json", **headers
        )

    return post


def test_a_connection_cancels_its_order_with_a_reason_and_again_changes_nothing(shop, cancel):
    answer = cancel("O1", {"reason": "customer called"})

    assert answer.status_code == 200
    assert answer.json() == {"order_id": "O1", "state": "cancelled", "version": 1}
    event = OrderEvent.objects.get(order__order_id="O1", transition="cancel")
    assert (event.by, event.message) == ("api: kore-erp", "customer called")

    again = cancel("O1", {"reason": "customer called twice"})
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    assert OrderEvent.objects.filter(order__order_id="O1", transition="cancel").count() == 1


def test_a_shipped_order_is_409(shop, cancel):
    answer = cancel("O2", {"reason": "too late"})
    assert answer.status_code == 409
    assert answer.json() == {"detail": "order O2 has shipped: it can no longer be cancelled"}
    assert Order.objects.get(order_id="O2").state == "shipped"


def test_an_order_of_another_connection_or_none_is_404(shop, cancel):
    other = Connection.objects.create(code="pos", name="POS")
    Order.objects.filter(order_id="O1").update(connection=other)
    assert cancel("O1", {"reason": "x"}).status_code == 404
    assert cancel("NOPE", {"reason": "x"}).status_code == 404
    assert Order.objects.get(order_id="O1").state == "confirmed"


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 3 * [1]}, ["x"]])
def test_a_reason_is_required_400(shop, cancel, body):
    answer = cancel("O1", body)
    assert answer.status_code == 400
    assert "reason" in answer.json() or "non_field_errors" in answer.json()
    assert Order.objects.get(order_id="O1").state == "confirmed"


@pytest.mark.parametrize("auth", [None, "Bearer ihub_wrong"])
def test_no_token_or_a_wrong_one_is_401(shop, cancel, auth):
    assert cancel("O1", {"reason": "x"}, auth=auth).status_code == 401
    assert Order.objects.get(order_id="O1").state == "confirmed"


def test_an_order_id_holding_a_slash_is_cancelled_and_an_unknown_one_is_a_json_404(tmp_path, kore_connection, cancel):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O/2")], [line_row("O/2", 1)])

    answer = cancel("O/2", {"reason": "customer called"})

    assert answer.status_code == 200
    assert answer.json() == {"order_id": "O/2", "state": "cancelled", "version": 1}
    unknown = cancel("O/9", {"reason": "x"})
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "no order O/9 of connection kore-erp"}
    # Whatever an id holds (a line break stops Django's path converter), the answer is the API's JSON.
    odd = cancel("O%0A9", {"reason": "x"})
    assert (odd.status_code, odd.json()) == (404, {"detail": "no order O\n9 of connection kore-erp"})
