"""An admin sees what needs attention on the home page, follows its link, and marks the problem resolved."""

import io

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from impex.models import Connection, ImportJob, Problem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_needs_attention_leads_to_the_job_and_the_problem_is_marked_resolved(admin_page, tmp_path):
    Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    bad = tmp_path / "ERP_0000001_INT1_KS_NOTHING.NET"
    bad.write_text("customer_id\temail\nC1\tc1@example.com\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        call_command("impex_import", str(bad), "--connection", "kore-erp", stdout=io.StringIO(), stderr=io.StringIO())
    job = ImportJob.objects.get()
    page = admin_page

    page.goto("/admin/")
    attention = page.locator("#hub-needs-attention")
    expect(attention.locator("caption")).to_have_text("Needs attention (1)")
    row = attention.locator("tbody tr").first
    expect(row).to_contain_text("kore-erp")
    expect(row).to_contain_text("ERP_0000001_INT1_KS_NOTHING.NET: rejected")
    row.get_by_role("link", name="run again").click()
    expect(page).to_have_url(f"{page.url.split('/admin/')[0]}/admin/impex/importjob/{job.pk}/change/")

    page.goto("/admin/")
    page.locator("#hub-needs-attention").get_by_role("link", name="All open problems").click()
    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "mark_resolved")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("ul.messagelist")).to_contain_text("1 problem marked resolved.")

    page.goto("/admin/")
    expect(page.locator("#hub-needs-attention caption")).to_have_text("Needs attention (0)")
    assert Problem.objects.get().resolved_by == "browser-admin"
    assert page.failed_responses == []
