"""The sync-log dashboard in a real browser (SPEC section 8): from the list to a log's dashboard, its chart, a search
of the open errors, and a day of the chart to that day's jobs."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from impex.models import Connection
from impex.tests.helpers import customer_row, run_import, write_kore

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def synced(tmp_path, builtin_descriptors):
    Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    rows = [customer_row("C-1"), customer_row("C-2", email=""), customer_row("C-3", discount_percentage="lots")]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows, mode="FULL"))
    assert code == 0, report


def test_staff_read_a_sync_log_dashboard_search_its_errors_and_open_a_days_jobs(admin_page, synced):
    page = admin_page
    page.goto("/admin/syncapp/synclog/")
    page.get_by_role("link", name="Dashboard").click()

    expect(page.locator("h1")).to_contain_text("Sync log: kore-erp, Customer")
    expect(page.locator("#open-error-count")).to_have_text("2")
    expect(page.locator("#last-partial-sync")).to_have_text("never")
    expect(page.locator("#last-full-sync")).not_to_have_text("never")
    today = page.locator(f'#sync-chart a.chart-day[data-day="{timezone.localdate():%Y-%m-%d}"]')
    expect(today).to_have_attribute("data-rows", "1")
    expect(today).to_have_attribute("data-errors", "2")
    expect(page.locator("#sync-errors tr.sync-error")).to_have_count(2)

    page.fill("#sync-error-q", "discount")
    page.get_by_role("button", name="Search").click()

    expect(page.locator("#sync-errors tr.sync-error")).to_have_count(1)
    expect(page.locator("#sync-errors td.external-id")).to_have_text("C-3")
    page.get_by_role("link", name="Show all").click()
    expect(page.locator("#sync-errors tr.sync-error")).to_have_count(2)

    today.locator("rect.rows").click()
    expect(page).to_have_url(re.compile(r"/admin/impex/importjob/\?connection__id__exact="))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
