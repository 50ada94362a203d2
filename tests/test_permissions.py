"""SPEC 13, who may do what: each admin page and action checks its permission on the server; refusals change nothing."""

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from import_export.admin import ExportMixin, ImportMixin

from impex.models import Connection, ImportFile, ImportJob
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.models import Customer
from tests.admin_helpers import OUR_APPS, add_rows, admin_url, post_data, staff_user, table_snapshot

LISTED = sorted(m._meta.label_lower for m in admin.site._registry if m._meta.app_label in OUR_APPS)
WITH_IMPORT = sorted(
    m._meta.label_lower
    for m, model_admin in admin.site._registry.items()
    if m._meta.app_label in OUR_APPS and isinstance(model_admin, ImportMixin)
)
WITH_EXPORT = sorted(
    m._meta.label_lower
    for m, model_admin in admin.site._registry.items()
    if m._meta.app_label in OUR_APPS and isinstance(model_admin, ExportMixin)
)
EVERY_VIEW = [f"{label.split('.')[0]}.view_{label.split('.')[1]}" for label in LISTED]
RELEASE = "release_sequence_wait"


def admin_urls():
    """Every admin URL of our apps' models and the site's own pages, with the pk of a real row where one is needed."""
    urls = [reverse("admin:index"), reverse("admin:password_change"), reverse("admin:autocomplete")]
    urls += [reverse("admin:app_list", args=[app]) for app in OUR_APPS]
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS:
            continue
        pk = model.objects.order_by("pk").values_list("pk", flat=True).first()
        for pattern in model_admin.get_urls():
            if pattern.name:
                urls.append(reverse(f"admin:{pattern.name}", kwargs={k: pk for k in pattern.pattern.converters}))
    return urls


def csv_upload(text="customer_id,email\nC1,c1@example.com\n"):
    """An uploaded CSV file of customers."""
    return SimpleUploadedFile("customers.csv", text.encode(), content_type="text/csv")


def stored_files(settings):
    """Files in MEDIA_ROOT (where the admin import keeps an upload between preview and confirm)."""
    return [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()] if settings.MEDIA_ROOT.exists() else []


def action_choices(response):
    """The names of the actions a changelist offers."""
    form = response.context["action_form"]
    return [name for name, _ in form.fields["action"].choices if name] if form else []


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def waiting(tmp_path, kore_connection):
    """A Kore connection whose sequence 3 waits for the missing sequence 2."""
    write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")])
    write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")])
    run_import(*sorted(tmp_path.glob("ERP_*")), connection=kore_connection.code)
    assert ImportFile.objects.get(sequence=3).status == "waiting"
    kore_connection.refresh_from_db()
    return kore_connection


def release(client, conn, **extra):
    """Post the "Release the sequence wait" action for conn on the connections changelist."""
    data = {"action": RELEASE, "_selected_action": [conn.pk], "index": "0", **extra}
    return client.post(admin_url(Connection, "changelist"), data)


def confirmed(conn, sequence: int) -> dict:
    """What the action's confirmation page posts back: yes, and the first waiting sequence it named."""
    return {"post": "yes", f"sequence_{conn.pk}": str(sequence)}


# Anonymous users


def test_anonymous_users_get_the_login_page(client):
    response = client.get(reverse("admin:login"))

    assert response.status_code == 200
    assert 'name="username"' in response.text


def test_anonymous_users_are_sent_to_login_from_every_admin_url(client, waiting):
    add_rows(1, "a")
    before = table_snapshot()
    urls = admin_urls()

    responses = {url: (client.get(url), client.post(url, {"action": "delete_selected", "post": "yes"})) for url in urls}

    assert admin_url(Customer, "process_import") in urls
    for url, (get, post) in responses.items():
        for response in (get, post):
            assert response.status_code == 302, url
            assert response.url.startswith(reverse("admin:login") + "?next="), url
    assert release(client, waiting).status_code == 302
    assert table_snapshot() == before


# django-import-export on an entity's page


@pytest.mark.parametrize("label", WITH_IMPORT)
def test_import_needs_the_change_permission(client, django_user_model, settings, label):
    model = apps.get_model(label)
    app_label, model_name = label.split(".")
    client.force_login(staff_user(django_user_model, "viewer", f"{app_label}.view_{model_name}"))
    before = table_snapshot()

    changelist = client.get(admin_url(model, "changelist"))
    page = client.get(admin_url(model, "import"))
    upload = client.post(admin_url(model, "import"), {"import_file": csv_upload(), "format": "0", "resource": "0"})
    confirm = client.post(
        admin_url(model, "process_import"),
        {"import_file_name": "x", "original_file_name": "x.csv", "format": "0", "resource": "0"},
    )

    assert changelist.status_code == 200
    assert not changelist.context["has_import_permission"]
    assert "import_link" not in changelist.text
    assert "export_link" in changelist.text
    assert (page.status_code, upload.status_code, confirm.status_code) == (403, 403, 403)
    assert table_snapshot() == before
    assert stored_files(settings) == []


