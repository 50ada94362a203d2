"""Honest job statuses in the browser (issue 20): a job with refused rows and a job whose file waits, from the job
list to the job page to the release confirmation; and a job page that follows a job live, all of it, while it runs."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from impex.models import Connection, DataGroup, ImportFile, ImportJob
from impex.services.inbox import inbox_scan
from impex.services.uploads import job_upload
from impex.tasks import import_job_run
from impex.tests.helpers import aged, customer_row, inbox_of, run_import, table_text, write_kore
from tests.browser.conftest import shoot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def console_errors(admin_page):
    """The console errors and uncaught exceptions of the page, for tests to assert there were none."""
    errors = []
    admin_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    admin_page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


def test_refused_rows_and_a_waiting_file_from_the_list_to_the_release_confirmation(
    admin_page, console_errors, tmp_path
):
    kore = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    rows = [customer_row("C1")] + [customer_row(f"C{n}", email="") for n in range(2, 8)]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 40, rows), connection="kore-erp")
    refused = ImportJob.objects.get()
    aged(write_kore(inbox_of(kore), "KS_CUSTOMERS", 42, [customer_row("C42")]))
    waiting = inbox_scan(connection=kore, run_here=True).job
    waiting_file = ImportFile.objects.get(sequence=42)
    page = admin_page

    page.goto("/admin/impex/importjob/")
    expect(page.locator(f'#result_list a[href$="/importjob/{refused.pk}/change/"]')).to_be_visible()
    expect(page.locator("#result_list .impex-badge-warn")).to_have_count(2)
    expect(page.locator('#result_list [data-status="completed with errors"]')).to_have_text("Completed with errors")
    expect(page.locator('#result_list [data-status="waiting"]')).to_have_text("Waiting for sequence 41")
    shoot(page, "job-statuses-list")
    page.locator("#changelist-filter").get_by_role("link", name="Waiting", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    page.goto(f"/admin/impex/importjob/{refused.pk}/change/")
    expect(page.locator("#job-status .impex-badge")).to_have_text("Completed with errors")
    groups = page.locator("#job-error-groups tbody tr")
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text("6 rows")
    shoot(page, "job-statuses-refused-job")
    groups.first.get_by_role("link").click()
    expect(page.locator("#job-errors > table.impex-table").last.locator("tbody tr")).to_have_count(6)

    page.goto("/admin/")
    expect(page.locator('#hub-latest-jobs [data-status="waiting"]')).to_have_text("Waiting for sequence 41")
    expect(page.locator('#hub-connections [data-status="waiting"]')).to_have_text("Waiting for sequence 41")
    shoot(page, "job-statuses-home")
    page.goto("/admin/impex/connection/")
    expect(page.locator("#result_list .field-last_scan")).to_contain_text("Waiting for sequence 41")
    shoot(page, "job-statuses-connections")

    page.goto("/admin/impex/importjob/")
    page.locator(f'#result_list a[href$="/importjob/{waiting.pk}/change/"]').click()
    expect(page.locator("#job-status .impex-badge")).to_have_text("Waiting for sequence 41")
    expect(page.locator("#job-waiting")).to_contain_text(waiting_file.name)
    expect(page.locator("#run-again")).to_have_count(0)
    shoot(page, "job-statuses-waiting-job")
    page.locator("#release-wait").click()

    expect(page.locator("h1")).to_have_text("Release the sequence wait?")
    expect(page.locator(".release-skips")).to_contain_text("Sequence 41 will be skipped for good")
    expect(page.locator(".release-going-in")).to_contain_text(waiting_file.name)
    shoot(page, "job-statuses-release-confirmation")
    assert Connection.objects.get(pk=kore.pk).next_expected_sequence == 41
    page.locator("#release-confirm").click()
    expect(page.locator("ul.messagelist")).to_contain_text("sequence 41 skipped for good")
    assert Connection.objects.get(pk=kore.pk).next_expected_sequence == 42
    assert console_errors == [] and page.failed_responses == []


def test_the_job_page_follows_the_whole_job_live_while_it_runs(admin_page, console_errors):
    kore = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    rows = [customer_row("C1")] + [customer_row(f"C{n}", email="") for n in range(2, 5)]
    content = table_text(rows, delimiter="\t").encode()
    upload = SimpleUploadedFile("ERP_0000001_INT1_KS_CUSTOMERS.NET", content)
    job = job_upload(
        upload=upload, group=DataGroup.objects.get(code="kore-inbound"), connection=kore, dry_run=False, user="ana"
    )
    page = admin_page

    page.goto(f"/admin/impex/importjob/{job.pk}/change/")
    expect(page.locator("#job-status .impex-badge")).to_have_attribute("data-status", "queued")
    expect(page.locator("#job-errors")).to_contain_text("No row errors.")
    page.evaluate("window.notReloaded = true")
    shoot(page, "job-live-queued")

    assert import_job_run(job.pk) == "completed"

    # Every part of the page moves on without a reload: the panel, the fields, the files, the row errors, the log.
    expect(page.locator("#job-status .impex-badge")).to_have_text("Completed with errors")
    expect(page.locator(".field-status .impex-badge")).to_have_text("Completed with errors")
    expect(page.locator("#job-error-groups")).to_contain_text("3 rows")
    expect(page.locator("#job-errors")).not_to_contain_text("No row errors.")
    expect(page.locator("#job-files-body")).to_contain_text("Imported")
    expect(page.locator("#job-files-body")).to_contain_text("download rejected rows")
    expect(page.locator("#events-group")).to_contain_text("completed")
    # Each log line once (Django's inline wrote each row's text above the row too).
    log = page.locator("#events-group").inner_text()
    assert log.count("ERP_0000001_INT1_KS_CUSTOMERS.NET: imported") == 1, log
    assert page.evaluate("window.notReloaded") is True
    shoot(page, "job-live-done")
    # Polling stops once the job has ended: no more requests for its progress.
    polls = []
    page.on("request", lambda r: polls.append(r.url) if "/progress/" in r.url else None)
    page.wait_for_timeout(2500)
    assert polls == []
    assert console_errors == [] and page.failed_responses == []
