"""Locations in the admin (SPEC 13, issue 16 C1): refused outside the roots, set only with impex.change_locations."""

import html
import os
import sysconfig
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from impex.models import Connection, DataDescriptor, DataGroup, ImportFile, ImportJob
from impex.tasks import import_job_run
from impex.tests.helpers import bspk_name, run_import, special_order_row, table_text
from tests.admin_helpers import admin_url, post_data, staff_user

pytestmark = pytest.mark.django_db

LOCATIONS = {"inbox", "archive_folder", "error_folder", "outbox"}


@pytest.fixture(autouse=True)
def tight(settings):
    """Only IMPEX_ROOT is allowed unless a test lists a root; passwords hashed cheaply."""
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = []
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the roots."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
def drops(tmp_path, settings) -> Path:
    """A folder under a listed root."""
    folder = tmp_path / "drops"
    folder.mkdir()
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(folder)]
    return folder


def new_connection(client, **values) -> dict:
    """The admin form of a new BSPK connection as the logged-in user gets it, filled in with values."""
    page = client.get(admin_url(Connection, "add"))
    return {
        **post_data(page.context["adminform"].form),
        "code": "new-one",
        "convention": "bspk",
        "company_name": "NewCo",
        **values,
    }


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


def editor(client, django_user_model, *perms):
    """Log in a staff user who may view and change connections and groups, and hold perms."""
    user = staff_user(
        django_user_model,
        "editor",
        "impex.view_connection",
        "impex.change_connection",
        "impex.add_connection",
        "impex.view_datagroup",
        "impex.change_datagroup",
        "impex.add_datagroup",
        *perms,
    )
    client.force_login(user)
    return user


def export_group() -> DataGroup:
    group = DataGroup.objects.create(code="out", name="Out", direction="export")
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))
    return group


# -- the attacks, through the admin ----------------------------------------------------------------------------------


def test_the_admin_refuses_an_error_folder_in_the_apps_site_packages(admin_client, settings):
    site_packages = sysconfig.get_paths()["purelib"]

    response = admin_client.post(admin_url(Connection, "add"), new_connection(admin_client, error_folder=site_packages))

    assert response.status_code == 200
    (message,) = form_errors(response)["error_folder"]
    assert message.startswith(f"The error folder {site_packages} lies in the hub's own files")
    assert "whatever IMPEX_ALLOWED_LOCAL_ROOTS lists" in html.unescape(response.text)
    assert not Connection.objects.filter(code="new-one").exists()


def test_the_admin_refuses_an_inbox_outside_the_roots_naming_them_and_the_setting(admin_client, outside, settings):
    response = admin_client.post(admin_url(Connection, "add"), new_connection(admin_client, inbox=str(outside)))

    assert response.status_code == 200
    (message,) = form_errors(response)["inbox"]
    assert f"The inbox {outside} is outside the folders the hub may use: IMPEX_ROOT ({settings.IMPEX_ROOT})" in message
    assert "IMPEX_ALLOWED_LOCAL_ROOTS (none)" in message
    assert not Connection.objects.filter(code="new-one").exists()