@pytest.mark.parametrize("label", WITH_IMPORT)
def test_the_change_permission_shows_the_import(client, django_user_model, label):
    model = apps.get_model(label)
    app_label, model_name = label.split(".")
    client.force_login(staff_user(django_user_model, "editor", f"{app_label}.change_{model_name}"))

    changelist = client.get(admin_url(model, "changelist"))
    page = client.get(admin_url(model, "import"))

    assert "import_link" in changelist.text
    assert page.status_code == 200


@pytest.mark.parametrize("label", WITH_EXPORT)
def test_export_needs_the_view_permission(client, django_user_model, label):
    model = apps.get_model(label)
    app_label, model_name = label.split(".")
    add_rows(1, "a")
    # Django lets the change permission show the list; the export asks for the view permission itself.
    client.force_login(staff_user(django_user_model, "editor", f"{app_label}.change_{model_name}"))

    changelist = client.get(admin_url(model, "changelist"))
    page = client.get(admin_url(model, "export"))
    download = client.post(admin_url(model, "export"), {"format": "0", "resource": "0"})

    assert changelist.status_code == 200
    assert not changelist.context["has_export_permission"]
    assert "export_link" not in changelist.text
    assert (page.status_code, download.status_code) == (403, 403)


@pytest.mark.parametrize("label", WITH_EXPORT)
def test_the_view_permission_downloads_the_export(client, django_user_model, label):
    model = apps.get_model(label)
    app_label, model_name = label.split(".")
    add_rows(1, "a")
    client.force_login(staff_user(django_user_model, "viewer", f"{app_label}.view_{model_name}"))

    page = client.get(admin_url(model, "export"))
    form = page.context["form"]
    fields = {name: "on" for name, field in form.fields.items() if isinstance(field, forms.BooleanField)}
    download = client.post(admin_url(model, "export"), {"format": "0", "resource": "0", **fields})

    assert page.status_code == 200
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert len(download.content.decode().splitlines()) == 1 + model.objects.count()


def test_a_viewer_cannot_confirm_an_import_an_editor_previewed(client, django_user_model, settings):
    editor = Client()
    editor.force_login(staff_user(django_user_model, "editor", "syncapp.change_customer"))
    preview = editor.post(admin_url(Customer, "import"), {"import_file": csv_upload(), "format": "0", "resource": "0"})
    confirm = preview.context["confirm_form"].initial
    client.force_login(staff_user(django_user_model, "viewer", "syncapp.view_customer"))

    refused = client.post(admin_url(Customer, "process_import"), confirm)

    assert refused.status_code == 403
    assert not Customer.objects.exists()
    assert editor.post(admin_url(Customer, "process_import"), confirm).status_code == 302
    assert list(Customer.objects.values_list("customer_id", flat=True)) == ["C1"]


# Releasing a sequence wait runs an import: impex.run_import


@pytest.mark.parametrize(
    "perms",
    [
        ["impex.view_connection"],
        ["impex.view_connection", "impex.change_connection", "impex.delete_connection", "impex.view_importjob"],
    ],
    ids=["view-only", "every-connection-permission"],
)
def test_releasing_a_wait_needs_run_import(client, django_user_model, waiting, perms):
    client.force_login(staff_user(django_user_model, "clerk", *perms))
    before = table_snapshot()

    changelist = client.get(admin_url(Connection, "changelist"))
    response = release(client, waiting)

    assert changelist.status_code == 200
    assert RELEASE not in changelist.text
    assert RELEASE not in action_choices(changelist)
    assert response.status_code in (200, 302)
    assert not [m for m in get_messages(response.wsgi_request) if "released" in m.message]
    assert table_snapshot() == before
    waiting.refresh_from_db()
    assert waiting.next_expected_sequence == 2
    assert ImportFile.objects.get(sequence=3).status == "waiting"


def test_run_import_releases_a_wait(client, django_user_model, waiting):
    client.force_login(staff_user(django_user_model, "operator", "impex.view_connection", "impex.run_import"))
    jobs = ImportJob.objects.count()

    changelist = client.get(admin_url(Connection, "changelist"))
    confirmation = release(client, waiting)
    asked = ImportJob.objects.count()
    response = release(client, waiting, **confirmed(waiting, 3))

    assert RELEASE in action_choices(changelist)
    # The action asks first, naming the sequence it skips for good and the file that goes in; asking changes nothing.
    assert confirmation.status_code == 200
    assert "Sequence 2 will be skipped for good" in confirmation.text
    assert "ERP_0000003_INT1_KS_CUSTOMERS.NET" in confirmation.text
    assert asked == jobs
    assert response.status_code == 302
    assert ImportJob.objects.count() == jobs + 1
    assert any("wait released" in m.message for m in get_messages(response.wsgi_request))
    waiting.refresh_from_db()
    # The waiting file is imported by a queued job, never inside the web request.
    assert waiting.next_expected_sequence == 3
    assert ImportJob.objects.latest("pk").status == "queued"
    assert ImportFile.objects.get(sequence=3).status == "waiting"


# View permissions: everything visible, nothing changeable


