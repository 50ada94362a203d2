"""The hub's home page and a sample of lists and pages with inlines in a 1400 x 900 window, none scrolling sideways."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from impex.models import ImportJob
from orders.models import Order
from syncapp.models import SpecialOrder, SyncLog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def page_width(page) -> int:
    """The width of the page's content: more than the window's means a horizontal scrollbar."""
    return page.evaluate("document.documentElement.scrollWidth")


def hidden_columns(page) -> list[str]:
    """Lists and inlines whose tables are wider than their box (their last columns scroll out of sight)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.results, .tabular')]
            .filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => (e.id || e.className) + ': ' + e.scrollWidth + ' > ' + e.clientWidth)"""
    )


@pytest.fixture
def demo(settings, tmp_path):
    """The demo data set of `manage.py impex_demo` (two connections, their sample files imported)."""
    settings.IMPEX_ROOT = tmp_path / "impex"
    call_command("impex_demo", "--password", "demo-pass-123", stdout=io.StringIO())


def test_the_home_page_at_1400_px(admin_page, demo, tmp_path):
    page = admin_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto("/admin/")

    expect(page.locator("#site-name")).to_have_text("impex-hub")
    expect(page.locator("#content h1")).to_have_text("impex-hub home")
    connections = page.locator("#hub-connections")
    expect(connections.locator("tr.connection-acme-pos")).to_contain_text("1 error")
    # kore-erp's latest job is the platform's later file: one order amended, one cancelled.
    expect(connections.locator("tr.connection-kore-erp")).to_contain_text("1 file, 2 updated")
    jobs = page.locator("#hub-latest-jobs tbody tr")
    expect(jobs).to_have_count(ImportJob.objects.count())
    # Django's list of models stays beside, so every model's page is one click away.
    expect(page.locator("#content-related .app-impex").get_by_role("link", name="Import jobs")).to_be_visible()

    shot = tmp_path / "home.png"
    page.screenshot(path=shot, full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(shot, SHOTS / "home.png")
    assert page_width(page) <= 1400
    assert page.failed_responses == []

    job = ImportJob.objects.get(connection__code="acme-pos")
    page.locator("tr.connection-acme-pos").get_by_role("link", name=f"#{job.pk}").click()
    expect(page).to_have_url(f"{page.url.split('/admin/')[0]}/admin/impex/importjob/{job.pk}/change/")


def test_lists_and_pages_with_inlines_fit_1400_px(admin_page, demo):
    page = admin_page
    page.set_viewport_size({"width": 1400, "height": 900})
    special = SpecialOrder.objects.order_by("pk").first()
    order = Order.objects.order_by("pk").first()
    log = SyncLog.objects.get(entity="special_order_event")
    urls = [
        "/admin/impex/connection/",
        "/admin/impex/importfile/",
        "/admin/impex/importchunk/",
        "/admin/impex/importedfilename/",
        "/admin/syncapp/customer/",
        "/admin/syncapp/specialorder/",
        "/admin/syncapp/synclog/",
        "/admin/orders/order/",
        f"/admin/syncapp/specialorder/{special.pk}/change/",
        f"/admin/orders/order/{order.pk}/change/",
        f"/admin/syncapp/synclog/{log.pk}/change/",
        "/admin/impex/connection/add/",
    ]

    widths = {}
    for url in urls:
        page.goto(url)
        widths[url] = (page_width(page), hidden_columns(page))

    assert {url: w for url, w in widths.items() if w[0] > 1400 or w[1]} == {}
    assert page.failed_responses == []


def test_a_synced_record_reads_as_read_only(admin_page, demo):
    page = admin_page
    special = SpecialOrder.objects.order_by("pk").first()

    page.goto(f"/admin/syncapp/specialorder/{special.pk}/change/")

    expect(page.locator("#content h1")).to_have_text("View special order")
    expect(page.locator(".synced-note")).to_contain_text("the reference systems are the source of truth")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    expect(page.locator("#content-main input[type=text]")).to_have_count(0)
    # The inbox help text of a connection is plain text: the rest of that page keeps the admin's font.
    page.goto("/admin/impex/connection/add/")
    expect(page.locator(".field-inbox .help")).to_contain_text("IMPEX_ROOT/<code>/inbox")
    fonts = page.locator(".field-timezone label").evaluate("e => getComputedStyle(e).fontFamily")
    assert "mono" not in fonts.lower()
