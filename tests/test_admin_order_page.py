"""The order page as the approvers' tool (issue 20, SPEC 7 and 13): state, why held, customer, total, lines and
timeline at the top; Reject through a confirmation, Approve in one click; held orders on the home page for who may
approve; a 403 page that names the missing permission and the group that gives it; the user page's group hint."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.demo import approvers_group_save
from orders.models import Exporter, Order
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row
from tests.admin_helpers import admin_url, staff_user, table_snapshot

NEED_APPROVE = (
    "You need the permission 'Can approve and reject held orders' (orders.approve_order) to approve or reject held "
    "orders; ask an administrator to add you to the 'Order approvers' group, which gives it."
)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def text_of(page: str) -> str:
    """The page's text: tags dropped, spaces squeezed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def part(page: str, element_id: str) -> str:
    """The text of the element with this id, up to the next module of the page."""
    after = page.split(f'id="{element_id}"', 1)[1]
    return text_of(re.split(r'<div class="module|<h2 class="order-record-heading', after, maxsplit=1)[0])


@pytest.fixture
def approvers_group(db):
    """The "Order approvers" group (view orders and their runs, approve_order), as the migrations make it."""
    return approvers_group_save()


@pytest.fixture
def held(tmp_path, kore_connection):
    """O-1 (two lines) and O-2 held by the approval gate (400 or more), O-3 (small) sent on to the file exporter."""
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "400", "--next-flag", "erp")
    configure("erp-file", "--flag", "erp", "--kind", "file")
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O-1", total="436.6"), order_row("O-2", "CU2", total="950"), order_row("O-3", total="20")],
        [line_row("O-1", 1), line_row("O-1", 2, "SKU2", quantity=3, unit_price="12.5"), line_row("O-2", 1)]
        + [line_row("O-3", 1)],
    )
    export_pass()
    assert dict(Order.objects.values_list("order_id", "state")) == {
        "O-1": "on_hold",
        "O-2": "on_hold",
        "O-3": "exported",
    }
    return {order.order_id: order for order in Order.objects.all()}


@pytest.fixture
def approver(client, django_user_model, approvers_group):
    """A staff user whose only permissions are the approvers group's."""
    user = django_user_model.objects.create_user("ann", is_staff=True)
    user.groups.add(approvers_group)
    client.force_login(user)
    return client


@pytest.fixture
def clerk(client, django_user_model, approvers_group):
    """Staff who may see and change orders (retry exports) but not approve them."""
    client.force_login(staff_user(django_user_model, "bob", "orders.view_order", "orders.change_order"))
    return client


# The page


def test_the_top_of_the_page_says_state_why_held_customer_total_then_the_lines(approver, held):
    page = approver.get(admin_url(Order, "change", held["O-1"].pk)).text

    summary = part(page, "order-summary")
    assert '<span class="order-state order-state-on_hold">On hold</span>' in page
    assert "State On hold waiting for approval since " in summary
    assert "Why held its total 436.60 EUR is at least 400.00 EUR " in summary
    assert "Customer CU1 · cu1@example.com" in summary
    assert "Total 436.60 EUR " in summary
    assert "Ordered 2026-11-01 10:00" in summary
    # Money with two decimals and times as Y-m-d H:i on the whole page, the record's fields included.
    assert "436.6000" not in page and "Nov. 1, 2026" not in page
    assert "Total: 436.60 EUR State: On hold" in text_of(page)
    # Then the lines, a table with amounts in the order's currency.
    lines = part(page, "order-lines")
    assert "Lines (2)" in lines
    assert "1 SKU1 Shirt 1 10.00 10.00 not yet" in lines
    assert "2 SKU2 Shirt 3 12.50 37.50 not yet" in lines
    assert "Lines total 47.50 EUR" in lines


def test_the_record_links_the_customer_and_connection_only_for_who_may_open_their_pages(approver, admin_client, held):
    order = held["O-1"]
    customer_url = admin_url(order.customer, "change", order.customer.pk)
    connection_url = admin_url(order.connection, "change", order.connection.pk)

    page = approver.get(admin_url(Order, "change", order.pk)).text

    # An approver may not view customers or connections: plain text, not links to a 403 page.
    assert approver.get(customer_url).status_code == 403
    assert f'href="{customer_url}"' not in page and f'href="{connection_url}"' not in page
    record = text_of(page.split('class="order-record-heading', 1)[1])
    assert "Customer: CU1 " in record and f"Connection: {order.connection} " in record
    admin_page = admin_client.get(admin_url(Order, "change", order.pk)).text
    assert f'href="{customer_url}"' in admin_page and f'href="{connection_url}"' in admin_page


