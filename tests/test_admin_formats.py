"""Money and dates read the same on every admin page (money with its currency's decimals and code, right-aligned
in lists; dates as 2026-12-07 14:05), and /favicon.ico is served with DEBUG off."""

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import Client

from impex.models import Connection, ExportRun, InboxFile, SentFile
from orders.models import Order, OrderLine
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderLineItem,
    SyncLog,
)
from tests.admin_helpers import admin_url

AT = datetime(2026, 12, 7, 14, 5, 9, tzinfo=UTC)


@pytest.fixture
def special_order(db):
    """A special order in euros with a deposit, a total and a line, as a BSPK file stores them (4 decimals)."""
    order = SpecialOrder.objects.create(
        special_order_id="SO1",
        store_id="ST1",
        client_id="CL1",
        order_type="REPAIR",
        status="OPEN",
        currency="EUR",
        deposit_amount=Decimal("10.5000"),
        total_amount=Decimal("1234.5000"),
        ordered_at=AT,
        promised_date=date(2026, 12, 24),
    )
    SpecialOrderLineItem.objects.create(
        line_item_id="LI1", special_order=order, product_name="Ring", quantity=1, unit_price=Decimal("99.9000")
    )
    return order


@pytest.fixture
def prices(db):
    """A variant with an RRP and prices in euros, yen and a unit price finer than a cent."""
    variant = ProductVariant.objects.create(
        variant_id="V1", sku="SKU1", product=Product.objects.create(product_id="P1"), rrp=Decimal("49.9000")
    )
    retail = PriceList.objects.create(code="RETAIL")
    Price.objects.create(price_list=retail, variant=variant, currency="EUR", price=Decimal("436.6000"))
    Price.objects.create(price_list=retail, variant=variant, currency="JPY", price=Decimal("1500.0000"), min_quantity=2)
    Price.objects.create(price_list=retail, variant=variant, currency="EUR", price=Decimal("0.0125"), min_quantity=1000)
    return variant


def cells(response, name):
    """The texts of a changelist column, by field name."""
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(rf'<td class="field-{name}[^"]*">(.*?)</td>', response.text, re.S)
    ]


def readonly(response, name):
    """The text of a read-only field on a record's page."""
    block = response.text.split(f"field-{name}", 1)[1]
    return re.sub(r"<[^>]+>", "", re.search(r'<div class="readonly">(.*?)</div>', block, re.S).group(1)).strip()


def test_prices_show_their_currencys_decimals_and_code_right_aligned(admin_client, prices):
    page = admin_client.get(admin_url(Price, "changelist"))
    price = Price.objects.get(currency="EUR", min_quantity=1)
    one = admin_client.get(admin_url(Price, "change", price.pk))

    assert sorted(cells(page, "price_money")) == sorted(["436.60 EUR", "1,500 JPY", "0.0125 EUR"])
    assert '<th scope="col" class="sortable column-price_money' in page.text
    assert "436.6000" not in page.text
    assert readonly(one, "price_money") == "436.60 EUR"
    assert Price.objects.get(pk=price.pk).price == Decimal("436.6000")  # stored as it came


def test_special_orders_show_money_with_two_decimals_on_the_list_and_the_page(admin_client, special_order):
    page = admin_client.get(admin_url(SpecialOrder, "changelist"))
    one = admin_client.get(admin_url(SpecialOrder, "change", special_order.pk))
    lines = admin_client.get(admin_url(SpecialOrderLineItem, "changelist"))

    assert cells(page, "total_amount_money") == ["1,234.50 EUR"]
    assert readonly(one, "total_amount_money") == "1,234.50 EUR"
    assert readonly(one, "deposit_amount_money") == "10.50 EUR"
    assert cells(one, "unit_price_money") == ["99.90 EUR"]  # the line items inline
    assert cells(lines, "unit_price_money") == ["99.90 EUR"]
    for text in ("1234.5000", "10.5000", "99.9000"):
        assert text not in one.text


def test_a_variants_rrp_has_two_decimals(admin_client, prices):
    page = admin_client.get(admin_url(ProductVariant, "changelist"))
    product = admin_client.get(admin_url(Product, "change", prices.product_id))

    assert cells(page, "rrp_money") == ["49.90"]
    assert cells(product, "rrp_money") == ["49.90"]