@pytest.fixture
def viewer(client, django_user_model):
    """A client logged in as a staff user holding every view permission of our apps and nothing else."""
    client.force_login(staff_user(django_user_model, "viewer", *EVERY_VIEW))
    return client


@pytest.mark.parametrize("label", LISTED)
def test_view_permission_shows_pages_read_only(viewer, label):
    add_rows(2, "a")
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").first()

    changelist = viewer.get(admin_url(model, "changelist"))
    change = viewer.get(admin_url(model, "change", obj.pk))

    assert changelist.status_code == 200
    assert len(changelist.context["cl"].result_list) >= 2
    assert not changelist.context["has_add_permission"]
    assert "addlink" not in changelist.text
    assert action_choices(changelist) == []
    assert change.status_code == 200
    assert not change.context["has_change_permission"]
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', 'name="_saveasnew"', "deletelink"):
        assert button not in change.text, button


@pytest.mark.parametrize("label", LISTED)
def test_view_permission_refuses_every_write(viewer, label):
    add_rows(2, "a")
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").first()
    data = {f.name: "1" for f in model._meta.concrete_fields if f.editable and not f.primary_key}
    before = table_snapshot()

    responses = {
        "change": viewer.post(admin_url(model, "change", obj.pk), {**data, "_save": "Save"}),
        "add": viewer.post(admin_url(model, "add"), {**data, "_save": "Save"}),
        "delete page": viewer.get(admin_url(model, "delete", obj.pk)),
        "delete": viewer.post(admin_url(model, "delete", obj.pk), {"post": "yes"}),
    }
    action = viewer.post(
        admin_url(model, "changelist"), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    )

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 403)
    assert action.status_code == 200
    assert table_snapshot() == before


def test_the_change_permission_saves_what_the_view_permission_cannot(client, django_user_model, kore_connection):
    client.force_login(staff_user(django_user_model, "editor", "impex.change_connection"))
    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    data = {**post_data(page.context["adminform"].form), "name": "Renamed", "_save": "Save"}

    response = client.post(admin_url(Connection, "change", kore_connection.pk), data)

    assert response.status_code == 302, page.context["adminform"].form.errors
    kore_connection.refresh_from_db()
    assert kore_connection.name == "Renamed"


# CSRF protection on every form


@pytest.fixture
def csrf_client(admin_user):
    """A superuser's client that, like a browser, must send the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def token(client, url):
    """The CSRF token of the form at url."""
    return str(client.get(url).context["csrf_token"])


def upload_data(**extra):
    """The import form's data: a small customers file as CSV."""
    return {"import_file": csv_upload(), "format": "0", "resource": "0", **extra}


def test_the_import_refuses_a_post_without_the_csrf_token(csrf_client, settings):
    url = admin_url(Customer, "import")

    refused = csrf_client.post(url, upload_data())

    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert stored_files(settings) == []
    accepted = csrf_client.post(url, upload_data(csrfmiddlewaretoken=token(csrf_client, url)))
    assert accepted.status_code == 200
    assert "confirm_form" in accepted.context


def test_confirming_an_import_refuses_a_post_without_the_csrf_token(csrf_client):
    url = admin_url(Customer, "import")
    preview = csrf_client.post(url, upload_data(csrfmiddlewaretoken=token(csrf_client, url)))
    confirm = preview.context["confirm_form"].initial

    refused = csrf_client.post(admin_url(Customer, "process_import"), confirm)

    assert refused.status_code == 403
    assert not Customer.objects.exists()
    accepted = csrf_client.post(
        admin_url(Customer, "process_import"), {**confirm, "csrfmiddlewaretoken": str(preview.context["csrf_token"])}
    )
    assert accepted.status_code == 302
    assert Customer.objects.count() == 1


def test_the_release_action_refuses_a_post_without_the_csrf_token(csrf_client, waiting):
    before = table_snapshot()

    refused = release(csrf_client, waiting)

    assert refused.status_code == 403
    assert table_snapshot() == before
    changelist_token = token(csrf_client, admin_url(Connection, "changelist"))
    accepted = release(csrf_client, waiting, csrfmiddlewaretoken=changelist_token, **confirmed(waiting, 3))
    assert accepted.status_code == 302
    waiting.refresh_from_db()
    assert waiting.next_expected_sequence == 3
    assert ImportJob.objects.latest("pk").status == "queued"


@pytest.mark.parametrize("view", ["change", "delete", "export"])
def test_admin_forms_refuse_a_post_without_the_csrf_token(csrf_client, view):
    add_rows(1, "a")
    url = (
        admin_url(Customer, "export")
        if view == "export"
        else admin_url(Connection, view, Connection.objects.order_by("pk").last().pk)
    )
    before = table_snapshot()

    refused = csrf_client.post(url, {"name": "Renamed", "post": "yes", "format": "0", "resource": "0"})

    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert table_snapshot() == before


def test_the_login_form_refuses_a_post_without_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)

    refused = client.post(reverse("admin:login"), {"username": admin_user.username, "password": "password"})

    assert refused.status_code == 403
    assert "_auth_user_id" not in client.session
