"""The Django admin driven in a real browser (Debian's chromium through Playwright) against the live server.

Each test looks at what an integration admin sees: the pages, the forms, the messages and the links between
them; data is set up with the ORM or the impex_import command, as the scheduler would. See conftest.py for how
to enable (or require) the browser.
"""

import re

import pytest
from playwright.sync_api import expect

from impex.builtin import column_names
from impex.models import Connection, DataDescriptor, ImportJob, RowError
from impex.tests.helpers import customer_row, only_file, run_import, write_kore, write_raw
from syncapp.models import Customer
from tests.browser.conftest import log_in

# The live server needs a transactional database (the built-in descriptors come from the autouse fixture
# builtin_descriptors in conftest.py, which runs the migration's code again).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KS_CUSTOMERS_COLUMNS = list(column_names("KS_CUSTOMERS"))
BUILTIN_CODES = [
    "SPECIAL-ORDERS",
    "SPECIAL-ORDER-LINE-ITEMS",
    "SPECIAL-ORDER-EVENTS",
    "KS_CUSTOMERS",
    "KS_PRODUCTS",
    "KS_INVENTORY",
    "KS_PRICES",
    "KS_ORDERS",
    "KS_ORDER_LINES",
    "KS_SHIPMENTS",
    "ORDER-STATUS",
]
JOB_SCREENSHOT = "/tmp/impex-job-page.png"


def result_rows(page):
    """The rows of an admin changelist."""
    return page.locator("#result_list tbody tr")


def inline_column_names(page) -> list[str]:
    """The column names shown in the descriptor's columns inline, in page order (saved rows only)."""
    return page.locator("#columns-group tr.has_original input[name$='-name']").evaluate_all(
        "inputs => inputs.map(i => i.value)"
    )


def test_login_and_index_shows_the_apps(page, superuser, live_server):
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    expect(page.locator("#header")).to_be_visible()
    # The admin stylesheet is served by the live server and applied (base.css lays the header out as a flex box).
    css = page.request.get(f"{live_server.url}/static/admin/css/base.css")
    assert css.status == 200 and "#header" in css.text()
    assert page.locator("#header").evaluate("h => getComputedStyle(h).display") == "flex"

    page.fill("#id_username", "browser-admin")
    page.fill("#id_password", "wrong password")
    page.click("input[type=submit]")
    expect(page.locator(".errornote")).to_contain_text("correct username and password")

    log_in(page)
    expect(page.locator("#site-name")).to_be_visible()
    expect(page.locator("#user-tools")).to_contain_text("browser-admin")
    expect(page.locator(".app-impex caption")).to_have_text("ImpEx")
    expect(page.locator(".app-syncapp caption")).to_have_text("Synced data")
    expect(page.locator(".app-orders caption")).to_have_text("Orders")
    impex = page.locator(".app-impex")
    for name in ("Connections", "Data descriptors", "Data groups", "Import jobs"):
        expect(impex.get_by_role("link", name=name, exact=True)).to_be_visible()
    assert page.failed_responses == []


def test_descriptor_list_and_builtin_columns(admin_page):
    page = admin_page
    page.locator(".app-impex").get_by_role("link", name="Data descriptors", exact=True).click()
    expect(page.locator("#content h1")).to_have_text("Select data descriptor to change")
    expect(result_rows(page)).to_have_count(len(BUILTIN_CODES))
    codes = page.locator("#result_list tbody th.field-code a").all_inner_texts()
    assert sorted(codes) == sorted(BUILTIN_CODES)
    expect(page.locator(".paginator")).to_contain_text(f"{len(BUILTIN_CODES)} data descriptors")

    page.get_by_role("link", name="KS_CUSTOMERS", exact=True).click()
    expect(page.locator("#content h1")).to_have_text("Change data descriptor")
    expect(page.locator(".field-code")).to_contain_text("KS_CUSTOMERS")
    expect(page.locator("#id_file_pattern")).to_have_value("*KS_CUSTOMERS.*")
    expect(page.locator("#columns-group tr.has_original")).to_have_count(12)
    assert inline_column_names(page) == KS_CUSTOMERS_COLUMNS
    expect(page.locator("#id_columns-0-name")).to_have_value("customer_id")
    expect(page.locator("#id_columns-0-is_key")).to_be_checked()
    expect(page.locator("#id_columns-0-required")).to_be_checked()
    # Built-in descriptors cannot be deleted, but they can be copied with "Save as new".
    expect(page.locator(".deletelink")).to_have_count(0)
    expect(page.locator("input[name=_saveasnew]")).to_be_visible()


