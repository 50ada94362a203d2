"""Cancelling an import job in the browser: the job page's "Cancel job", its confirmation, then "Run again"."""

import pytest
from playwright.sync_api import expect

from impex.models import Connection, ImportJob
from impex.services.jobs import job_create
from impex.tests.helpers import customer_row, write_kore
from tests.browser.conftest import shoot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_queued_job_is_cancelled_after_confirming_then_run_again(admin_page, tmp_path):
    kore = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    job = job_create(paths=[write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])], connection=kore)
    page = admin_page

    page.goto(f"/admin/impex/importjob/{job.pk}/change/")
    page.locator("#cancel-job").click()

    expect(page.locator("h1")).to_have_text(f"Cancel import job #{job.pk}?")
    expect(page.locator("#job-cancel-files")).to_contain_text("KS_CUSTOMERS")
    shoot(page, "job-cancel-confirm")
    page.get_by_role("link", name="No, take me back").click()
    expect(page.locator("#cancel-job")).to_be_visible()
    assert ImportJob.objects.get(pk=job.pk).status == "queued"

    page.locator("#cancel-job").click()
    page.locator("#job-cancel-submit").click()

    expect(page.locator(".messagelist")).to_contain_text(f"Import job #{job.pk} is cancelled")
    expect(page.locator("#job-status .impex-badge")).to_have_text("Cancelled: run it again to finish it")
    expect(page.locator("#cancel-job")).to_have_count(0)
    expect(page.locator("#run-again")).to_be_visible()
    shoot(page, "job-cancelled")
    assert ImportJob.objects.get(pk=job.pk).status == "cancelled"

    page.goto("/admin/impex/importjob/")
    expect(page.locator('#result_list [data-status="cancelled"]')).to_have_text("Cancelled: run it again to finish it")
    page.locator("#changelist-filter").get_by_role("link", name="Cancelled", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    shoot(page, "job-cancelled-list")

    page.goto(f"/admin/impex/importjob/{job.pk}/change/")
    page.locator("#run-again").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Import job #{job.pk} is queued to run again.")
    assert ImportJob.objects.get(pk=job.pk).status == "queued"
