"""SPEC 13, logins are throttled (issue 16, L6): django-axes locks a username out from an address after
AXES_FAILURE_LIMIT failed logins in a row, the right password included, until the cool-off has passed.
"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from tests.admin_helpers import staff_user

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery-9"
LOCKED = "Too many failed logins"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ana(django_user_model):
    """A staff user with a password."""
    user = staff_user(django_user_model, "ana", "impex.view_connection")
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(client, password, username="ana", **headers):
    """Post the admin's login form; return the response and whether the client is now logged in."""
    response = client.post(
        reverse("admin:login") + "?next=/admin/", {"username": username, "password": password}, **headers
    )
    return response, "_auth_user_id" in client.session


def fail(client, times, username="ana", **headers):
    """Log in with a wrong password so many times; return the responses."""
    return [log_in(client, f"wrong-{n}", username, **headers)[0] for n in range(times)]


def test_the_limit_is_five_unless_set(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)


def test_a_normal_login_works(client, ana):
    response, logged_in = log_in(client, PASSWORD)

    assert logged_in
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_failures_below_the_limit_leave_the_right_password_working(client, ana):
    answers = [r.status_code for r in fail(client, 4)]
    response, logged_in = log_in(client, PASSWORD)

    assert answers == [200] * 4
    assert logged_in and response.status_code == 302


def test_the_sixth_login_is_refused_even_with_the_right_password(client, ana):
    answers = fail(client, 5)
    response, logged_in = log_in(client, PASSWORD)

    assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
    assert "Please enter the correct username and password" in answers[0].text
    assert not logged_in
    assert response.status_code == 429
    assert LOCKED in response.text
    assert "“ana”" in response.text and "(5 in a row)" in response.text
    assert "for 15 minutes after the last attempt" in response.text
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_the_lock_is_per_username_and_address(client, ana, django_user_model):
    bea = staff_user(django_user_model, "bea")
    bea.set_password(PASSWORD)
    bea.save()
    fail(client, 5)

    _, other_user = log_in(Client(), PASSWORD, username="bea")
    _, other_address = log_in(Client(REMOTE_ADDR="198.51.100.7"), PASSWORD)
    _, same_pair = log_in(Client(), PASSWORD)

    assert (other_user, other_address, same_pair) == (True, True, False)


def test_the_lock_ends_after_the_cool_off(client, ana):
    fail(client, 5)
    assert not log_in(client, PASSWORD)[1]
    # The cool-off counts from the last attempt: move the attempts back past it.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))

    response, logged_in = log_in(client, PASSWORD)

    assert logged_in and response.status_code == 302


def test_a_success_starts_the_count_again(client, ana):
    fail(client, 4)
    assert log_in(client, PASSWORD)[1]

    answers = [r.status_code for r in fail(Client(), 4)]
    _, logged_in = log_in(Client(), PASSWORD)

    assert answers == [200] * 4
    assert logged_in


# Behind a reverse proxy


def test_without_a_proxy_setting_a_forwarded_address_does_not_escape_the_lock(client, ana):
    fail(client, 5, HTTP_X_FORWARDED_FOR="203.0.113.1")

    _, logged_in = log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.2")

    assert not logged_in
    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"


def test_behind_one_proxy_the_client_address_comes_from_the_header_the_proxy_appends_to(client, ana, settings):
    settings.IMPEX_PROXY_COUNT = 1
    # The proxy (127.0.0.1 here) appends the address it was connected from; what the client sent comes before it.
    fail(client, 5, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.1")

    _, locked_client = log_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.8, 203.0.113.1")
    _, other_client = log_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.2")

    assert AccessAttempt.objects.get().ip_address == "203.0.113.1"
    assert (locked_client, other_client) == (False, True)


def test_a_forwarded_value_that_is_no_address_counts_as_the_connecting_one(client, ana, settings):
    settings.IMPEX_PROXY_COUNT = 1

    fail(client, 1, HTTP_X_FORWARDED_FOR="not-an-address")

    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"


# Who sees the attempts


def test_the_attempts_pages_need_axes_permissions(client, admin_client, django_user_model, ana):
    fail(Client(), 5)
    url = reverse("admin:axes_accessattempt_changelist")
    client.force_login(staff_user(django_user_model, "clerk", "impex.view_connection"))
    guard = Client()
    guard.force_login(staff_user(django_user_model, "guard", "axes.view_accessattempt", "axes.delete_accessattempt"))

    refused = client.get(url)
    shown = guard.get(url)
    for_superusers = admin_client.get(url)

    assert refused.status_code == 403
    assert shown.status_code == 200 and "ana" in shown.text
    assert for_superusers.status_code == 200 and "ana" in for_superusers.text
