"""Staff approve and reject held orders in a real browser (SPEC sections 7 and 13): an approver of the "Order
approvers" group finds the held orders on the home page, rejects one through its confirmation and approves another;
who lacks the permission is told which one and which group gives it. Screenshots at 1400 px, light and dark."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from playwright.sync_api import expect

from impex.models import Connection
from orders.demo import approvers_group_save
from orders.models import Order
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row
from tests.browser.conftest import log_in, shoot

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
        [line_row("O-1", 1), line_row("O-1", 2, "SKU2", quantity=3, unit_price="12.5"), line_row("O-2", 1)]
        + [line_row("O-3", 1)],
    )
    export_pass()
    # The pass configuring queued runs as the cluster would (one task waits per pass at most: run, a new one may).
    run_queued()
    assert dict(Order.objects.values_list("order_id", "state")) == {
        "O-1": "on_hold",
        "O-2": "on_hold",
        "O-3": "exported",
    }


def run_queued(func: str = "") -> None:
    """Run the tasks queued for the cluster (those of func only, if given), as a worker would."""
    for queued in OrmQ.objects.all():
        if not func or queued.task["func"] == func:
            import_string(queued.task["func"])(*queued.task["args"])
            queued.delete()


@pytest.fixture
def approvers_group(browser):
    """The "Order approvers" group (view orders and their runs, approve_order), as the migrations make it."""
    return approvers_group_save()


@pytest.fixture
def approver(django_user_model, approvers_group):
    """A staff user whose only permissions are those of the approvers group."""
    user = django_user_model.objects.create_user("approver", password=PASSWORD, is_staff=True)
    user.groups.add(approvers_group)
    return user


def test_an_approver_finds_held_orders_at_home_rejects_one_with_confirmation_and_approves_another(
    page, approver, held_orders
):
    log_in(page, "approver", PASSWORD)

    panel = page.locator("#hub-held-orders")
    expect(panel.locator("caption")).to_have_text("Held orders (2)")
    expect(panel).to_contain_text("its total 900.00 EUR is at least 500.00 EUR")
    expect(page.locator("body")).not_to_contain_text("You don't have permission to view or edit anything")
    shoot(page, "orders-home-approver")

    panel.get_by_role("link", name="O-1").click()
    expect(page.locator("#order-state .order-state")).to_have_text("On hold")
    expect(page.locator("#held-message")).to_have_text("its total 900.00 EUR is at least 500.00 EUR")
    expect(page.locator("#order-total")).to_contain_text("900.00 EUR")
    expect(page.locator("#order-lines tbody tr")).to_have_count(2)
    expect(page.locator("#lines-total")).to_have_text("47.50 EUR")
    expect(page.locator("#order-timeline")).to_contain_text("Hold: Confirmed → On hold")
    # One Approve and one Reject; Django's Close is the page's last button, after the record.
    expect(page.locator("#approve-button")).to_have_count(1)
    expect(page.locator("#reject-button")).to_have_count(1)
    close = page.locator(".submit-row .closelink").bounding_box()
    timeline = page.locator("#order-timeline").bounding_box()
    record = page.locator("#order_form fieldset").last.bounding_box()
    assert close["y"] > timeline["y"] and close["y"] > record["y"]
    # Headings of the record's sections are one line high; no heading's band lies behind the read-only note.
    heading = page.locator("h2.fieldset-heading").first.bounding_box()
    assert heading["height"] < 40, heading
    behind_note = page.evaluate(
        "() => { const n = document.querySelector('p.synced-note').getBoundingClientRect();"
        " return [...document.querySelectorAll('h2')].filter(h => { const r = h.getBoundingClientRect();"
        " return r.top <= n.top && r.bottom >= n.bottom; }).map(h => h.textContent); }"
    )
    assert behind_note == [], behind_note
    shoot(page, "orders-order-held")

    page.click("#reject-button")
    expect(page.locator("#decision-warning")).to_contain_text("Rejecting cancels order O-1 for good")
    expect(page.locator("#decision-orders")).to_contain_text("O-1")
    assert Order.objects.get(order_id="O-1").state == "on_hold"  # the confirmation page changed nothing
    shoot(page, "orders-reject-confirm")
    page.fill("textarea[name=reason]", "customer account closed")
    page.click("#decision-submit")

    expect(page.locator(".messagelist")).to_contain_text("Rejected O-1: cancelled.")
    expect(page.locator("#order-state .order-state")).to_have_text("Cancelled")
    expect(page.locator("#last-transition")).to_contain_text("Reject by approver")
    rejected = Order.objects.get(order_id="O-1")
    event = rejected.events.get(transition="reject")
    assert (rejected.state, event.user, event.message) == ("cancelled", approver, "customer account closed")
    shoot(page, "orders-order-rejected")

    page.goto("/admin/")
    expect(page.locator("#hub-held-orders caption")).to_have_text("Held orders (1)")
    page.locator("#hub-held-orders").get_by_role("link", name="O-2").click()
    page.fill("#approve-note", "known customer")
    page.click("#approve-button")

    expect(page.locator(".messagelist")).to_contain_text("Approved O-2: it goes on along its chain.")
    assert Order.objects.get(order_id="O-2").state == "confirmed"
    # The approval queued an export pass; a worker of the cluster runs it, and the order moves on.
    run_queued("orders.tasks.orders_export")
    page.reload()
    expect(page.locator("#order-timeline")).to_contain_text("known customer")
    expect(page.locator("#order-timeline")).to_contain_text(re.compile(r"Mark exported: Confirmed → Exported"))
    expect(page.locator("#order-flags")).to_contain_text("No flag")
    shoot(page, "orders-order-exported")

    page.goto("/admin/")
    expect(page.locator("#hub-held-orders caption")).to_have_text("Held orders (0)")
    expect(page.locator("#hub-held-orders")).to_contain_text("No order waits for approval.")
    page.goto("/admin/orders/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(0)  # the approver's list: awaiting approval
    page.click('#changelist-filter a[href="?approval=all"]')
    expect(page.locator("#result_list .order-state")).to_have_text(["Cancelled", "Exported", "Exported"])
    expect(page.locator("#result_list")).to_contain_text("900.00 EUR")
    shoot(page, "orders-list-approver")
    assert page.failed_responses == []


def test_staff_without_the_permission_are_told_which_and_the_group_that_gives_it(
    page, django_user_model, approvers_group, held_orders
):
    user = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="orders", codename="view_order"))
    log_in(page, "viewer", PASSWORD)

    expect(page.locator("#hub-held-orders")).to_have_count(0)  # not an approver: no held orders panel
    page.goto("/admin/orders/order/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)  # not an approver: every order
    page.get_by_role("link", name="O-1").click()

    expect(page.locator("#decide-refusal")).to_contain_text("'Can approve and reject held orders'")
    expect(page.locator("#decide-refusal")).to_contain_text("'Order approvers' group")
    expect(page.locator("#approve-button")).to_have_count(0)
    expect(page.locator("#reject-button")).to_have_count(0)
    shoot(page, "orders-order-viewer")

    response = page.goto(f"/admin/orders/order/{Order.objects.get(order_id='O-1').pk}/reject/")
    assert response.status == 403
    expect(page.locator("#denied-message")).to_have_text(
        "You need the permission 'Can approve and reject held orders' (orders.approve_order) to approve or reject "
        "held orders; ask an administrator to add you to the 'Order approvers' group, which gives it."
    )
    expect(page.locator("#denied-home")).to_have_attribute("href", "/admin/")
    shoot(page, "orders-403")
    assert Order.objects.get(order_id="O-1").state == "on_hold"


def test_the_user_page_offers_the_approvers_group(admin_page, django_user_model, approvers_group):
    newbie = django_user_model.objects.create_user("newbie", password=PASSWORD, is_staff=True)

    admin_page.goto(f"/admin/auth/user/{newbie.pk}/change/")

    hint = admin_page.locator("#id_groups_helptext")
    expect(hint).to_contain_text("The hub's groups:")
    expect(hint.locator("li", has_text="Order approvers")).to_contain_text("Can approve and reject held orders")
    admin_page.locator("#id_groups_helptext").scroll_into_view_if_needed()
    shoot(admin_page, "orders-user-groups-hint")