def test_the_timeline_comes_after_the_lines_oldest_first_and_close_ends_the_page(approver, held):
    page = approver.get(admin_url(Order, "change", held["O-1"].pk)).text

    timeline = part(page, "order-timeline")
    assert timeline.index("Confirm: New → Confirmed") < timeline.index("Hold: Confirmed → On hold")
    assert "held for approval: its total 436.60 EUR is at least 400.00 EUR" in timeline
    order = [
        page.index(marker)
        for marker in (
            'id="order-summary"',
            'id="order-lines"',
            'id="approve-form"',
            'id="order-timeline"',
            'id="order_form"',
            'class="closelink"',
        )
    ]
    assert order == sorted(order)
    # Everything lies in #content-main (nothing beside the floated column, whose headings would show behind it).
    content_main = page.split('<div id="content-main">', 1)[1]
    assert 'id="order-sent"' in content_main.split("</form></div>", 1)[0]


def test_an_approver_gets_one_approve_and_one_reject_that_asks_first(approver, held):
    page = approver.get(admin_url(Order, "change", held["O-1"].pk)).text
    exported = approver.get(admin_url(Order, "change", held["O-3"].pk)).text

    assert page.count('type="submit" value="Approve"') == 1
    assert page.count('id="reject-button"') == 1
    assert f'<a href="{admin_url(Order, "reject", held["O-1"].pk)}" class="button order-reject"' in page
    assert f'action="{admin_url(Order, "reject", held["O-1"].pk)}"' not in page
    assert 'id="approve-form"' not in exported and 'id="reject-button"' not in exported
    assert '<span class="order-state order-state-exported">Exported</span>' in exported


def test_who_may_not_approve_sees_no_buttons_but_what_it_takes(clerk, held):
    page = clerk.get(admin_url(Order, "change", held["O-1"].pk)).text

    assert 'id="approve-form"' not in page and 'id="reject-button"' not in page
    assert (
        part(page, "order-approval")
        .strip()
        .endswith(
            "You need the permission 'Can approve and reject held orders' (orders.approve_order) to approve or reject "
            "it; ask an administrator to add you to the 'Order approvers' group, which gives it."
        )
    )


def test_a_rejected_order_says_who_rejected_it_and_why(approver, held):
    approver.post(admin_url(Order, "reject", held["O-1"].pk), {"reason": "customer account closed"})

    page = approver.get(admin_url(Order, "change", held["O-1"].pk)).text

    assert '<span class="order-state order-state-cancelled">Cancelled</span>' in page
    assert re.search(
        r"Last change Reject by ann, \d{4}-\d\d-\d\d \d\d:\d\d: customer account closed", part(page, "order-summary")
    )


# Reject: a confirmation first; Approve: one click


def test_reject_shows_a_confirmation_that_names_the_order_and_changes_nothing(approver, held):
    before = table_snapshot()

    response = approver.get(admin_url(Order, "reject", held["O-1"].pk))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/orders/order/decide.html"
    text = text_of(response.text)
    assert (
        "Rejecting cancels order O-1 for good: it is not exported, its export flags are dropped, and this cannot be "
        "undone." in text
    )
    assert "O-1 : CU1, 436.60 EUR; held as its total 436.60 EUR is at least 400.00 EUR" in text
    assert 'value="Reject and cancel O-1"' in response.text
    assert f'action="{admin_url(Order, "reject", held["O-1"].pk)}"' in response.text
    assert table_snapshot() == before


def test_a_reject_post_without_the_permission_is_refused_and_changes_nothing(clerk, held):
    before = table_snapshot()

    response = clerk.post(admin_url(Order, "reject", held["O-1"].pk), {"reason": "too big"})

    assert response.status_code == 403
    assert NEED_APPROVE in text_of(response.text)
    assert table_snapshot() == before


def test_a_reject_post_with_the_permission_cancels_and_records_the_event(approver, held):
    response = approver.post(admin_url(Order, "reject", held["O-1"].pk), {"reason": "customer account closed"})

    assert response.status_code == 302
    order = Order.objects.get(order_id="O-1")
    assert order.state == "cancelled"
    assert not order.flags.exists()
    event = order.events.get(transition="reject")
    assert (event.user.username, event.from_state, event.to_state, event.message) == (
        "ann",
        "on_hold",
        "cancelled",
        "customer account closed",
    )
    assert Order.objects.get(order_id="O-2").state == "on_hold"


def test_approve_is_one_click_from_the_page(approver, held):
    response = approver.post(admin_url(Order, "approve", held["O-2"].pk), {"reason": ""})

    assert response.status_code == 302
    order = Order.objects.get(order_id="O-2")
    assert order.state == "confirmed"
    assert order.events.get(transition="approve").user.username == "ann"


# Who holds only approve_order


