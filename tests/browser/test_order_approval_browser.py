"""Staff approve and reject held orders in a real browser (SPEC sections 7 and 13)."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from playwright.sync_api import expect

from impex.models import Connection
from orders.models import Order
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "approver-pass-123"


@pytest.fixture
def held_orders(tmp_path, builtin_descriptors):
    """Two big orders held by an approval gate whose next exporter writes a file; one small order exported."""
    Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "500", "--next-flag", "erp")
    configure("erp", "--flag", "erp", "--kind", "file")
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O-1", total="900"), order_row("O-2", total="950"), order_row("O-3", total="20")],
        [line_row("O-1", 1), line_row("O-2", 1), line_row("O-3", 1)],
    )
    export_pass()
    # The pass configuring queued runs as the cluster would (one task waits per pass at most: run, a new one may).
    for queued in OrmQ.objects.all():
        import_string(queued.task["func"])(*queued.task["args"])
        queued.delete()
    assert dict(Order.objects.values_list("order_id", "state")) == {
        "O-1": "on_hold",
        "O-2": "on_hold",
        "O-3": "exported",
    }


@pytest.fixture
def approver(django_user_model, browser):
    user = django_user_model.objects.create_user("approver", password=PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="orders", codename__in=["view_order", "view_orderexportrun", "approve_order"]
        )
    )
    return user


def test_an_approver_approves_one_held_order_and_rejects_another(page, approver, held_orders):
    log_in(page, "approver", PASSWORD)
    page.goto("/admin/orders/order/")

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)  # awaiting approval is the approver's default list
    expect(page.locator("#changelist-filter")).to_contain_text("Awaiting approval")
    page.get_by_role("link", name="O-1").click()
    expect(page.locator("#held-message")).to_contain_text("total 900 EUR is at least 500")
    page.fill("#approve-note", "known customer")
    page.click("#approve-button")

    expect(page.locator(".messagelist")).to_contain_text("O-1")
    assert Order.objects.get(order_id="O-1").state == "confirmed"
    # The approval queued an export pass; a worker of the cluster runs it, and the order moves on.
    (queued,) = [q for q in OrmQ.objects.all() if q.task["func"] == "orders.tasks.orders_export"]
    import_string(queued.task["func"])(*queued.task["args"])
    page.goto(f"/admin/orders/order/{Order.objects.get(order_id='O-1').pk}/change/")
    timeline = page.locator("#order-timeline")
    expect(timeline).to_contain_text("known customer")
    expect(timeline).to_contain_text(re.compile(r"Mark exported: Confirmed → Exported"))
    expect(page.locator("#order-flags")).to_contain_text("No flag")

    page.goto("/admin/orders/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.get_by_role("link", name="O-2").click()
    page.fill("#reject-reason", "customer account closed")
    page.click("#reject-button")

    expect(page.locator(".messagelist")).to_contain_text("O-2")
    rejected = Order.objects.get(order_id="O-2")
    assert rejected.state == "cancelled"
    event = rejected.events.get(transition="reject")
    assert (event.user, event.message) == (approver, "customer account closed")
    page.goto("/admin/orders/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(0)
    assert page.failed_responses == []


def test_a_staff_user_without_the_permission_sees_no_approval_buttons(page, django_user_model, held_orders):
    user = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="orders", codename="view_order"))
    log_in(page, "viewer", PASSWORD)

    page.goto("/admin/orders/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)  # not an approver: every order
    page.get_by_role("link", name="O-1").click()

    expect(page.locator("#order-approval")).to_contain_text("takes the permission")
    expect(page.locator("#approve-button")).to_have_count(0)
    assert Order.objects.get(order_id="O-1").state == "on_hold"
