"""Issue 16 M3, SPEC 13 "secrets are write-only on every page": webhook and exporter HMAC secrets never appear in
any page the admin serves (add, change, view, list, history, delete), to superusers or to view-only users; a change
form keeps the secret when its box is left empty and clears it on request."""

import pytest

from impex.models import WebhookSubscription
from orders.models import Exporter
from tests.admin_helpers import admin_url, post_data, staff_user

SECRET = "hmac-K3y-7f3a9c"
PUBLIC_URL = "https://93.184.216.34/in"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def webhook_subscription():
    return WebhookSubscription.objects.create(code="crm", url=PUBLIC_URL, events=["file.imported"], secret=SECRET)


def webhook_exporter():
    return Exporter.objects.create(code="crm", kind="webhook", flag="crm", url=PUBLIC_URL, secret=SECRET)


KINDS = {
    "webhook subscription": (webhook_subscription, "impex.view_webhooksubscription"),
    "webhook exporter": (webhook_exporter, "orders.view_exporter"),
}


@pytest.fixture(params=list(KINDS))
def signed(request, db):
    """A record with a secret, and the permission that only views it."""
    make, view = KINDS[request.param]
    return make(), view


def save_unchanged(client, obj, **changes):
    """Post the change form of obj as a browser would with the given changes; return the response."""
    url = admin_url(type(obj), "change", obj.pk)
    page = client.get(url)
    data = {**post_data(page.context["adminform"].form), **changes, "_save": "Save"}
    return client.post(url, data)


def shown(page) -> dict:
    """The read-only fields of a view-only page, by name, as they are shown."""
    return {
        line.field["name"]: line.contents()
        for fieldset in page.context["adminform"]
        for row in fieldset
        for line in row
    }


def test_no_page_shows_a_secret_to_a_superuser(admin_client, signed):
    obj, _ = signed
    model = type(obj)
    assert save_unchanged(admin_client, obj, enabled="on").status_code == 302  # a history row

    pages = {
        "list": admin_client.get(admin_url(model, "changelist")),
        "change": admin_client.get(admin_url(model, "change", obj.pk)),
        "add": admin_client.get(admin_url(model, "add")),
        "history": admin_client.get(admin_url(model, "history", obj.pk)),
        "delete": admin_client.get(admin_url(model, "delete", obj.pk)),
    }

    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    assert [name for name, page in pages.items() if SECRET in page.text] == []
    change = pages["change"].text
    assert 'type="password"' in change and "leave this empty to keep the current secret" in change
    assert 'name="clear_secret"' in change


def test_no_page_shows_a_secret_to_a_view_only_user(client, django_user_model, signed):
    obj, view = signed
    model = type(obj)
    client.force_login(staff_user(django_user_model, "viewer", view))

    pages = {
        "list": client.get(admin_url(model, "changelist")),
        "view": client.get(admin_url(model, "change", obj.pk)),
        "history": client.get(admin_url(model, "history", obj.pk)),
    }

    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    assert [name for name, page in pages.items() if SECRET in page.text] == []
    assert shown(pages["view"])["secret_state"] == "set"
    assert "secret" not in shown(pages["view"])


def test_a_view_only_user_sees_not_set_for_no_secret(client, django_user_model, signed):
    obj, view = signed
    type(obj).objects.filter(pk=obj.pk).update(secret="")
    client.force_login(staff_user(django_user_model, "viewer", view))

    page = client.get(admin_url(type(obj), "change", obj.pk))

    assert shown(page)["secret_state"] == "not set"


def test_a_refused_form_does_not_send_the_typed_secret_back(admin_client, signed):
    obj, _ = signed
    model = type(obj)

    refused = save_unchanged(admin_client, obj, secret="typed-N3w-secret", max_attempts="0")

    assert refused.status_code == 200 and refused.context["adminform"].form.errors
    assert "typed-N3w-secret" not in refused.text and SECRET not in refused.text
    obj.refresh_from_db()
    assert obj.secret == SECRET
    assert model.objects.count() == 1


def test_the_secret_is_kept_when_left_empty_replaced_when_typed_and_cleared_when_ticked(admin_client, signed):
    obj, _ = signed

    kept = save_unchanged(admin_client, obj)
    obj.refresh_from_db()
    after_keep = obj.secret
    replaced = save_unchanged(admin_client, obj, secret="an0ther")
    obj.refresh_from_db()
    after_replace = obj.secret
    cleared = save_unchanged(admin_client, obj, clear_secret="on")
    obj.refresh_from_db()

    assert (kept.status_code, replaced.status_code, cleared.status_code) == (302, 302, 302)
    assert (after_keep, after_replace, obj.secret) == (SECRET, "an0ther", "")
