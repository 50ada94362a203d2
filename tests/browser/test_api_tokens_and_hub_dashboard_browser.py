"""In a real browser at 1400 px: an operator issues an API token on a connection's page (shown once, working at once),
then revokes it (401 at once); and reads the hub-wide sync dashboard, from the home page to a day's jobs."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from impex.models import ApiToken, Connection
from tests.browser.conftest import shoot
from tests.sync_helpers import customers_synced, shop_with_updates

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kore():
    return Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")


@pytest.fixture
def synced(tmp_path, kore):
    """kore-erp's customers synced today (one refused), and a shop's products updated over the last days."""
    customers_synced(tmp_path, kore, good=39)
    shop_with_updates("shop-eu", days_ago=[n % 29 + 1 for n in range(120)], failed_every=7)


def problems(page, raw):
    return page.request.get("/api/problems/", headers={"Authorization": f"Bearer {raw}"})


def test_an_operator_issues_a_token_shown_once_and_revokes_it(admin_page, kore):
    page = admin_page
    page.goto(f"/admin/impex/connection/{kore.pk}/change/")
    expect(page.locator("#no-api-tokens")).to_be_visible()

    page.get_by_role("link", name="Issue a new API token").click()
    expect(page.locator("#content-main")).to_contain_text("The token is shown once")
    page.get_by_role("button", name="Issue the token").click()

    field = page.locator("#new-api-token")
    raw = field.input_value()
    assert raw.startswith("ihub_") and len(raw) > 40
    expect(page.locator("#new-api-token-box")).to_contain_text("shown this once")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#new-api-token-copied")).not_to_be_empty()
    shoot(page, "api-token-shown")
    assert problems(page, raw).status == 200

    page.get_by_role("link", name=re.compile("I have copied it")).click()
    token = ApiToken.objects.get()
    row = page.locator(f'#api-tokens tr.api-token[data-prefix="{token.prefix}"]')
    expect(row).to_contain_text("admin")
    assert raw not in page.content()
    page.locator("#api-tokens").scroll_into_view_if_needed()
    shoot(page, "connection-api-tokens")

    row.get_by_role("link", name="Revoke").click()
    expect(page.locator("#api-token-revoke-question")).to_contain_text(f"{token.prefix}…")
    shoot(page, "api-token-revoke")
    page.get_by_role("button", name=re.compile("Revoke")).click()

    expect(page.locator(".messagelist")).to_contain_text(f"API token {token.prefix}… of kore-erp revoked")
    expect(row).not_to_contain_text("Revoke")
    assert problems(page, raw).status == 401
    assert raw not in page.content()


def test_staff_read_the_hub_wide_sync_dashboard(admin_page, synced):
    page = admin_page
    page.goto("/admin/")
    page.get_by_role("link", name="Sync overview").click()

    expect(page.locator("h1")).to_have_text("Sync overview: the whole hub")
    expect(page.locator("#hub-sync-logs tr.hub-sync-log")).to_have_count(2)
    expect(page.locator("#hub-open-error-count")).to_have_text("2")
    today = f"{timezone.localdate():%Y-%m-%d}"
    expect(page.locator(f'#sync-chart a.chart-day[data-day="{today}"]')).to_have_attribute("data-rows", "39")
    expect(page.locator("#sync-chart text.day")).to_have_count(30)
    box = page.locator("#sync-chart .sync-chart-box").bounding_box()
    svg = page.locator("#sync-chart svg").bounding_box()
    assert svg["width"] > box["width"] - 40  # the chart fills its box
    shoot(page, "hub-sync-dashboard")

    page.get_by_role("link", name="7 days").click()
    expect(page.locator("#sync-chart text.day")).to_have_count(7)
    page.locator(f'#sync-chart a.chart-day[data-day="{today}"] rect.rows').click()
    expect(page).to_have_url(re.compile(r"/admin/impex/importjob/\?created_at__year="))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    page.goto("/admin/syncapp/synclog/")
    page.locator("#hub-sync-dashboard-link").click()
    expect(page.locator("h1")).to_have_text("Sync overview: the whole hub")
    page.locator("#hub-sync-logs tr.hub-sync-log", has_text="kore-erp").get_by_role("link", name="Dashboard").click()
    expect(page.locator("#open-error-count")).to_have_text("1")
    shoot(page, "sync-log-dashboard")