def test_save_as_new_makes_a_layout_that_imports(admin_page, tmp_path):
    page = admin_page
    source = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    page.goto(f"/admin/impex/datadescriptor/{source.pk}/change/")
    expect(page.locator("#columns-group tr.has_original")).to_have_count(12)

    page.select_option("#id_format", "csv")
    page.fill("#id_delimiter", ";")
    # Save as new copies the pattern as it is; the copy claims its own file names.
    page.fill("#id_file_pattern", "*KS_CUSTOMERS_SEMI.*")
    page.fill("#id_name", "Kore customers, semicolon layout")
    email = KS_CUSTOMERS_COLUMNS.index("email")
    expect(page.locator(f"#id_columns-{email}-name")).to_have_value("email")
    page.fill(f"#id_columns-{email}-name", "e_mail")
    page.fill("#id_code", "KS_CUSTOMERS_SEMI")
    page.click("input[name=_saveasnew]")
    expect(page.locator(".messagelist .success")).to_contain_text("KS_CUSTOMERS_SEMI")

    copy = DataDescriptor.objects.get(code="KS_CUSTOMERS_SEMI")
    assert not copy.builtin
    assert (copy.format, copy.delimiter, copy.file_pattern, copy.convention) == (
        "csv",
        ";",
        "*KS_CUSTOMERS_SEMI.*",
        "kore",
    )
    assert list(copy.columns.values_list("name", flat=True)) == [
        "e_mail" if name == "email" else name for name in KS_CUSTOMERS_COLUMNS
    ]
    # The built-in descriptor is left as it was.
    source.refresh_from_db()
    assert (source.format, source.delimiter, source.file_pattern) == ("tsv", "\\t", "*KS_CUSTOMERS.*")
    assert list(source.columns.values_list("name", flat=True)) == KS_CUSTOMERS_COLUMNS

    # The copy shows in the list next to the built-in ones.
    page.goto("/admin/impex/datadescriptor/")
    expect(page.get_by_role("link", name="KS_CUSTOMERS_SEMI", exact=True)).to_be_visible()
    expect(result_rows(page)).to_have_count(len(BUILTIN_CODES) + 1)

    Connection.objects.create(code="kore-erp", convention="kore", integration_id="INT1")
    path = write_raw(
        tmp_path,
        "ERP_0000001_INT1_KS_CUSTOMERS_SEMI.NET",
        "customer_id;e_mail;first_name\nC1;ann@example.com;Ann\nC2;bob@example.com;Bob\n",
    )
    code, report = run_import(path)
    result = only_file(report)
    assert code == 0, report
    assert (result["status"], result["descriptor"], result["created"], result["failed"]) == (
        "imported",
        "KS_CUSTOMERS_SEMI",
        2,
        0,
    ), report
    assert dict(Customer.objects.values_list("customer_id", "email")) == {
        "C1": "ann@example.com",
        "C2": "bob@example.com",
    }
    assert Customer.objects.get(customer_id="C1").first_name == "Ann"


