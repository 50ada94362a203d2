"""Staff cancel an order with a reason from its page in a real browser (SPEC sections 7 and 13)."""

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from impex.models import Connection
from orders.models import Order
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "canceller-pass-123"


def test_a_canceller_cancels_an_order_with_a_reason_from_its_page(
    page, django_user_model, tmp_path, builtin_descriptors
):
    Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O-1")], [line_row("O-1", 1)])
    user = django_user_model.objects.create_user("canceller", password=PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="orders", codename__in=["view_order", "cancel_order"])
    )
    order = Order.objects.get(order_id="O-1")

    log_in(page, "canceller", PASSWORD)
    page.goto(f"/admin/orders/order/{order.pk}/change/")
    page.click("#cancel-order-link")
    expect(page.locator("h1")).to_contain_text("Cancel this order?")
    page.click("#cancel-submit")  # no reason: the browser asks for one, nothing is sent
    assert Order.objects.get(order_id="O-1").state == "confirmed"
    page.fill("#id_reason", "the customer called to cancel")
    page.click("#cancel-submit")

    expect(page.locator(".messagelist")).to_contain_text("Cancelled O-1")
    expect(page.locator("#order-timeline")).to_contain_text("the customer called to cancel")
    expect(page.locator("#cancel-order-link")).to_have_count(0)
    assert Order.objects.get(order_id="O-1").state == "cancelled"
