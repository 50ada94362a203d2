"""A shop platform set up as a patterns connection in a real browser, then its export uploaded and imported once."""

import re

import pytest
from playwright.sync_api import expect

from impex.models import Connection, DataGroup, ImportJob
from impex.tasks import import_job_run
from syncapp.models import Customer
from tests.browser.conftest import shoot
from tests.shop import write_shop_file
from tests.test_patterns_convention import shop_descriptor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_PAGE = re.compile(r"/admin/impex/importjob/(\d+)/change/$")


@pytest.fixture
def shop_group(builtin_descriptors):
    group = DataGroup.objects.create(code="shop-import", name="Shop platform", direction="import")
    group.descriptors.add(shop_descriptor())
    return group


def upload_shop_file(page, path, group) -> int:
    page.goto("/admin/")
    page.get_by_role("link", name="Import jobs", exact=True).first.click()
    page.get_by_role("link", name=re.compile("Upload", re.I)).first.click()
    page.select_option("#id_group", value=str(group.pk))
    page.set_input_files("#id_file", str(path))
    page.get_by_role("button", name=re.compile("Upload", re.I)).click()
    expect(page).to_have_url(JOB_PAGE)
    return int(JOB_PAGE.search(page.url).group(1))


def test_an_admin_makes_a_patterns_connection_and_its_export_imports_once_with_it_as_source(
    admin_page, shop_group, tmp_path
):
    page = admin_page
    page.goto("/admin/impex/connection/add/")
    page.fill("#id_code", "shop")
    page.fill("#id_name", "Shop platform")
    page.select_option("#id_convention", value="patterns")
    page.get_by_label("shop-import: customers_export*.csv (SHOP_CUSTOMERS)").check()
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.get_by_label("shop-import: customers_export*.csv (SHOP_CUSTOMERS)")).to_be_checked()
    shoot(page, "patterns-connection")
    shop = Connection.objects.get(code="shop")
    assert shop.convention == "patterns" and list(shop.import_groups()) == [shop_group]

    path = write_shop_file(tmp_path)
    job_id = upload_shop_file(page, path, shop_group)
    import_job_run(job_id)
    page.reload()
    expect(page.locator("#job-status")).to_contain_text(re.compile("Completed", re.I))
    expect(page.get_by_text("Email is the key: a value is required").first).to_be_visible()
    shoot(page, "patterns-upload-job")
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}

    again = upload_shop_file(page, path, shop_group)
    import_job_run(again)
    page.reload()
    expect(page.get_by_text(re.compile("already imported on .* \\(same content\\): skipped")).first).to_be_visible()
    assert ImportJob.objects.get(pk=again).files.get().status == "duplicate"
    assert page.failed_responses == []