def test_import_job_page_and_row_errors(admin_page, tmp_path):
    page = admin_page
    Connection.objects.create(code="kore-erp", convention="kore", integration_id="INT1")
    rows = [customer_row("C1", first_name="Ann"), customer_row("C2", email=""), customer_row("C3")]
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)
    code, report = run_import(path)
    assert code == 0, report
    assert only_file(report)["created"] == 2 and only_file(report)["failed"] == 1, report
    job = ImportJob.objects.get()
    error = RowError.objects.get()

    page.goto("/admin/")
    page.locator(".app-impex").get_by_role("link", name="Import jobs", exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first).to_contain_text("Completed")
    page.locator("#result_list tbody tr").first.locator("a").first.click()

    expect(page.locator("#content h1")).to_have_text("View import job")
    expect(page.locator(".field-status .readonly")).to_have_text(re.compile("completed", re.IGNORECASE))
    expect(page.locator("#job-bar")).to_have_attribute("value", "100")
    expect(page.locator("#job-rows-done")).to_have_text("3 of 3")
    file_row = page.locator("#job-files tbody tr")
    expect(file_row).to_have_count(1)
    expect(file_row.locator("td").nth(0)).to_contain_text("ERP_0000001_INT1_KS_CUSTOMERS.NET")
    expect(file_row.locator("td").nth(1)).to_have_text("KS_CUSTOMERS")
    expect(file_row.locator("td.file-status")).to_have_text(re.compile("imported", re.IGNORECASE))
    expect(file_row.locator("td.num")).to_have_text(["2", "0", "0", "0", "1"])
    link = page.locator(".field-row_errors a")
    expect(link).to_have_text("1 row error")
    page.screenshot(path=JOB_SCREENSHOT, full_page=True)

    link.click()
    expect(page).to_have_url(re.compile(rf"/admin/impex/rowerror/\?job={job.pk}$"))
    expect(result_rows(page)).to_have_count(1)
    error_row = result_rows(page).first
    expect(error_row.locator(".field-file")).to_contain_text("ERP_0000001_INT1_KS_CUSTOMERS.NET")
    expect(error_row.locator(".field-row")).to_have_text(str(error.row))
    expect(error_row.locator(".field-column")).to_have_text("email")
    expect(error_row.locator(".field-message")).to_have_text(error.message)
    # Rows are numbered as lines of the file, the header being row 1: C2 is on row 3.
    assert error.row == 3 and error.column == "email" and error.message


def test_connection_add_form(admin_page):
    page = admin_page
    page.goto("/admin/")
    page.locator(".app-impex").get_by_role("link", name="Connections", exact=True).click()
    page.get_by_role("link", name=re.compile("Add connection", re.IGNORECASE)).click()
    expect(page.locator("#content h1")).to_have_text("Add connection")

    page.fill("#id_code", "acme-pos")
    page.fill("#id_name", "Acme POS")
    page.select_option("#id_convention", "bspk")
    page.fill("#id_company_name", "Acme")
    page.fill("#id_timezone", "Europe/London")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_contain_text("acme-pos")
    row = result_rows(page).filter(has_text="acme-pos")
    expect(row).to_have_count(1)
    expect(row.locator(".field-naming")).to_have_text(re.compile(r"^\s*BSPK\s*Acme\s*$"))
    saved = Connection.objects.get(code="acme-pos")
    assert (saved.convention, saved.company_name, saved.timezone) == ("bspk", "Acme", "Europe/London")

    # A BSPK connection without its company name (and with a misspelt zone) is refused with the reasons.
    page.goto("/admin/impex/connection/add/")
    page.fill("#id_code", "no-company")
    page.select_option("#id_convention", "bspk")
    page.fill("#id_timezone", "Europe/Londn")
    page.click("input[name=_save]")
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-company_name .errorlist")).to_have_text(
        "A BSPK connection needs the company name its file names carry."
    )
    expect(page.locator(".field-timezone .errorlist")).to_contain_text("Unknown time zone 'Europe/Londn'")
    expect(page.locator("#id_code")).to_have_value("no-company")
    assert not Connection.objects.filter(code="no-company").exists()


def test_customer_search_and_export_button(admin_page):
    page = admin_page
    kore = Connection.objects.create(code="kore-erp", convention="kore", integration_id="INT1")
    for customer_id, email in (("C100", "ann@example.com"), ("C200", "bob@example.com"), ("C300", "cy@example.com")):
        Customer.objects.create(customer_id=customer_id, email=email, connection=kore)

    page.goto("/admin/")
    page.locator(".app-syncapp").get_by_role("link", name="Customers", exact=True).click()
    expect(result_rows(page)).to_have_count(3)
    page.fill("#searchbar", "C200")
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(r"\?q=C200$"))
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first.locator(".field-customer_id")).to_have_text("C200")
    expect(result_rows(page).first.locator(".field-email")).to_have_text("bob@example.com")

    export = page.locator(".object-tools").get_by_role("link", name="Export", exact=True)
    expect(export).to_be_visible()
    export.click()
    expect(page.locator("#content h1")).to_contain_text("Export")
    expect(page.locator("select[name=format]")).to_be_visible()
