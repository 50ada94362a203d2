"""Exports downloaded in a real browser: an export group's file and chosen customers, formulas neutralised."""

import csv
import io
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from impex.models import DataDescriptor, DataGroup
from syncapp.models import Customer

# The live server needs a transactional database (the built-in descriptors come from conftest.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "var/screenshots"


@pytest.fixture
def customers_out():
    """Three customers, one with a formula in a text cell and a negative discount, and an export group of them."""
    Customer.objects.create(customer_id="C1", email="ann@example.com", first_name="=SUM(1)", discount_percentage=-5)
    Customer.objects.create(customer_id="C2", email="bob@example.com", first_name="Bob", company_name="Bob, Inc.")
    Customer.objects.create(customer_id="C3", email="cy@example.com", first_name="Cy", active=False)
    group = DataGroup.objects.create(code="customers-out", name="Customers for the shop", direction="export")
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))
    return group


def rows_of(path, delimiter):
    return list(csv.reader(io.StringIO(path.read_bytes().decode(), newline=""), delimiter=delimiter))


def test_an_export_group_is_downloaded_from_its_page(admin_page, customers_out, tmp_path):
    page = admin_page

    page.goto("/admin/")
    page.locator(".app-impex").get_by_role("link", name="Data groups", exact=True).click()
    page.get_by_role("link", name="customers-out", exact=True).click()
    page.locator(".object-tools").get_by_role("link", name="Export", exact=True).click()
    expect(page.locator("#content h1")).to_have_text("Export Customers for the shop")
    expect(page.locator("#content-main")).to_contain_text("the descriptor KS_CUSTOMERS")
    page.screenshot(path=f"{SCREENSHOTS}/export_group_page.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    assert re.fullmatch(r"customers-out_\d{14}\.tsv", download.suggested_filename)
    header, *rows = rows_of(saved, "\t")
    assert header == [c.name for c in DataDescriptor.objects.get(code="KS_CUSTOMERS").columns.all()]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert sorted(by_id) == ["C1", "C2", "C3"]
    assert (by_id["C1"]["first_name"], by_id["C1"]["discount_percentage"]) == ("'=SUM(1)", "-5")
    assert (by_id["C2"]["company_name"], by_id["C3"]["active"]) == ("Bob, Inc.", "false")
    assert page.failed_responses == []


def test_chosen_customers_are_exported_as_csv_from_their_list(admin_page, customers_out, tmp_path):
    page = admin_page

    page.goto("/admin/syncapp/customer/")
    for customer_id in ("C1", "C3"):
        page.locator("#result_list tr", has_text=customer_id).locator("input.action-select").check()
    page.select_option("select[name=action]", "export_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("#content-main")).to_contain_text("The file holds the 2 selected customers.")
    page.select_option("select[name=format]", "csv")
    page.screenshot(path=f"{SCREENSHOTS}/export_selected_page.png", full_page=True)
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    saved = tmp_path / "chosen.csv"
    info.value.save_as(saved)

    assert re.fullmatch(r"KS_CUSTOMERS_\d{14}\.csv", info.value.suggested_filename)
    header, *rows = rows_of(saved, ",")
    assert header[:2] == ["customer_id", "email"]
    assert sorted(row[0] for row in rows) == ["C1", "C3"]
    assert Decimal(Customer.objects.get(customer_id="C1").discount_percentage) == Decimal("-5")


def test_one_export_entry_leads_to_a_file_with_an_iso_date_or_a_sheet(admin_page, customers_out, tmp_path):
    from datetime import UTC, datetime

    from tests.browser.conftest import shoot

    page = admin_page
    Customer.objects.update(updated_at=datetime(2026, 3, 1, 9, 15, tzinfo=UTC))
    Customer.objects.filter(customer_id="C2").update(updated_at=datetime(2026, 11, 3, 10, 15, tzinfo=UTC))

    page.goto("/admin/syncapp/customer/")
    entries = page.locator(".object-tools a", has_text="Export")
    expect(entries).to_have_count(1)
    expect(page.locator(".object-tools")).not_to_contain_text("Download sheet")
    shoot(page, "export-customers-list")
    entries.click()

    expect(page.locator("#content h1")).to_have_text("Export customers")
    expect(page.locator("#export-file-heading")).to_have_text("A file in a descriptor's layout")
    expect(page.locator("#export-sheet-heading")).to_have_text("A sheet")
    picker = page.locator("input[type=date][name=since]")
    expect(picker).to_be_visible()
    expect(page.locator("input[type=time][name=since_time]")).to_be_visible()
    picker.fill("2026-12-07")
    expect(page.locator("#since-words")).to_have_text("Monday, 7 December 2026")
    shoot(page, "export-customers-page")
    page.get_by_role("button", name="Export", exact=True).click()

    expect(page.locator(".messagelist .warning")).to_have_text(
        "No customers changed since 2026-12-07 00:00 (UTC), so there is no file to download: the latest change was "
        "at 2026-11-03 10:15."
    )
    expect(picker).to_have_value("2026-12-07")
    expect(page.locator("#since-words")).to_have_text("Monday, 7 December 2026")
    shoot(page, "export-customers-nothing-since")

    picker.fill("2026-11-01")
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    saved = tmp_path / "since.tsv"
    info.value.save_as(saved)
    assert [row[0] for row in rows_of(saved, "\t")[1:]] == ["C2"]

    page.get_by_role("link", name="Choose the columns of a sheet").click()
    expect(page.locator("#content h1")).to_have_text("Export customers: a sheet")
    expect(page.locator(".sheet-export-note")).to_contain_text("For other systems, download a file in a descriptor")
    shoot(page, "export-customers-sheet")
    page.select_option("#id_format", label="csv")
    with page.expect_download() as sheet:
        page.get_by_role("button", name="Submit").click()
    assert sheet.value.suggested_filename.endswith(".csv")
    assert page.failed_responses == []


def test_the_export_group_page_has_the_date_picker(admin_page, customers_out):
    from tests.browser.conftest import shoot

    page = admin_page
    page.goto(f"/admin/impex/datagroup/{customers_out.pk}/export/")

    expect(page.locator("input[type=date][name=since]")).to_be_visible()
    expect(page.locator("#export-sheet-heading")).to_have_count(0)
    shoot(page, "export-group-page")


def test_money_is_right_aligned_with_its_currencys_decimals(admin_page):
    from syncapp.models import Price, PriceList, Product, ProductVariant
    from tests.browser.conftest import shoot

    page = admin_page
    variant = ProductVariant.objects.create(
        variant_id="V1", sku="SKU1", product=Product.objects.create(product_id="P1"), rrp=Decimal("49.9")
    )
    for code, amount in (("EUR", "436.6"), ("JPY", "1500"), ("GBP", "1234567.5")):
        Price.objects.create(
            price_list=PriceList.objects.get_or_create(code=code)[0],
            variant=variant,
            currency=code,
            price=Decimal(amount),
        )

    page.goto("/admin/syncapp/price/")
    cells = page.locator("#result_list td.field-price_money")
    expect(cells).to_have_count(3)
    assert sorted(cells.all_inner_texts()) == ["1,234,567.50 GBP", "1,500 JPY", "436.60 EUR"]
    assert cells.first.evaluate("c => getComputedStyle(c).textAlign") == "right"
    assert page.locator("#result_list th.column-price_money").evaluate("c => getComputedStyle(c).textAlign") == "right"
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
    shoot(page, "prices-list")
