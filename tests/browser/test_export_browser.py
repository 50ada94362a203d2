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