def test_order_lines_show_their_unit_price_in_the_orders_currency_on_the_list_and_the_page(admin_client, prices):
    customer = Customer.objects.create(customer_id="C1", email="c1@example.com")
    order = Order.objects.create(order_id="O1", customer=customer, order_date=AT, currency="EUR", total=59)
    line = OrderLine.objects.create(order=order, line_no=1, variant=prices, quantity=2, unit_price=Decimal("29.5000"))

    page = admin_client.get(admin_url(OrderLine, "changelist"))
    one = admin_client.get(admin_url(OrderLine, "change", line.pk))

    assert cells(page, "unit_price_money") == ["29.50 EUR"]
    assert readonly(one, "unit_price_money") == "29.50 EUR"
    assert "29.5000" not in page.text and "29.5000" not in one.text


def test_the_money_filter_writes_amounts_as_the_lists_do(db):
    template = Template("{% load hub_format %}{{ total|money:currency }} / {{ none|money }} / {{ fine|money }}")

    text = template.render(Context({"total": Decimal("436.6000"), "currency": "eur", "fine": Decimal("-0.0125")}))

    assert text == "436.60 EUR / - / -0.0125"


def test_dates_read_the_same_on_lists_and_pages(admin_client, special_order, kore_connection):
    SyncLog.objects.create(connection=kore_connection, entity="customer", last_full_sync=AT)
    customer = Customer.objects.create(customer_id="C1", email="c1@example.com")
    Customer.objects.filter(pk=customer.pk).update(created_at=AT, updated_at=AT)

    orders = admin_client.get(admin_url(SpecialOrder, "changelist"))
    order = admin_client.get(admin_url(SpecialOrder, "change", special_order.pk))
    logs = admin_client.get(admin_url(SyncLog, "changelist"))
    one = admin_client.get(admin_url(Customer, "change", customer.pk))

    assert cells(orders, "ordered_at") == ["2026-12-07 14:05"]
    assert cells(orders, "promised_date") == ["2026-12-24"]
    assert readonly(order, "ordered_at") == "2026-12-07 14:05"
    assert readonly(order, "promised_date") == "2026-12-24"
    assert cells(logs, "last_full_sync") == ["2026-12-07 14:05"]
    assert readonly(one, "created_at") == "2026-12-07 14:05"
    assert "Dec. 7, 2026" not in orders.text + order.text + logs.text + one.text


def test_the_connection_pages_inbox_files_read_their_times_as_every_page_does(admin_client, kore_connection):
    InboxFile.objects.create(connection=kore_connection, name="ERP_0000001_INT1_KS_CUSTOMERS.FULL", first_seen=AT)
    InboxFile.objects.filter(connection=kore_connection).update(last_seen=AT)

    page = admin_client.get(admin_url(Connection, "change", kore_connection.pk)).text

    row = page.split('class="inbox-file"', 1)[1].split("</tr>", 1)[0]
    assert row.count(">2026-12-07 14:05</time>") == 2
    assert "14:05:09" not in re.sub(r'(title|datetime)="[^"]*"', "", row)  # seconds only in the attributes


def test_dates_are_shown_in_the_hubs_time_zone(admin_client, special_order, settings):
    settings.TIME_ZONE = "Europe/London"
    run = ExportRun.objects.create(group=_export_group(), trigger="admin", status="completed", started_at=AT)
    SentFile.objects.create(run=run, group=run.group, name="out.csv", location="outbox", path="out.csv", sha256="ab")
    SentFile.objects.update(sent_at=datetime(2026, 7, 12, 8, 30, tzinfo=UTC))

    sent = admin_client.get(admin_url(SentFile, "changelist"))

    assert cells(sent, "sent_at") == ["2026-07-12 09:30"]


def _export_group():
    from impex.models import DataDescriptor, DataGroup

    group = DataGroup.objects.create(code="out", name="Out", direction="export")
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))
    return group


def test_the_favicon_is_served_with_debug_off_to_anyone(db, settings):
    settings.DEBUG = False
    anonymous = Client()

    icon = anonymous.get("/favicon.ico")
    login = anonymous.get("/admin/login/")

    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert "max-age=86400" in icon["Cache-Control"]
    assert '<link rel="icon" href="/static/hub/favicon.ico"' in login.text
    assert anonymous.post("/favicon.ico").status_code == 405
