"""Login throttling in a real browser (issue 16, L6): the fifth wrong password shows the lockout page, and then the
right one is refused too; django-q2's pages are not offered to a staff user who is not a superuser (H1).
"""

import re

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from tests.admin_helpers import staff_user
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def submit(page, password: str) -> None:
    """Fill the admin's login form with the superuser's name and this password, and send it."""
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", password)
    page.click("input[type=submit], button[type=submit]")


def test_five_wrong_passwords_lock_the_login_and_the_page_says_for_how_long(page, superuser):
    page.goto("/admin/login/?next=/admin/")
    for attempt in range(4):
        submit(page, f"wrong-{attempt}")
        expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")

    submit(page, "wrong-4")
    lockout = page.locator("#lockout")
    expect(lockout).to_contain_text(f"Too many failed logins for “{ADMIN_USERNAME}” from your address (5 in a row).")
    expect(lockout).to_contain_text("for 15 minutes after the last attempt")
    expect(page.locator("#site-name")).to_contain_text("impex-hub")

    page.click("text=Back to the login page")
    submit(page, ADMIN_PASSWORD)
    expect(page.locator("#lockout")).to_be_visible()
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))


def test_django_q2s_pages_are_listed_for_superusers_only(page, superuser, django_user_model):
    clerk = staff_user(django_user_model, "clerk", "impex.view_connection")
    clerk.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))
    clerk.set_password("clerk-pass-123")
    clerk.save()

    log_in(page, "clerk", "clerk-pass-123")
    expect(page.locator("#content-main")).to_contain_text("Connections")
    expect(page.locator("a[href^='/admin/django_q/']")).to_have_count(0)
    assert page.goto("/admin/django_q/schedule/").status == 403
