"""A descriptor for a shop's 19-column customers export, made in a real browser, tried on a sample, then imported."""

import codecs
import csv

import pytest
from playwright.sync_api import expect

from impex.models import Connection, DataDescriptor, DataGroup, RowError
from impex.tests.helpers import counts, only_file, run_import
from syncapp.models import Customer
from tests.browser.conftest import shoot
from tests.shop import SHOP_HEADER, SHOP_PATTERN, SHOP_ROWS, shop_columns, write_shop_file

# The live server needs a transactional database (the built-in descriptors come from conftest.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


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
        # The field is chosen in the entity's list; an ignored column keeps "(ignore this column)".
        page.select_option(f"#id_columns-{n}-field", column["field"])
        for flag in ("required", "is_key"):
            if column[flag]:
                page.check(f"#id_columns-{n}-{flag}")
    # The field lists of a new descriptor show the chosen entity's fields only.
    visible = page.eval_on_selector(
        "#id_columns-0-field", "s => [...s.querySelectorAll('optgroup')].filter(g => !g.hidden).map(g => g.label)"
    )
    assert visible == ["Customer"]
    # First a mistake the check on save catches: the company column also fills the e-mail.
    page.select_option("#id_columns-3-field", "email")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator("#columns-group")).to_contain_text("Two columns fill the field 'email' (rows 3 and 4)")
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()
    page.select_option("#id_columns-3-field", "company_name")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_contain_text("SHOP_CUSTOMERS")
    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    assert list(descriptor.columns.values_list("name", flat=True)) == SHOP_HEADER
    shoot(page, "descriptor-change")

    page.get_by_role("link", name="Try it on a sample").click()
    page.set_input_files("#id_file", str(write_shop_file(tmp_path)))
    page.get_by_role("button", name="Read the sample").click()

    expect(page.locator("#sample-summary")).to_contain_text("5 rows: 2 would be refused")
    rows = page.locator("#sample-rows tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_contain_text("ann@example.com")
    expect(rows.nth(1)).to_contain_text("Email is the key: a value is required")
    expect(rows.nth(3)).to_contain_text("duplicate key ann@example.com in this file (first at row 2)")
    expect(rows.nth(0).locator("td")).to_have_text(["2", "Ann", "Archer", "ann@example.com", "Archer Ltd", ""])
    expect(page.locator("#sample-ignored")).to_contain_text("Ignored: Address1, Address2, City")
    assert not Customer.objects.exists()
    shoot(page, "descriptor-sample")

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


def test_an_admin_makes_the_shop_descriptor_from_a_sample_file_in_a_few_clicks(admin_page, tmp_path):
    page = admin_page
    # The shop's export as a spreadsheet program saves it: a byte-order mark, semicolons, yes/no.
    sample = tmp_path / "customers_export_1.csv"
    with open(sample, "w", encoding="utf-8", newline="") as out:
        out.write(codecs.BOM_UTF8.decode("utf-8"))
        writer = csv.writer(out, delimiter=";")
        writer.writerow(SHOP_HEADER)
        writer.writerows(SHOP_ROWS)

    page.goto("/admin/impex/datadescriptor/")
    shoot(page, "descriptor-list")
    page.get_by_role("link", name="New descriptor from a sample file").click()
    page.select_option("#id_entity", label="Customer")
    page.set_input_files("#id_file", str(sample))
    shoot(page, "descriptor-from-sample-step1")
    page.get_by_role("button", name="Read the sample").click()

    # One row per column, in order, mapped by name; the e-mail is the key; the rest is ignored.
    rows = page.locator("#draft-columns tr.draft-column")
    expect(rows).to_have_count(19)
    expect(page.locator("#draft-layout")).to_contain_text("delimited by the semicolon (;)")
    expect(page.locator("#id_file_pattern")).to_have_value("customers_export*.csv")
    expect(page.locator("#id_booleans")).to_have_value("yes/no")
    expect(rows.nth(2).locator("td.column-header")).to_have_text("Email")
    expect(rows.nth(2).locator("select[name$='-field']")).to_have_value("email")
    expect(rows.nth(2).locator("input[name$='-is_key']")).to_be_checked()
    expect(rows.nth(3).locator("select[name$='-field']")).to_have_value("company_name")
    expect(rows.nth(11).locator("select[name$='-field']")).to_have_value("")
    expect(rows.nth(11)).to_have_class("draft-column ignored")
    expect(rows.nth(0).locator("td.column-samples")).to_contain_text("Ann")
    shoot(page, "descriptor-from-sample-step2")

    # "Tax Exempt" fills the customer's yes/no field: choosing it sets the column's type.
    page.fill("#id_code", "SHOP_CUSTOMERS")
    page.select_option("#id_columns-18-field", "payment_on_account")
    expect(page.locator("#id_columns-18-type")).to_have_value("boolean")
    expect(rows.nth(18)).to_have_class("draft-column")
    # A mistake first: the key unticked, which the check on save names.
    page.uncheck("#id_columns-2-is_key")
    page.get_by_role("button", name="Create the descriptor").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator("#content-main")).to_contain_text("No key column")
    expect(page.locator("#id_columns-18-field")).to_have_value("payment_on_account")
    shoot(page, "descriptor-from-sample-errors")
    assert not DataDescriptor.objects.filter(code="SHOP_CUSTOMERS").exists()
    page.check("#id_columns-2-is_key")
    page.get_by_role("button", name="Create the descriptor").click()

    expect(page.locator(".messagelist .success")).to_contain_text("SHOP_CUSTOMERS was created with 19 columns")
    descriptor = DataDescriptor.objects.get(code="SHOP_CUSTOMERS")
    assert list(descriptor.columns.values_list("name", flat=True)) == SHOP_HEADER
    assert (descriptor.delimiter, descriptor.true_words, descriptor.false_words) == (";", "yes", "no")
    expect(page.locator("#id_columns-18-field")).to_have_value("payment_on_account")
    expect(page.locator("#id_columns-4-field")).to_have_value("")
    shoot(page, "descriptor-from-sample-saved")

    group = DataGroup.objects.create(code="shop-customers", name="Shop customers")
    group.descriptors.add(descriptor)
    code, report = run_import(sample, group="shop-customers")

    assert code == 0, report
    assert counts(only_file(report)) == {"created": 3, "updated": 0, "unchanged": 0, "retired": 0, "failed": 2}
    assert dict(Customer.objects.values_list("email", "payment_on_account")) == {
        "ann@example.com": False,
        "cy@example.com": False,
        "dee@example.com": False,
    }
    assert page.failed_responses == []
