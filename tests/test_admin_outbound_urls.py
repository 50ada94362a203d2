"""SPEC 13 impex.change_locations for webhook subscriptions and exporters: without it, a user who may add or change
them sees the URL (and a file exporter's destination) read-only, on add and change, and a crafted POST carrying
them changes nothing; with it, they are set as any field."""

import pytest

from impex.models import DataDescriptor, WebhookSubscription
from orders.models import Exporter
from tests.admin_helpers import admin_url, post_data, staff_user

PUBLIC_URL = "https://93.184.216.34/in"
OTHER_URL = "https://93.184.216.35/elsewhere"
LOCATIONS = "impex.change_locations"


def subscription():
    return WebhookSubscription.objects.create(code="crm", url=PUBLIC_URL, events=["file.imported"])


def webhook_exporter():
    return Exporter.objects.create(code="crm", kind="webhook", flag="crm", url=PUBLIC_URL)


def file_exporter():
    descriptor = DataDescriptor.objects.get(code="KS_ORDERS")
    return Exporter.objects.create(code="erp", kind="file", flag="erp", descriptor=descriptor, destination="erp/out")


SUBSCRIPTIONS = ("impex.view_webhooksubscription", "impex.add_webhooksubscription", "impex.change_webhooksubscription")
EXPORTERS = ("orders.view_exporter", "orders.add_exporter", "orders.change_exporter")
# Each record, the field only impex.change_locations sets, what an attacker would post there, a value the hub takes
# from whoever may set places, and the permissions of an editor.
CASES = {
    "subscription url": (subscription, "url", "http://93.184.216.36/attacker", OTHER_URL, SUBSCRIPTIONS),
    "webhook exporter url": (webhook_exporter, "url", "http://93.184.216.36/attacker", OTHER_URL, EXPORTERS),
    "file exporter destination": (file_exporter, "destination", "/etc", "elsewhere/out", EXPORTERS),
}


@pytest.fixture(params=list(CASES))
def case(request, db):
    make, field, crafted, allowed, perms = CASES[request.param]
    return make(), field, crafted, allowed, perms


def form_data(client, url: str) -> dict:
    """The data a browser would post for the form at url, unchanged."""
    page = client.get(url)
    assert page.status_code == 200
    return {**post_data(page.context["adminform"].form), "_save": "Save"}


def test_without_change_locations_the_place_is_read_only_on_change(client, django_user_model, case):
    obj, field, crafted, _, perms = case
    client.force_login(staff_user(django_user_model, "editor", *perms))
    url = admin_url(type(obj), "change", obj.pk)
    before = getattr(obj, field)

    page = client.get(url)
    saved = client.post(url, {**form_data(client, url), field: crafted, "max_attempts": "7"})

    assert field not in page.context["adminform"].form.fields
    assert f'name="{field}"' not in page.text
    assert before in page.text  # shown, read-only
    assert saved.status_code == 302
    obj.refresh_from_db()
    assert (getattr(obj, field), obj.max_attempts) == (before, 7)  # the rest is saved, the place is not


def test_without_change_locations_the_place_is_read_only_on_add(client, django_user_model, case):
    obj, field, crafted, _, perms = case
    model = type(obj)
    client.force_login(staff_user(django_user_model, "editor", *perms))
    model.objects.all().delete()
    url = admin_url(model, "add")
    if model is WebhookSubscription:
        data = {"code": "new", "events": ["file.imported"]}
    else:
        data = {"code": "new", "flag": "new", "kind": obj.kind, "descriptor": obj.descriptor_id or ""}

    page = client.get(url)
    posted = client.post(url, {**form_data(client, url), **data, field: crafted})

    assert field not in page.context["adminform"].form.fields
    assert f'name="{field}"' not in page.text
    created = model.objects.filter(code="new").first()
    if field == "url":  # a webhook cannot do without its URL: refused, saying which permission sets it
        assert posted.status_code == 200 and created is None
        assert LOCATIONS in " ".join(posted.context["adminform"].form.non_field_errors())
    else:  # a file exporter writes to its connection's outbox when it names no destination
        assert posted.status_code == 302
        assert created.destination == ""


def test_with_change_locations_the_place_is_set_like_any_field(client, django_user_model, case):
    obj, field, _, allowed, perms = case
    client.force_login(staff_user(django_user_model, "placer", *perms, LOCATIONS))
    url = admin_url(type(obj), "change", obj.pk)

    saved = client.post(url, {**form_data(client, url), field: allowed})

    assert saved.status_code == 302, saved.context["adminform"].form.errors
    obj.refresh_from_db()
    assert getattr(obj, field) == allowed


def test_without_change_locations_a_kind_that_starts_using_a_stored_place_is_refused(client, django_user_model, db):
    exporter = file_exporter()
    Exporter.objects.filter(pk=exporter.pk).update(url=PUBLIC_URL)  # left from when it was a webhook
    client.force_login(staff_user(django_user_model, "editor", *EXPORTERS))
    url = admin_url(Exporter, "change", exporter.pk)

    refused = client.post(url, {**form_data(client, url), "kind": "webhook"})

    assert refused.status_code == 200
    (error,) = refused.context["adminform"].form.non_field_errors()
    assert PUBLIC_URL in error and LOCATIONS in error
    exporter.refresh_from_db()
    assert exporter.kind == "file"