def test_approve_order_alone_shows_the_orders_to_decide_on(client, django_user_model, held):
    client.force_login(staff_user(django_user_model, "amy", "orders.approve_order", "impex.export_data"))

    home = client.get(reverse("admin:index"))
    orders = client.get(admin_url(Order, "changelist"))
    page = client.get(admin_url(Order, "change", held["O-1"].pk))
    exporters = client.get(admin_url(Exporter, "changelist"))

    assert "You don’t have permission to view or edit anything" not in home.text
    assert admin_url(Order, "changelist") in home.text
    assert sorted(o.order_id for o in orders.context["cl"].result_list) == ["O-1", "O-2"]  # awaiting approval
    assert page.status_code == 200 and 'id="approve-form"' in page.text
    assert exporters.status_code == 403
    # Seeing the orders to decide on is not downloading them: that stays with the view permission.
    assert not orders.context["has_export_permission"] and "descriptor_export_url" not in orders.context
    assert client.get(admin_url(Order, "export")).status_code == 403
    assert client.get(admin_url(Order, "descriptor_export")).status_code == 403


# The home page's held orders


def test_the_home_shows_held_orders_to_approvers_oldest_first(approver, held):
    response = approver.get(reverse("admin:index"))

    panel = part(response.text, "hub-held-orders")
    assert "Held orders (2)" in panel
    assert panel.index("O-1") < panel.index("O-2")
    assert "O-1 CU1 436.60 EUR" in panel
    assert "its total 950.00 EUR is at least 400.00 EUR" in panel
    assert f'href="{admin_url(Order, "change", held["O-1"].pk)}"' in response.text
    assert f'href="{admin_url(Order, "changelist")}?approval=awaiting"' in response.text


def test_the_home_shows_no_held_orders_to_who_may_not_approve(clerk, held):
    response = clerk.get(reverse("admin:index"))

    assert 'id="hub-held-orders"' not in response.text
    assert "Held orders" not in response.text


def test_the_home_counts_every_held_order_with_as_many_queries_for_many(approver, held, tmp_path):
    url = reverse("admin:index")
    approver.get(url)
    with CaptureQueriesContext(connection) as few:
        approver.get(url)

    ids = [f"O-{n:02d}" for n in range(10, 22)]
    import_orders(tmp_path, [order_row(i, total="500") for i in ids], [line_row(i, 1) for i in ids])
    export_pass()
    with CaptureQueriesContext(connection) as many:
        response = approver.get(url)

    panel = part(response.text, "hub-held-orders")
    assert "Held orders (14)" in panel
    assert "and 9 more" in panel
    assert len(many) <= len(few)


# The 403 page


def test_the_403_page_names_the_permission_and_the_group_that_gives_it(clerk, held):
    response = clerk.get(admin_url(Order, "reject", held["O-1"].pk))

    assert response.status_code == 403
    assert response.templates[0].name == "403.html"
    assert f'<p class="hub-denied-message" id="denied-message">{NEED_APPROVE}</p>' in response.text.replace(
        "&#x27;", "'"
    )
    assert f'href="{reverse("admin:index")}" class="button" id="denied-home"' in response.text
    assert "impex-hub" in response.text


def test_a_refused_list_action_names_its_permission(clerk, held):
    before = table_snapshot()

    response = clerk.post(
        admin_url(Order, "changelist") + "?approval=all",
        {"action": "reject_held", "_selected_action": [held["O-1"].pk], "index": "0"},
    )

    assert response.status_code == 403
    assert "You need the permission &#x27;Can approve and reject held orders&#x27; (orders.approve_order) to run" in (
        response.text
    )
    assert table_snapshot() == before


def test_the_403_page_of_a_model_page_names_its_view_permission(client, django_user_model, held):
    client.force_login(staff_user(django_user_model, "viewer", "orders.view_order"))

    response = client.get(admin_url(Exporter, "changelist"))

    assert response.status_code == 403
    assert (
        "You need the permission &#x27;Can view exporter&#x27; (orders.view_exporter) to open this page; ask an "
        "administrator to give it to you." in response.text
    )


# The user page


def test_the_user_page_says_what_each_group_gives(admin_client, approvers_group):
    user = get_user_model().objects.create_user("newbie", is_staff=True)

    response = admin_client.get(admin_url(get_user_model(), "change", user.pk))

    text = text_of(response.text)
    assert "The user gets every permission of each group chosen. The hub's groups: Order approvers :" in text
    assert "Order approvers : Can approve and reject held orders, Can view order, Can view order export run" in text
    # The auth admin keeps its own rules: the superuser status and permissions stay on the page as Django has them.
    assert 'name="is_superuser"' in response.text and 'name="user_permissions"' in response.text
