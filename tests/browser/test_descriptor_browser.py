"""A descriptor for a shop's 19-column customers export, made in a real browser, tried on a sample, then imported."""

import os

import pytest
from playwright.sync_api import expect

from impex.models import Connection, DataDescriptor, DataGroup, RowError
from impex.tests.helpers import counts, only_file, run_import
from syncapp.models import Customer
from tests.shop import SHOP_HEADER, SHOP_PATTERN, shop_columns, write_shop_file

# The live server needs a transactional database (the built-in descriptors come from conftest.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("IMPEX_SCREENSHOTS", "")


def screenshot(page, name: str) -> None:
    """Keep a full-page screenshot when IMPEX_SCREENSHOTS names a folder (to look at the pages)."""
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def test_an_admin_makes_the_shop_descriptor_tries_it_and_the_file_imports(admin_page, tmp_path):
    page = admin_page
    page.goto("/admin/")
    page.locator(".app-impex").get_by_role("link", name="Data descriptors", exact=True).click()
    page.locator(".object-tools").get_by_role("link", name="Add data descriptor").click()

    page.fill("#id_code", "SHOP_CUSTOMERS")
    page.fill("#id_name", "Shop customers export")
    page.select_option("#id_entity", label="Customer")
    page.fill("#id_file_pattern", SHOP_PATTERN)
    page.fill("#id_precedence", "10")
    page.fill("#id_true_words", "yes")
    page.fill("#id_false_words", "no")
    add_row = page.locator("#columns-group .add-row a")
    for n, column in enumerate(shop_columns()):
        add_row.click()
        page.fill(f"#id_columns-{n}-position", str(column["position"]))
        page.fill(f"#id_columns-{n}-name", column["name"])
        page.fill(f"#id_columns-{n}-field", column["field"])
        for flag in ("required", "is_key", "ignored"):
            if column[flag]:
                page.check(f"#id_columns-{n}-{flag}")
    # First a mistake the check on save catches: the e-mail column also marked ignored.
    page.check("#id_columns-2-ignored")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator("#columns-group")).to_contain_text(
        "An ignored column fills no field: clear the field, or untick 'ignored' to import it."
    )
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()
    page.uncheck("#id_columns-2-ignored")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_contain_text("SHOP_CUSTOMERS")
    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    assert list(descriptor.columns.values_list("name", flat=True)) == SHOP_HEADER
    screenshot(page, "descriptor-change")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400

    page.get_by_role("link", name="Try it on a sample").click()
    page.set_input_files("#id_file", str(write_shop_file(tmp_path)))
    page.get_by_role("button", name="Read the sample").click()

    expect(page.locator("#sample-summary")).to_contain_text("5 rows: 2 would be refused")
    rows = page.locator("#sample-rows tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_contain_text("ann@example.com")
    expect(rows.nth(1)).to_contain_text("a value is required")
    expect(rows.nth(3)).to_contain_text("duplicate key ann@example.com in this file (first at row 2)")
    expect(rows.nth(0).locator("td")).to_have_text(["2", "Ann", "Archer", "ann@example.com", "Archer Ltd", ""])
    expect(page.locator("#sample-ignored")).to_contain_text("Ignored: Address1, Address2, City")
    assert not Customer.objects.exists()
    screenshot(page, "descriptor-sample")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400

    connection = Connection.objects.create(code="shop", convention="bspk", company_name="Shop")
    group = DataGroup.objects.create(code="shop-customers", name="Shop customers", connection=connection)
    group.descriptors.add(descriptor)
    code, report = run_import(write_shop_file(tmp_path), group="shop-customers")

    assert code == 0, report
    assert counts(only_file(report)) == {"created": 3, "updated": 0, "unchanged": 0, "retired": 0, "failed": 2}
    assert sorted(Customer.objects.values_list("email", flat=True)) == [
        "ann@example.com",
        "cy@example.com",
        "dee@example.com",
    ]
    assert sorted(RowError.objects.values_list("row", "message")) == [
        (3, "Email is the key: a value is required"),
        (5, "duplicate key ann@example.com in this file (first at row 2)"),
    ]
    assert page.failed_responses == []
