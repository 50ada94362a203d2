"""Inbox scans in a real browser: the connections list, "Sync now" on a connection's page, the scan's result."""

import os
import re
import time
from pathlib import Path

import pytest
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from playwright.sync_api import expect

from impex.models import Connection, InboxFile
from impex.services.schedules import schedules_sync
from impex.tests.helpers import customer_row, write_kore

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kore(settings, builtin_descriptors):
    """A Kore connection with one file that has sat in its inbox a minute, and its scan schedule."""
    settings.IMPEX_INBOX_QUIET_SECONDS = 0
    conn = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    inbox = Path(settings.IMPEX_ROOT) / conn.code / "inbox"
    inbox.mkdir(parents=True)
    path = write_kore(inbox, "KS_CUSTOMERS", 1, [customer_row("C1")])
    past = time.time() - 60
    os.utime(path, (past, past))
    schedules_sync()
    return conn


def test_sync_now_from_the_connections_list(admin_page, superuser, kore):
    page = admin_page
    page.goto("/admin/impex/connection/")
    row = page.locator("#result_list tbody tr", has_text="kore-erp")
    expect(row.locator("td.field-scans")).to_have_text("every 5 min")
    expect(row.locator("td.field-last_scan")).to_have_text("never")

    row.get_by_role("link", name=re.compile("kore-erp")).click()
    page.get_by_role("button", name="Sync now").click()

    expect(page.locator(".messagelist .success")).to_contain_text("Scan of kore-erp queued:")
    expect(page).to_have_url(re.compile(rf"/admin/impex/connection/{kore.pk}/change/$"))
    (queued,) = OrmQ.objects.all()
    assert queued.task["func"] == "impex.tasks.inbox_scan"
    assert queued.task["args"] == (kore.pk, superuser.get_username())  # who asked: on the scan's job

    # A worker of the cluster runs the queued scan; the list and the connection's page then tell how it went.
    import_string(queued.task["func"])(*queued.task["args"])
    taken = InboxFile.objects.get()
    page.goto("/admin/impex/connection/")
    row = page.locator("#result_list tbody tr", has_text="kore-erp")
    expect(row.locator("td.field-last_scan")).to_contain_text(f"ok · job #{taken.job_id}")
    expect(row.locator("td.field-last_scan")).to_contain_text(f"Sync now by {superuser.get_username()}")
    row.get_by_role("link", name=re.compile("kore-erp")).click()
    inbox = page.locator("#connection-inbox")
    expect(inbox.locator("tr.inbox-file")).to_have_count(1)
    inbox.get_by_role("link", name=taken.name).click()
    expect(page.locator(".inline-group")).to_contain_text(f"taken into import job #{taken.job_id}")
    assert page.failed_responses == []
