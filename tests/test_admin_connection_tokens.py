"""API tokens on a connection's admin page (SPEC 9, 10, 13): issued after a confirmation and shown once in the POST's
answer, stored as a hash, working at once against the API; revoked after a confirmation naming the token, then 401;
refused without the permissions, changing nothing."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session

from impex.models import ApiToken, Connection
from impex.services.tokens import api_token_issue, token_hash
from tests.admin_helpers import admin_url, staff_user

MANAGER_PERMS = ("impex.view_connection", "impex.change_connection", "impex.change_locations")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def issue_url(conn):
    return admin_url(Connection, "api_token_issue", conn.pk)


def revoke_url(conn, token):
    return admin_url(Connection, "api_token_revoke", conn.pk, token.pk)


def problems(client, raw):
    return client.get("/api/problems/", HTTP_AUTHORIZATION=f"Bearer {raw}")


def nonce_of(page) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)


def issue(client, conn):
    """Confirm and issue a token as a browser does; return the POST's answer and the token it shows."""
    confirm = client.get(issue_url(conn))
    assert confirm.status_code == 200
    answer = client.post(issue_url(conn), {"nonce": nonce_of(confirm)})
    assert answer.status_code == 200
    raw = re.search(r'id="new-api-token" value="([^"]+)"', answer.text).group(1)
    return answer, raw


def test_a_token_issued_on_the_page_is_shown_once_stored_hashed_and_works(client, django_user_model, kore_connection):
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS))
    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    assert f'href="{issue_url(kore_connection)}"' in page.text
    assert 'id="no-api-tokens"' in page.text

    answer, raw = issue(client, kore_connection)

    token = ApiToken.objects.get()
    assert (token.connection, token.created_by, token.key_hash) == (kore_connection, "ops", token_hash(raw))
    assert raw.startswith(token.prefix) and len(raw) > 40
    assert "no-store" in answer["Cache-Control"]
    assert answer.text.count(raw) == 1
    assert "shown this once" in answer.text
    assert raw not in str(list(ApiToken.objects.values()))
    assert problems(client, raw).status_code == 200
    assert problems(client, raw).json() == {"results": []}


def test_the_token_is_never_on_a_later_page_nor_in_the_session_the_cookies_or_the_history(
    client, django_user_model, kore_connection
):
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS, "impex.view_apitoken"))
    _, raw = issue(client, kore_connection)
    token = ApiToken.objects.get()

    later = [
        client.get(admin_url(Connection, "change", kore_connection.pk)),
        client.get(admin_url(ApiToken, "changelist")),
        client.get(revoke_url(kore_connection, token)),
        client.get(admin_url(Connection, "history", kore_connection.pk)),
    ]

    for page in later:
        assert page.status_code == 200
        assert raw not in page.text
    assert f"{token.prefix}…" in later[0].text
    assert 'class="api-token-revoke"' in later[0].text
    assert all(raw not in s.get_decoded().__repr__() for s in Session.objects.all())
    assert all(raw not in morsel.value for morsel in client.cookies.values())
    assert LogEntry.objects.get().change_message == f"Issued the API token {token.prefix}…."


def test_sending_the_issue_form_again_issues_nothing_and_shows_nothing(client, django_user_model, kore_connection):
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS))
    confirm = client.get(issue_url(kore_connection))
    first = client.post(issue_url(kore_connection), {"nonce": nonce_of(confirm)})
    raw = re.search(r'id="new-api-token" value="([^"]+)"', first.text).group(1)

    again = client.post(issue_url(kore_connection), {"nonce": nonce_of(confirm)}, follow=True)

    assert ApiToken.objects.count() == 1
    assert raw not in again.text
    assert "This form was sent already" in again.text


def test_a_token_revoked_after_the_confirmation_gets_401_at_once(client, django_user_model, kore_connection):
    raw = api_token_issue(connection=kore_connection, by="command")
    other = api_token_issue(connection=kore_connection, by="command")
    token = ApiToken.objects.get(key_hash=token_hash(raw))
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS))
    assert problems(client, raw).status_code == 200  # the check is not cached: the next request sees the revocation

    confirm = client.get(revoke_url(kore_connection, token))
    assert confirm.status_code == 200
    assert f"Revoke the API token <strong>{token.prefix}…</strong> of kore-erp" in confirm.text
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    done = client.post(revoke_url(kore_connection, token), follow=True)

    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == "ops"
    assert f"API token {token.prefix}… of kore-erp revoked" in done.text
    assert problems(client, raw).status_code == 401
    assert problems(client, other).status_code == 200
    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    assert page.text.count('class="api-token-revoke"') == 1  # the other token's only


@pytest.mark.parametrize(
    "perms",
    [
        ("impex.view_connection",),
        ("impex.view_connection", "impex.change_connection"),
        ("impex.view_connection", "impex.change_locations"),
    ],
)
def test_issuing_needs_the_change_and_locations_permissions(client, django_user_model, kore_connection, perms):
    client.force_login(staff_user(django_user_model, "someone", *perms))

    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    confirm = client.get(issue_url(kore_connection))
    post = client.post(issue_url(kore_connection), {"nonce": "x"})

    assert page.status_code == 200 and 'id="api-token-issue"' not in page.text
    assert (confirm.status_code, post.status_code) == (403, 403)
    assert not ApiToken.objects.exists()


def test_revoking_needs_a_permission_and_a_refusal_changes_nothing(client, django_user_model, kore_connection):
    raw = api_token_issue(connection=kore_connection)
    token = ApiToken.objects.get()
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_connection", "impex.view_apitoken"))

    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    assert f"{token.prefix}…" in page.text and 'class="api-token-revoke"' not in page.text
    assert client.get(revoke_url(kore_connection, token)).status_code == 403
    assert client.post(revoke_url(kore_connection, token)).status_code == 403

    assert ApiToken.objects.get().revoked_at is None
    assert problems(client, raw).status_code == 200


def test_who_may_revoke_in_the_token_list_may_revoke_here_but_not_issue(client, django_user_model, kore_connection):
    raw = api_token_issue(connection=kore_connection)
    token = ApiToken.objects.get()
    client.force_login(staff_user(django_user_model, "revoker", "impex.view_connection", "impex.change_apitoken"))

    assert client.get(issue_url(kore_connection)).status_code == 403
    assert client.post(revoke_url(kore_connection, token)).status_code == 302

    assert problems(client, raw).status_code == 401


def test_a_token_of_another_connection_is_not_found(client, django_user_model, kore_connection, bspk_connection):
    api_token_issue(connection=bspk_connection)
    token = ApiToken.objects.get()
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS))

    assert client.post(revoke_url(kore_connection, token)).status_code == 404
    assert ApiToken.objects.get().revoked_at is None


def test_the_pages_refuse_other_methods_and_missing_csrf(django_user_model, kore_connection):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, "ops", *MANAGER_PERMS))

    assert client.post(issue_url(kore_connection), {"nonce": "x"}).status_code == 403
    assert client.put(issue_url(kore_connection)).status_code in (403, 405)
    assert not ApiToken.objects.exists()
