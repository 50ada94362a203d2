"""A sheet imported on an entity's page in a real browser: upload, a preview that lists the refused row, confirm."""

import re

import pytest
from playwright.sync_api import expect

from syncapp.models import Customer
from tests.browser.conftest import shoot

# The live server needs a transactional database (the built-in descriptors come from conftest.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_customer_sheet_with_a_bad_row_is_previewed_confirmed_and_listed(admin_page, tmp_path):
    page = admin_page
    sheet = tmp_path / "customers.csv"
    sheet.write_text(
        "customer_id,email,first_name,active\nC1,ann@example.com,Ann,Y\nC2,,Bob,Y\nC3,cy@example.com,Cy,N\n",
        encoding="utf-8",
    )

    page.goto("/admin/")
    page.locator(".app-syncapp").get_by_role("link", name="Customers", exact=True).click()
    page.locator(".object-tools").get_by_role("link", name="Import", exact=True).click()
    expect(page.locator("#content h1")).to_contain_text("Import")
    page.set_input_files("#id_import_file", str(sheet))
    page.select_option("#id_format", label="csv")
    page.get_by_role("button", name="Submit").click()

    refused = page.locator("#refused-rows tbody tr")
    expect(refused).to_have_count(1)
    expect(refused.first.locator("td").first).to_have_text("3")
    expect(refused.first).to_contain_text("email: a value is required")
    expect(page.locator("#sheet-preview")).to_contain_text("confirming imports 2 new and 0 updated customers")
    expect(page.locator("#sheet-preview .warning")).to_contain_text("1 row will be refused")
    assert not Customer.objects.exists()
    shoot(page, "sheet-import-preview")

    page.get_by_role("button", name="Confirm import").click()

    expect(page).to_have_url(re.compile(r"/admin/syncapp/customer/$"))
    expect(page.locator(".messagelist .warning")).to_have_text(
        "Import finished (customers): 2 new, 0 updated, 0 unchanged, 1 refused."
    )
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator(".field-customer_id")).to_have_text(["C1", "C3"])
    assert dict(Customer.objects.values_list("customer_id", "active")) == {"C1": True, "C3": False}
    assert page.failed_responses == []


def test_a_wide_sheets_preview_fits_the_window(admin_page, tmp_path):
    """Every column of KS_CUSTOMERS with long values and several refused rows: the preview wraps, nothing sticks out."""
    from impex.models import DataDescriptor

    page = admin_page
    header = [c.name for c in DataDescriptor.objects.get(code="KS_CUSTOMERS").columns.all()]
    rows = []
    for i in range(6):
        row = {name: f"{name}-value-{i}" for name in header}
        row.update(customer_id=f"C{i}", email="" if i % 2 else f"customer{i}@example.com", active="Y")
        row.update(parent_customer_id="", price_list="", discount_percentage="5", payment_on_account="N")
        row.update(company_name="VeryLongCompanyNameWithoutAnyBreaks" * 3, group="x" * 90)
        rows.append(",".join(row.get(name, "") for name in header))
    sheet = tmp_path / "customers-wide.csv"
    sheet.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")

    page.goto("/admin/syncapp/customer/import/")
    page.set_input_files("#id_import_file", str(sheet))
    page.select_option("#id_format", label="csv")
    page.get_by_role("button", name="Submit").click()

    expect(page.locator("#refused-rows tbody tr")).to_have_count(3)
    shoot(page, "sheet-import-preview-wide")
    table = page.locator("#refused-rows").bounding_box()
    content = page.locator("#content").bounding_box()
    assert table["x"] + table["width"] <= content["x"] + content["width"]
    # The columns share the width: the frame does not even need its own scroll bar for every customer column.
    assert page.evaluate("(f => f.scrollWidth - f.clientWidth)(document.querySelector('.sheet-preview-frame'))") <= 0
