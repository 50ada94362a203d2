"""Upload and import in a real browser: a zip to a group, the job page live, row errors, rejected rows, dry runs."""

import io
import re
import zipfile

import pytest
from playwright.sync_api import expect

from impex.models import DataGroup, ImportJob
from impex.tasks import import_job_run
from impex.tests.helpers import bspk_name, special_order_row, table_text
from syncapp.models import SpecialOrder, SpecialOrderLineItem
from tests.browser.conftest import log_in, shoot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMESTAMP = "202611011000"
JOB_PAGE = re.compile(r"/admin/impex/importjob/(\d+)/change/$")


@pytest.fixture
def acme(builtin_descriptors):
    from impex.models import Connection

    return Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")


def bspk_zip(path, *, bad_lines=True):
    """Write a zip of the three BSPK files of two special orders; two line items are refused if bad_lines."""
    orders = [special_order_row("SO-1"), special_order_row("SO-2", order_type="CUSTOM")]
    lines = [
        {"line_item_id": "L-1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"},
        {"line_item_id": "L-2", "special_order_id": "SO-2", "product_name": "Chain", "quantity": "2"},
    ]
    if bad_lines:
        lines += [
            {"line_item_id": "L-3", "special_order_id": "SO-404", "product_name": "Lost", "quantity": "1"},
            {"line_item_id": "L-4", "special_order_id": "SO-1", "product_name": "Clasp", "quantity": "zero"},
        ]
    events = [{"event_id": "E-1", "special_order_id": "SO-1", "event_type": "CREATED", "event_at": "2026-11-01T10:00Z"}]
    with zipfile.ZipFile(path, "w") as zf:
        for kind, rows in (
            ("SPECIAL-ORDERS", orders),
            ("SPECIAL-ORDER-LINE-ITEMS", lines),
            ("SPECIAL-ORDER-EVENTS", events),
        ):
            zf.writestr(bspk_name(kind, TIMESTAMP), table_text(rows, delimiter=","))
    return path


def send(page, path, *, group="bspk-special-orders", connection=None, dry_run=False) -> None:
    """Send a file to an import group through the pages, starting from the admin index."""
    page.goto("/admin/")
    page.get_by_role("link", name="Import jobs", exact=True).first.click()
    page.get_by_role("link", name=re.compile("Upload", re.I)).first.click()
    page.select_option("#id_group", value=str(DataGroup.objects.get(code=group).pk))
    if connection is not None:
        page.select_option("#id_connection", value=str(connection.pk))
    page.set_input_files("#id_file", str(path))
    if dry_run:
        page.get_by_label("Dry run").check()
    page.get_by_role("button", name=re.compile("Upload", re.I)).click()


def upload(page, path, *, dry_run=False) -> int:
    """Upload a file to the BSPK group through the pages; return the id of the job it became."""
    send(page, path, dry_run=dry_run)
    expect(page).to_have_url(JOB_PAGE)
    return int(JOB_PAGE.search(page.url).group(1))


def run_in_worker(page, job_id: int) -> None:
    """Run the queued job as a cluster worker would, while the page follows it; check it did not reload."""
    page.evaluate("window.notReloaded = true")
    import_job_run(job_id)
    expect(page.locator("#job-status")).to_have_text(re.compile("Completed|Failed|dry run: done", re.I), timeout=30_000)
    assert page.evaluate("window.notReloaded === true"), "the job page reloaded"


