"""API tokens in the admin: listed by prefix only, revoked with the change permission, refused without it."""

import pytest
from django.contrib.auth.models import Permission

from impex.models import ApiToken
from impex.services.tokens import api_token_check, api_token_issue

URL = "/admin/impex/apitoken/"


@pytest.fixture
def staff(django_user_model):
    def make(*codenames):
        user = django_user_model.objects.create_user(f"u{len(codenames)}", password="pw", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="impex", codename__in=codenames))
        return user

    return make


def test_a_user_with_change_permission_revokes_and_the_token_stops_working(client, staff, kore_connection):
    raw = api_token_issue(connection=kore_connection)
    client.force_login(staff("view_apitoken", "change_apitoken"))

    page = client.get(URL)
    assert page.status_code == 200
    assert raw not in page.content.decode() and ApiToken.objects.get().prefix in page.content.decode()
    response = client.post(URL, {"action": "revoke", "_selected_action": [ApiToken.objects.get().pk]}, follow=True)

    assert "1 token revoked." in response.content.decode()
    token = ApiToken.objects.get()
    assert token.revoked_at is not None and token.revoked_by == "u2"
    assert api_token_check(raw) is None


def test_a_user_who_may_only_view_cannot_revoke(client, staff, kore_connection):
    raw = api_token_issue(connection=kore_connection)
    client.force_login(staff("view_apitoken"))

    page = client.get(URL)
    assert "Revoke selected tokens" not in page.content.decode()
    client.post(URL, {"action": "revoke", "_selected_action": [ApiToken.objects.get().pk]})

    assert ApiToken.objects.get().revoked_at is None
    assert api_token_check(raw) is not None
