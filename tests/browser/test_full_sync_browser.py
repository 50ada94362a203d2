"""'Trigger a data sync' in a real browser: from a connection's page (choosing the data) and from an export group's
page, each through its confirmation."""

import pytest
from playwright.sync_api import expect

from impex.models import Connection, DataDescriptor, DataGroup, FullSync
from syncapp.models import SyncError, SyncLog
from tests.browser.conftest import shoot

# The live server needs a transactional database (the built-in descriptors come from conftest.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def exports():
    """A connection with scheduled exports of customers (two) and of products, and an open sync error."""
    conn = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    groups = {}
    for code, descriptor in (
        ("customers-crm", "KS_CUSTOMERS"),
        ("customers-out", "KS_CUSTOMERS"),
        ("products-out", "KS_PRODUCTS"),
    ):
        group = DataGroup.objects.create(
            code=code,
            name=f"Export {code}",
            direction="export",
            connection=conn,
            schedule_enabled=True,
            interval_minutes=60,
        )
        group.descriptors.add(DataDescriptor.objects.get(code=descriptor))
        groups[code] = group
    log = SyncLog.objects.create(connection=conn, entity="customer")
    SyncError.objects.create(log=log, external_id="C9", message="bad email")
    return conn, groups


def test_a_data_sync_is_triggered_from_the_connection_page(admin_page, exports):
    conn, groups = exports
    page = admin_page

    page.goto(f"/admin/impex/connection/{conn.pk}/change/")
    page.locator("#full-sync").click()
    expect(page.locator("#content h1")).to_have_text("Trigger a data sync of kore-erp?")
    expect(page.locator("#full-sync-entities")).to_contain_text("customers-crm, customers-out")
    expect(page.locator("#full-sync-entities")).to_contain_text("products-out")
    expect(page.locator("#full-sync-what")).to_contain_text("its open errors are cleared")
    page.get_by_label("Customer (customer)").check()
    shoot(page, "full-sync-connection-confirm")
    page.get_by_role("button", name="Yes, trigger the data sync").click()

    expect(page.locator("ul.messagelist")).to_contain_text("of customer for kore-erp has started")
    expect(page.locator("#content h1")).to_have_text("Change connection")
    shoot(page, "full-sync-started")
    full_sync = FullSync.objects.get()
    assert (full_sync.entity, full_sync.created_by) == ("customer", "browser-admin")
    assert not SyncError.objects.exists()
    assert page.failed_responses == []


def test_a_data_sync_is_offered_on_an_export_groups_page_and_can_be_declined(admin_page, exports):
    conn, groups = exports
    page = admin_page

    page.goto(f"/admin/impex/datagroup/{groups['products-out'].pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Trigger a data sync").click()
    expect(page.locator("#full-sync-entity")).to_contain_text("Product variant (and its product)")
    expect(page.locator("#full-sync-entity")).to_contain_text("products-out")
    shoot(page, "full-sync-group-confirm")
    page.get_by_role("link", name="No, take me back").click()

    expect(page).to_have_url(
        f"{page.url.split('/admin/')[0]}/admin/impex/datagroup/{groups['products-out'].pk}/change/"
    )
    assert not FullSync.objects.exists()
    assert page.failed_responses == []