def test_an_upload_to_a_connection_whose_error_folder_was_saved_before_the_rules_writes_nothing_there(
    client, django_user_model, bspk_connection, outside
):
    Connection.objects.filter(pk=bspk_connection.pk).update(error_folder=str(outside))
    client.force_login(staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import"))
    group = DataGroup.objects.get(code="bspk-special-orders")
    # A well-named file (the upload page refuses a bad name) whose content is rejected: its way is the error folder.
    upload = SimpleUploadedFile(bspk_name("SPECIAL-ORDERS"), b"import os; os.system('touch /tmp/pwned')\n")

    response = client.post(
        reverse("admin:impex_importjob_upload"), {"group": group.pk, "connection": bspk_connection.pk, "file": upload}
    )
    job = ImportJob.objects.get()
    import_job_run(job.pk)

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "errored"
    page = client.get(reverse("admin:impex_importjob_change", args=[job.pk]))
    assert f"its error folder: the local folder {outside} is outside" in html.unescape(page.text)
    assert os.listdir(outside) == []


def download_as_viewer(client, django_user_model, f: ImportFile):
    """Ask for a job's file as a user who may only view jobs; return the bytes received and the messages shown."""
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_importjob"))
    response = client.get(reverse("admin:impex_importjob_file", args=[f.job_id, f.pk, "original"]), follow=True)
    received = b"".join(response.streaming_content) if response.streaming else response.content
    messages = [str(m) for m in response.context["messages"]] if response.context else []
    return received, messages


@pytest.fixture
def imported(tmp_path, bspk_connection) -> ImportFile:
    """A file imported and archived in the hub's storage."""
    name = bspk_name("SPECIAL-ORDERS")
    (tmp_path / name).write_text(table_text([special_order_row("SO-1")], delimiter=","))
    run_import(tmp_path / name, connection="acme-pos")
    return ImportFile.objects.get()


def test_a_file_recorded_outside_the_roots_is_not_downloaded_by_a_viewer(client, django_user_model, imported, outside):
    (outside / "id_rsa").write_bytes(b"top secret\n")
    # Where an archive folder set before the rules had put it.
    ImportFile.objects.filter(pk=imported.pk).update(path=f"{outside}/id_rsa")

    received, messages = download_as_viewer(client, django_user_model, imported)

    assert b"top secret" not in received
    assert any(f"the local folder {outside} is outside the folders the hub may use" in m for m in messages), messages


def test_an_archived_file_made_a_link_to_elsewhere_is_not_downloaded(
    client, django_user_model, imported, outside, settings
):
    (outside / "id_rsa").write_bytes(b"top secret\n")
    archived = Path(settings.IMPEX_ROOT) / imported.path
    archived.unlink()
    archived.symlink_to(outside / "id_rsa")

    received, messages = download_as_viewer(client, django_user_model, imported)

    assert b"top secret" not in received
    assert any(f"the local file {archived} (a link to {outside}/id_rsa) is outside" in m for m in messages), messages


def test_running_again_a_job_whose_files_are_kept_outside_the_roots_is_refused(
    client, django_user_model, tmp_path, outside
):
    (outside / "id_rsa").write_bytes(b"top secret\n")
    name = bspk_name("SPECIAL-ORDERS")
    (tmp_path / name).write_text(table_text([special_order_row("SO-1")], delimiter=","))
    run_import(tmp_path / name)  # no connection has the company Acme: rejected, the job failed
    job = ImportJob.objects.get()
    # Where an error folder set before the rules had put it.
    ImportFile.objects.update(path=f"{outside}/id_rsa")
    client.force_login(staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import"))

    response = client.post(reverse("admin:impex_importjob_run_again", args=[job.pk]), follow=True)

    assert job.status == "failed" and response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any(f"{name} cannot be read again: the local folder {outside} is outside" in m for m in messages), messages
    assert ImportJob.objects.count() == 1


# -- impex.change_locations ---------------------------------------------------------------------------------------


def test_without_change_locations_the_folders_of_a_connection_are_read_only(client, django_user_model, drops):
    conn = Connection.objects.create(
        code="acme-pos", convention="bspk", company_name="Acme", inbox=str(drops / "in"), outbox="acme/out"
    )
    editor(client, django_user_model)

    for url in (admin_url(Connection, "change", conn.pk), admin_url(Connection, "add")):
        page = client.get(url)
        assert page.status_code == 200
        assert not LOCATIONS & set(page.context["adminform"].form.fields)
        assert LOCATIONS <= set(page.context["adminform"].readonly_fields)
    page = client.get(admin_url(Connection, "change", conn.pk))
    assert str(drops / "in") in page.text and "acme/out" in page.text


def test_a_crafted_post_without_change_locations_changes_no_folder(client, django_user_model, drops, outside):
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme", inbox=str(drops / "in"))
    editor(client, django_user_model)
    page = client.get(admin_url(Connection, "change", conn.pk))
    crafted = {name: str(outside / name) for name in LOCATIONS}

    changed = client.post(
        admin_url(Connection, "change", conn.pk),
        {**post_data(page.context["adminform"].form), "name": "Renamed", **crafted},
    )
    added = client.post(admin_url(Connection, "add"), new_connection(client, **crafted))

    assert changed.status_code == 302 and added.status_code == 302
    conn.refresh_from_db()
    assert conn.name == "Renamed"
    assert (conn.inbox, conn.archive_folder, conn.error_folder, conn.outbox) == (str(drops / "in"), "", "", "")
    made = Connection.objects.get(code="new-one")
    assert (made.inbox, made.archive_folder, made.error_folder, made.outbox) == ("", "", "", "")


def test_without_change_locations_a_folder_saved_before_the_rules_does_not_block_other_changes(
    client, django_user_model, outside
):
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    Connection.objects.filter(pk=conn.pk).update(inbox=str(outside))
    editor(client, django_user_model)
    page = client.get(admin_url(Connection, "change", conn.pk))

    response = client.post(
        admin_url(Connection, "change", conn.pk), {**post_data(page.context["adminform"].form), "name": "Renamed"}
    )

    assert response.status_code == 302
    conn.refresh_from_db()
    assert (conn.name, conn.inbox) == ("Renamed", str(outside))


def test_with_change_locations_a_folder_under_a_root_is_set_and_one_outside_refused(
    client, django_user_model, drops, outside
):
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    editor(client, django_user_model, "impex.change_locations")
    page = client.get(admin_url(Connection, "change", conn.pk))
    assert LOCATIONS <= set(page.context["adminform"].form.fields)
    data = post_data(page.context["adminform"].form)

    refused = client.post(admin_url(Connection, "change", conn.pk), {**data, "archive_folder": str(outside)})
    saved = client.post(
        admin_url(Connection, "change", conn.pk), {**data, "inbox": str(drops / "in"), "error_folder": "acme/rejected"}
    )

    assert refused.status_code == 200 and "archive_folder" in form_errors(refused)
    assert saved.status_code == 302
    conn.refresh_from_db()
    assert (conn.inbox, conn.archive_folder, conn.error_folder) == (str(drops / "in"), "", "acme/rejected")


def test_without_change_locations_an_export_groups_destination_is_read_only_and_a_crafted_post_ignored(
    client, django_user_model, drops, outside
):
    group = export_group()
    DataGroup.objects.filter(pk=group.pk).update(destination=str(drops))
    editor(client, django_user_model)
    page = client.get(admin_url(DataGroup, "change", group.pk))
    assert "destination" not in page.context["adminform"].form.fields
    assert "destination" in page.context["adminform"].readonly_fields
    assert "destination" not in client.get(admin_url(DataGroup, "add")).context["adminform"].form.fields

    response = client.post(
        admin_url(DataGroup, "change", group.pk),
        {**post_data(page.context["adminform"].form), "name": "Renamed", "destination": str(outside)},
    )

    assert response.status_code == 302
    group.refresh_from_db()
    assert (group.name, group.destination) == ("Renamed", str(drops))


def test_without_change_locations_an_export_groups_connection_cannot_be_chosen(client, django_user_model):
    """An export group without a destination writes to its connection's outbox: choosing one is choosing a place."""
    partner = Connection.objects.create(code="partner", convention="bspk", company_name="Partner", outbox="partner/out")
    group = export_group()
    editor(client, django_user_model)
    page = client.get(admin_url(DataGroup, "change", group.pk))
    assert "connection" not in page.context["adminform"].form.fields
    assert "connection" not in client.get(admin_url(DataGroup, "add")).context["adminform"].form.fields

    response = client.post(
        admin_url(DataGroup, "change", group.pk),
        {**post_data(page.context["adminform"].form), "name": "Renamed", "connection": str(partner.pk)},
    )

    assert response.status_code == 302
    group.refresh_from_db()
    assert (group.name, group.connection_id) == ("Renamed", None)


def test_without_change_locations_a_connections_code_naming_its_default_folders_stays(client, django_user_model):
    """A connection's default folders are IMPEX_ROOT/<code>/...: a new code would move them."""
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    editor(client, django_user_model)
    page = client.get(admin_url(Connection, "change", conn.pk))
    assert "code" not in page.context["adminform"].form.fields
    assert "code" in client.get(admin_url(Connection, "add")).context["adminform"].form.fields

    response = client.post(
        admin_url(Connection, "change", conn.pk),
        {**post_data(page.context["adminform"].form), "name": "Renamed", "code": "acme-pos-old"},
    )

    assert response.status_code == 302
    conn.refresh_from_db()
    assert (conn.name, conn.code) == ("Renamed", "acme-pos")


def test_with_change_locations_a_connection_is_renamed_and_a_group_given_a_connection(client, django_user_model):
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    group = export_group()
    editor(client, django_user_model, "impex.change_locations")
    conn_page = client.get(admin_url(Connection, "change", conn.pk))
    group_page = client.get(admin_url(DataGroup, "change", group.pk))

    renamed = client.post(
        admin_url(Connection, "change", conn.pk), {**post_data(conn_page.context["adminform"].form), "code": "acme-2"}
    )
    given = client.post(
        admin_url(DataGroup, "change", group.pk),
        {**post_data(group_page.context["adminform"].form), "connection": str(conn.pk)},
    )

    assert renamed.status_code == 302 and given.status_code == 302
    conn.refresh_from_db()
    group.refresh_from_db()
    assert (conn.code, group.connection_id) == ("acme-2", conn.pk)


def test_with_change_locations_an_export_groups_destination_is_checked_and_set(
    client, django_user_model, drops, outside
):
    group = export_group()
    editor(client, django_user_model, "impex.change_locations")
    page = client.get(admin_url(DataGroup, "change", group.pk))
    data = post_data(page.context["adminform"].form)

    refused = client.post(admin_url(DataGroup, "change", group.pk), {**data, "destination": str(outside)})
    saved = client.post(admin_url(DataGroup, "change", group.pk), {**data, "destination": str(drops / "out")})

    assert refused.status_code == 200
    assert f"The destination {outside} is outside" in form_errors(refused)["destination"][0]
    assert saved.status_code == 302
    group.refresh_from_db()
    assert group.destination == str(drops / "out")


def test_running_an_export_to_a_destination_saved_before_the_rules_is_refused_on_the_page(
    client, django_user_model, outside
):
    group = export_group()
    DataGroup.objects.filter(pk=group.pk).update(destination=str(outside))
    client.force_login(staff_user(django_user_model, "exporter", "impex.view_datagroup", "impex.export_data"))

    response = client.post(reverse("admin:impex_datagroup_run_export", args=[group.pk]), follow=True)

    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("out cannot export: the local folder") for m in messages), messages
    assert not group.export_runs.exists()
    assert os.listdir(outside) == []
