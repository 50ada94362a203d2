"""Cancelling orders from the admin (SPEC 7 and 13): the order's "Cancel order" page and the list's action, both
asking a reason, checked against orders.cancel_order on the server, with CSRF; shipped orders are refused."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from orders.choices import OrderState
from orders.models import Order, OrderEvent, OrderLine
from orders.services import order_transition
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row
from tests.admin_helpers import admin_url, staff_user, table_snapshot

CANCELLER = ("orders.view_order", "orders.cancel_order")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shop(tmp_path, kore_connection):
    """Orders O-1, O-2 and O-3, confirmed; O-3 has shipped."""
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O-1"), order_row("O-2"), order_row("O-3")],
        [line_row("O-1", 1), line_row("O-2", 1), line_row("O-3", 1)],
    )
    OrderLine.objects.filter(order__order_id="O-3").update(shipped_at="2026-11-02T10:00:00Z")
    order_transition(order=Order.objects.get(order_id="O-3"), transition="ship", by="test")
    return {o.order_id: o for o in Order.objects.all()}


@pytest.fixture
def canceller(client, django_user_model):
    client.force_login(staff_user(django_user_model, "cat", *CANCELLER))
    return client


def messages_of(response) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request)._queued_messages]


def state_of(order_id: str) -> str:
    return Order.objects.get(order_id=order_id).state


def test_the_order_s_page_offers_cancel_to_who_may_and_asks_a_reason_first(canceller, shop):
    page = canceller.get(admin_url(Order, "change", shop["O-1"].pk))
    cancel_url = admin_url(Order, "cancel", shop["O-1"].pk)
    assert cancel_url in page.text
    assert cancel_url.replace("O-1", "O-3") not in canceller.get(admin_url(Order, "change", shop["O-3"].pk)).text

    asked = canceller.get(cancel_url)
    assert asked.status_code == 200 and "Cancel this order?" in asked.text and "O-1" in asked.text
    assert state_of("O-1") == OrderState.CONFIRMED  # a GET changes nothing

    again = canceller.post(cancel_url, {"reason": "  "})
    assert again.status_code == 200 and "Give the reason for cancelling" in again.text
    assert state_of("O-1") == OrderState.CONFIRMED

    done = canceller.post(cancel_url, {"reason": "customer called"})
    assert done.status_code == 302
    assert state_of("O-1") == OrderState.CANCELLED
    event = OrderEvent.objects.get(order__order_id="O-1", transition="cancel")
    assert (event.user.username, event.by, event.message) == ("cat", "cat", "customer called")
    assert any(m.startswith("Cancelled O-1") for m in messages_of(done))


def test_a_shipped_order_is_refused_with_a_message_and_nothing_changes(canceller, shop):
    before = table_snapshot()
    refused = canceller.post(admin_url(Order, "cancel", shop["O-3"].pk), {"reason": "too late"})
    assert refused.status_code == 302
    assert messages_of(refused) == ["O-3 was not cancelled: it has shipped (Shipped)."]
    assert table_snapshot() == before


def test_staff_without_cancel_order_see_no_button_and_are_refused(client, django_user_model, shop):
    client.force_login(staff_user(django_user_model, "bob", "orders.view_order", "orders.change_order"))
    cancel_url = admin_url(Order, "cancel", shop["O-1"].pk)
    assert cancel_url not in client.get(admin_url(Order, "change", shop["O-1"].pk)).text
    before = table_snapshot()

    assert client.get(cancel_url).status_code == 403
    assert client.post(cancel_url, {"reason": "x"}).status_code == 403
    action = {"action": "cancel_selected", "_selected_action": [shop["O-1"].pk], "post": "yes", "reason": "x"}
    assert client.post(admin_url(Order, "changelist"), action).status_code == 403
    assert table_snapshot() == before


def test_cancelling_from_the_list_asks_one_reason_and_reports_the_shipped_ones(canceller, shop):
    chosen = [shop["O-1"].pk, shop["O-2"].pk, shop["O-3"].pk]
    asked = canceller.post(
        admin_url(Order, "changelist"), {"action": "cancel_selected", "_selected_action": chosen, "index": "0"}
    )
    assert asked.status_code == 200 and "Cancel 2 orders?" in asked.text
    assert "Skipped, as they are cancelled already or have shipped: O-3" in asked.text
    assert state_of("O-1") == OrderState.CONFIRMED

    done = canceller.post(
        admin_url(Order, "changelist"),
        {"action": "cancel_selected", "_selected_action": chosen, "post": "yes", "reason": "duplicate orders"},
    )

    assert done.status_code == 302
    assert messages_of(done) == [
        "Cancelled O-1, O-2: exporters that had sent them are told in a moment.",
        "O-3 was not cancelled: it has shipped (Shipped).",
    ]
    assert [state_of(o) for o in ("O-1", "O-2", "O-3")] == ["cancelled", "cancelled", "shipped"]
    messages = OrderEvent.objects.filter(transition="cancel").values_list(
        "order__order_id", "message", "user__username"
    )
    assert sorted(messages) == [("O-1", "duplicate orders", "cat"), ("O-2", "duplicate orders", "cat")]


@pytest.mark.parametrize("how", ["view", "action"])
def test_cancelling_refuses_a_post_without_the_csrf_token(django_user_model, shop, how):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, "cat", *CANCELLER))
    before = table_snapshot()
    url = admin_url(Order, "cancel", shop["O-1"].pk)
    if how == "view":
        refused = client.post(url, {"reason": "x"})
    else:
        data = {"action": "cancel_selected", "_selected_action": [shop["O-1"].pk], "post": "yes", "reason": "x"}
        refused = client.post(admin_url(Order, "changelist"), data)

    assert refused.status_code == 403 and "CSRF" in refused.text
    assert table_snapshot() == before
    token = str(client.get(url).context["csrf_token"])
    assert client.post(url, {"reason": "x", "csrfmiddlewaretoken": token}).status_code == 302
    assert state_of("O-1") == OrderState.CANCELLED