def test_zip_upload_is_followed_live_and_its_rejected_rows_fixed_and_uploaded_again(admin_page, acme, tmp_path):
    page = admin_page
    job_id = upload(page, bspk_zip(tmp_path / "delivery.zip"))
    expect(page.locator("#job-status")).to_contain_text("queued")
    page.screenshot(path=str(tmp_path / "job-queued.png"), full_page=True)
    assert SpecialOrder.objects.count() == 0  # the web request only queued it

    run_in_worker(page, job_id)
    expect(page.locator("#job-files-done")).to_have_text("3 of 3 done")
    expect(page.locator("#job-rows-done")).to_have_text("7 of 7")
    lines_row = page.locator("#job-files tbody tr", has_text=bspk_name("SPECIAL-ORDER-LINE-ITEMS", TIMESTAMP))
    expect(lines_row.locator("td.num")).to_have_text(["2", "0", "0", "0", "2"])
    page.screenshot(path=str(tmp_path / "job-finished.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400

    errors = page.locator("#job-errors tbody tr")
    expect(errors).to_have_count(2)
    page.fill("#e_column", "quantity")
    page.get_by_role("button", name="Filter").click()
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("zero")

    with page.expect_download() as info:
        lines_row.get_by_role("link", name=re.compile("rejected rows")).click()
    download = info.value
    name = download.suggested_filename
    assert name.startswith("SPECIAL-ORDER-LINE-ITEMS_V2_Acme_") and name != bspk_name(
        "SPECIAL-ORDER-LINE-ITEMS", TIMESTAMP
    )
    content = open(download.path(), encoding="utf-8").read()
    assert content.splitlines()[0] == "line_item_id,special_order_id,product_name,quantity,errors"
    assert len(content.splitlines()) == 3

    fixed = tmp_path / name
    fixed.write_text(content.replace("SO-404", "SO-2").replace("zero", "3"), encoding="utf-8")
    again = upload(page, fixed)
    run_in_worker(page, again)
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-files tbody tr").first.locator("td.num")).to_have_text(["2", "0", "0", "0", "0"])
    assert SpecialOrderLineItem.objects.count() == 4
    assert page.failed_responses == []


def test_dry_run_writes_nothing_then_runs_for_real(admin_page, acme, tmp_path):
    page = admin_page
    dry = upload(page, bspk_zip(tmp_path / "delivery.zip", bad_lines=False), dry_run=True)
    run_in_worker(page, dry)
    expect(page.locator("#job-status")).to_contain_text("dry run")
    assert SpecialOrder.objects.count() == 0
    page.get_by_role("button", name="Run it for real").click()
    expect(page).to_have_url(JOB_PAGE)
    real = int(JOB_PAGE.search(page.url).group(1))
    assert real != dry and ImportJob.objects.get(pk=real).dry_run_of_id == dry
    run_in_worker(page, real)
    expect(page.locator("#job-status")).to_have_text("Completed")
    assert SpecialOrder.objects.count() == 2 and SpecialOrderLineItem.objects.count() == 2

    page.goto("/admin/impex/importjob/")
    expect(page.locator("#result_list")).to_contain_text("dry run")


@pytest.mark.parametrize("kind", ["zip-slip", "bomb"])
def test_unsafe_zip_is_refused_on_the_form_with_its_reason(admin_page, acme, tmp_path, settings, kind):
    page = admin_page
    path = tmp_path / f"{kind}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if kind == "bomb":
            settings.IMPEX_MAX_FILE_BYTES = 1_000_000
            zf.writestr(bspk_name("SPECIAL-ORDERS", TIMESTAMP), b"0" * 20_000_000)
        else:
            zf.writestr("../../etc/evil.csv", b"special_order_id\n")
    send(page, path)
    expect(page).to_have_url(re.compile(r"/admin/impex/importjob/upload/$"))
    expect(page.locator(".field-file .errorlist")).to_contain_text(
        "has a path that leaves its folder" if kind == "zip-slip" else "more than the limit of 1,000,000"
    )
    assert ImportJob.objects.count() == 0 and SpecialOrder.objects.count() == 0


def test_the_expected_names_follow_the_group_and_a_refused_upload_says_why(admin_page, acme, tmp_path):
    from impex.models import Connection

    kore = Connection.objects.create(code="kore-erp", convention="kore", integration_id="INT1")
    page = admin_page
    page.goto("/admin/impex/importjob/upload/")
    expected = page.locator("#upload-expected")
    expect(expected).to_be_hidden()  # no group chosen yet

    page.select_option("#id_group", value=str(DataGroup.objects.get(code="bspk-special-orders").pk))
    items = expected.locator("li")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text(
        re.compile(r"SPECIAL-ORDERS\s*e\.g\. SPECIAL-ORDERS_V2_CompanyName_\d{12}\.csv")
    )
    expect(expected.locator("p")).to_contain_text("the company or integration id in them finds the connection")
    page.select_option("#id_connection", value=str(acme.pk))
    expect(items.first).to_contain_text(re.compile(r"SPECIAL-ORDERS_V2_Acme_\d{12}\.csv"))
    expect(expected.locator("p")).to_have_text("File names this group expects from acme-pos:")
    shoot(page, "upload-expected-bspk")

    page.select_option("#id_group", value=str(DataGroup.objects.get(code="kore-inbound").pk))
    page.select_option("#id_connection", value=str(kore.pk))
    expect(items).to_have_count(7)
    expect(items.first).to_contain_text("DT_0000001_INT1_KS_CUSTOMERS.NET")
    expect(items.last).to_contain_text("DT_0000001_INT1_KS_SHIPMENTS.NET")

    # A BSPK file sent with the Kore connection: refused on the form, naming both conventions; nothing is created.
    orders = tmp_path / bspk_name("SPECIAL-ORDERS", TIMESTAMP)
    orders.write_text(table_text([special_order_row("SO-1")], delimiter=","), encoding="utf-8")
    page.set_input_files("#id_file", str(orders))
    page.get_by_role("button", name=re.compile("Upload", re.I)).click()
    expect(page.locator(".field-file .errorlist")).to_have_text(
        f"{orders.name} is a BSPK name, but connection kore-erp uses the Kore convention"
    )
    expect(page.locator(".field-file label")).to_have_text("File or zip:")
    # The choices are kept, and so are the names they expect.
    expect(page.locator("#id_connection")).to_have_value(str(kore.pk))
    expect(items.first).to_contain_text("DT_0000001_INT1_KS_CUSTOMERS.NET")
    shoot(page, "upload-refused")
    assert ImportJob.objects.count() == 0 and SpecialOrder.objects.count() == 0
    assert page.failed_responses == []


def test_user_without_run_import_is_refused_on_the_server(page, acme, django_user_model, tmp_path):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    log_in(page, "viewer", "viewer-pass-1")
    page.goto("/admin/impex/importjob/")
    expect(page.get_by_role("link", name=re.compile("Upload", re.I))).to_have_count(0)
    response = page.goto("/admin/impex/importjob/upload/")
    assert response.status == 403
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    archive = bspk_zip(tmp_path / "delivery.zip")
    posted = page.request.post(
        "/admin/impex/importjob/upload/",
        multipart={
            "group": "1",
            "file": {
                "name": "delivery.zip",
                "mimeType": "application/zip",
                "buffer": io.BytesIO(archive.read_bytes()).getvalue(),
            },
        },
        headers={"X-CSRFToken": token, "Referer": page.url},
    )
    assert posted.status == 403
    assert ImportJob.objects.count() == 0 and SpecialOrder.objects.count() == 0
