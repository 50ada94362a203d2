"""The admin as a product: the hub's home page, its name on every page, read-only synced records, texts that read."""

import html
import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from impex.models import Connection, DataGroup, ImportFile, ImportJob
from impex.tests.helpers import bspk_name, customer_row, run_import, special_order_row, table_text, write_kore
from syncapp.models import Customer, SyncError, SyncLog
from tests.admin_helpers import add_rows, admin_url, staff_user, table_snapshot

SYNCED = [
    "orders.order",
    "orders.orderline",
    "orders.shipment",
    "syncapp.customer",
    "syncapp.price",
    "syncapp.pricelist",
    "syncapp.product",
    "syncapp.productvariant",
    "syncapp.specialorder",
    "syncapp.specialorderevent",
    "syncapp.specialorderlineitem",
    "syncapp.stocklevel",
]
READ_ONLY_NOTE = "the reference systems are the source of truth; the next import would overwrite a hand edit"
UPLOAD = "Upload and import"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def kore_activity(tmp_path, kore_connection):
    """A Kore connection whose one job imported C1, refused a customer without e-mail and holds sequence 3."""
    write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email="")])
    write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")])
    run_import(*sorted(tmp_path.glob("ERP_*")), connection=kore_connection.code)
    assert ImportFile.objects.get(sequence=3).status == "waiting"
    assert SyncError.objects.filter(log__connection=kore_connection).count() == 1
    return kore_connection


def connection_row(response, conn) -> str:
    """The HTML of a connection's row in the home page's connections table."""
    match = re.search(rf'<tr class="connection-{conn.code}">(.*?)</tr>', response.text, re.S)
    assert match, response.text
    return match.group(1)


# The home page


def test_home_shows_each_connection_with_its_last_job_waiting_files_and_open_errors(admin_client, kore_activity):
    idle = Connection.objects.create(code="idle-pos", convention="bspk", company_name="Idle")
    job = ImportJob.objects.get(connection=kore_activity)

    response = admin_client.get(reverse("admin:index"))

    row = connection_row(response, kore_activity)
    assert f'href="{admin_url(ImportJob, "change", job.pk)}">#{job.pk}</a>' in row
    # Completed, but its file of sequence 3 still waits for sequence 2: shown waiting, in amber.
    assert '<span class="impex-badge impex-badge-warn" data-status="waiting">Waiting for sequence 2</span>' in row
    # Its files: the one imported (a created and a refused row) and the one held for the missing sequence 2.
    assert "2 files, 1 created, 1 failed" in row
    waiting = (
        f"{admin_url(ImportFile, 'changelist')}?status__exact=waiting&amp;connection__id__exact={kore_activity.pk}"
    )
    assert f'<a href="{waiting}">1 file</a>' in row
    errors = f"{admin_url(SyncError, 'changelist')}?log__connection__id__exact={kore_activity.pk}"
    assert f'<a href="{errors}">1 error</a>' in row
    idle_row = connection_row(response, idle)
    assert "no job yet" in idle_row
    assert idle_row.count("none") == 2


def test_the_home_links_lead_to_the_waiting_files_and_the_open_errors(admin_client, kore_activity):
    home = admin_client.get(reverse("admin:index")).text
    waiting_url, errors_url = re.findall(r'<a href="([^"]+)">1 (?:file|error)</a>', home)

    waiting = admin_client.get(waiting_url.replace("&amp;", "&"))
    errors = admin_client.get(errors_url)

    assert [f.sequence for f in waiting.context["cl"].result_list] == [3]
    assert [e.external_id for e in errors.context["cl"].result_list] == ["C2"]


def test_home_lists_the_latest_ten_jobs_newest_first(admin_client, kore_connection):
    jobs = [ImportJob.objects.create(connection=kore_connection, created_by=f"user{n}") for n in range(12)]
    ImportJob.objects.filter(pk=jobs[0].pk).update(status="failed", dry_run=True)

    response = admin_client.get(reverse("admin:index"))

    listed = [summary.job.pk for summary in response.context["latest_jobs"]]
    assert listed == [job.pk for job in reversed(jobs)][:10]
    table = re.search(r'id="hub-latest-jobs">(.*?)</table>', response.text, re.S).group(1)
    assert f'href="{admin_url(ImportJob, "change", jobs[-1].pk)}">#{jobs[-1].pk}</a>' in table
    assert "user11" in table and "user1<" not in table
    assert "0 files, no rows" in table


def test_the_home_shows_the_dry_run_and_failure_of_a_job(admin_client, kore_connection):
    job = ImportJob.objects.create(connection=kore_connection, status="failed", dry_run=True)

    table = re.search(r'id="hub-latest-jobs">(.*?)</table>', admin_client.get("/admin/").text, re.S).group(1)

    # A dry run that found problems wrote nothing: it says so, in amber, never "failed".
    badge = (
        '<span class="impex-badge impex-badge-warn" data-status="failed">dry run: done, problems found, nothing written'
    )
    assert f"#{job.pk}</a></th>\n                <td>{badge}</span>" in table


def test_the_home_runs_as_many_queries_for_many_connections_and_jobs_as_for_few(
    admin_client, django_assert_max_num_queries
):
    add_rows(2, "a")
    url = reverse("admin:index")
    admin_client.get(url)
    with django_assert_max_num_queries(100) as few:
        admin_client.get(url)

    add_rows(30, "b")
    SyncError.objects.bulk_create(SyncError(log=log, external_id="X", message="bad") for log in SyncLog.objects.all())

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(url)
    assert len(response.context["connections"]) == 32
    assert len(response.context["latest_jobs"]) == 10


def upload_link(home: str) -> str | None:
    """The URL the home page's "Upload and import" link leads to, or None if the page shows no such link."""
    match = re.search(rf'<a href="([^"]+)" class="addlink">{UPLOAD}</a>', home)
    return match and html.unescape(match.group(1))


def test_the_upload_link_needs_run_import_and_leads_to_the_upload_page(client, django_user_model, bspk_connection):
    # SPEC 1 (channel 2) and 13: whoever holds impex.run_import uploads files and zips in the browser.
    runner = staff_user(django_user_model, "runner", "impex.run_import", "impex.view_importjob")
    viewer = staff_user(django_user_model, "viewer", "impex.view_importjob")
    client.force_login(viewer)
    assert upload_link(client.get(reverse("admin:index")).text) is None
    client.force_login(runner)

    url = upload_link(client.get(reverse("admin:index")).text)

    assert url == reverse("admin:impex_importjob_upload")
    page = client.get(url)
    assert page.status_code == 200
    assert f"<h1>{UPLOAD}</h1>" in page.text and 'type="file" name="file"' in page.text
    group = DataGroup.objects.get(code="bspk-special-orders")
    name = bspk_name("SPECIAL-ORDERS", "202611011000")
    sent = client.post(url, {"group": group.pk, "file": SimpleUploadedFile(name, special_orders_csv())})
    job = ImportJob.objects.get()
    assert (sent.status_code, sent["Location"]) == (302, admin_url(ImportJob, "change", job.pk))
    assert (job.status, job.source, job.created_by, job.group) == ("queued", "admin", "runner", group)
    # The page checks the permission itself, whatever the home page shows.
    client.force_login(viewer)
    assert client.get(url).status_code == 403


def special_orders_csv() -> bytes:
    return table_text([special_order_row("SO-1")], delimiter=",").encode()


def test_the_home_shows_only_what_the_user_may_see(client, django_user_model, kore_activity):
    client.force_login(staff_user(django_user_model, "viewer", "syncapp.view_customer"))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "hub-connections" not in response.text
    assert "hub-latest-jobs" not in response.text
    assert "Customers" in response.text


def test_the_home_keeps_the_list_of_every_model(admin_client):
    response = admin_client.get(reverse("admin:index"))

    for model in admin.site._registry:
        assert f'href="{admin_url(model, "changelist")}"' in response.text, model


# The site's name


@pytest.mark.parametrize("page", ["login", "index", "changelist", "password_change"])
def test_every_page_says_impex_hub(client, admin_user, page):
    if page != "login":
        client.force_login(admin_user)
    url = {
        "login": reverse("admin:login"),
        "index": reverse("admin:index"),
        "changelist": admin_url(Customer, "changelist"),
        "password_change": reverse("admin:password_change"),
    }[page]

    text = client.get(url).text

    assert re.search(r'<div id="site-name"><a href="[^"]*">impex-hub</a></div>', text)
    assert re.search(r"<title>[^<]*\| impex-hub</title>", text)
    assert "Django administration" not in text and "Django site admin" not in text


def test_the_home_is_titled_impex_hub(admin_client):
    assert "<h1>impex-hub home</h1>" in admin_client.get(reverse("admin:index")).text


# Synced records are read-only


def test_the_synced_models_are_the_read_only_ones(admin_client):
    add_rows(1, "a")
    read_only = []
    for model in admin.site._registry:
        if model._meta.app_label not in ("impex", "syncapp", "orders"):
            continue
        obj = model.objects.order_by("pk").first()
        if READ_ONLY_NOTE in admin_client.get(admin_url(model, "change", obj.pk)).text:
            read_only.append(model._meta.label_lower)

    assert sorted(read_only) == SYNCED


@pytest.mark.parametrize("label", SYNCED)
def test_a_superuser_sees_a_synced_record_read_only_and_why(admin_client, label):
    add_rows(2, "a")
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").first()

    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk))

    assert not changelist.context["has_add_permission"]
    assert "addlink" not in changelist.text
    assert "delete_selected" not in changelist.text
    assert change.status_code == 200
    assert change.context["adminform"].form.fields == {}
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', 'name="_saveasnew"', "deletelink"):
        assert button not in change.text, button
    assert READ_ONLY_NOTE in change.text
    for inline in change.context["inline_admin_formsets"]:
        assert not inline.has_add_permission and not inline.has_change_permission
        assert not inline.has_delete_permission


@pytest.mark.parametrize("label", SYNCED)
def test_a_superusers_writes_to_a_synced_record_are_refused_and_change_nothing(admin_client, label):
    add_rows(2, "a")
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").first()
    data = {f.name: "1" for f in model._meta.concrete_fields if f.editable and not f.primary_key}
    before = table_snapshot()

    responses = {
        "change": admin_client.post(admin_url(model, "change", obj.pk), {**data, "_save": "Save"}),
        "add": admin_client.post(admin_url(model, "add"), {**data, "_save": "Save"}),
        "add page": admin_client.get(admin_url(model, "add")),
        "delete page": admin_client.get(admin_url(model, "delete", obj.pk)),
        "delete": admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}),
    }
    action = admin_client.post(
        admin_url(model, "changelist"), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    )

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 403)
    # The list has no delete action: the post is shown the list again, or told "No action selected" (a redirect
    # back to the list) where the list has other actions (exports).
    assert action.status_code in (200, 302) and action.get("Location", admin_url(model, "changelist")) == admin_url(
        model, "changelist"
    )
    assert table_snapshot() == before


@pytest.mark.parametrize("label", ["syncapp.customer", "orders.order"])
def test_the_change_permission_still_imports_sheets_and_the_view_permission_exports(client, django_user_model, label):
    model = apps.get_model(label)
    app_label, model_name = label.split(".")
    client.force_login(
        staff_user(django_user_model, "editor", f"{app_label}.change_{model_name}", f"{app_label}.view_{model_name}")
    )

    changelist = client.get(admin_url(model, "changelist"))

    assert changelist.context["has_import_permission"] and changelist.context["has_export_permission"]
    assert client.get(admin_url(model, "import")).status_code == 200
    assert client.get(admin_url(model, "export")).status_code == 200


# Texts that read right


def test_a_sync_log_is_named_by_its_connection_and_entity(admin_client, kore_connection):
    log = SyncLog.objects.create(connection=kore_connection, entity="special_order_event")

    response = admin_client.get(admin_url(SyncLog, "change", log.pk))

    assert str(log) == f"{kore_connection.code}: Special order event"
    assert f"<h1>Sync log: {kore_connection.code}, Special order event</h1>" in response.text
    changelist = admin_client.get(admin_url(SyncLog, "changelist")).text
    assert "Special order event" in changelist and "special_order_event</td>" not in changelist


@pytest.mark.parametrize(("errors", "text"), [(0, "No open errors."), (1, "1 open error"), (2, "2 open errors")])
def test_a_sync_log_dashboard_counts_its_open_errors(admin_client, kore_connection, errors, text):
    log = SyncLog.objects.create(connection=kore_connection, entity="customer")
    SyncError.objects.bulk_create(SyncError(log=log, external_id=f"C{n}", message="bad") for n in range(errors))

    response = admin_client.get(admin_url(SyncLog, "change", log.pk))

    assert f'id="open-error-count">{errors}<' in response.text
    assert text in response.text
    assert "1 open errors" not in response.text


def test_a_delete_confirmation_counts_one_record_in_the_singular(admin_client, kore_connection):
    response = admin_client.post(
        admin_url(Connection, "changelist"),
        {"action": "delete_selected", "_selected_action": [kore_connection.pk], "index": "0"},
    )

    assert response.context["deletable_objects"] == [["1 connection"]]
    assert "1 connections" not in response.text


def test_an_unfiltered_list_offers_no_show_all(admin_client):
    add_rows(3, "a")
    url = admin_url(Customer, "changelist")

    unfiltered = admin_client.get(url)
    sorted_only = admin_client.get(url, {"o": "2"})
    searched = admin_client.get(url, {"q": "a001"})
    filtered = admin_client.get(url, {"active__exact": "1"})

    assert "Show all" not in unfiltered.text and "Show all" not in sorted_only.text
    assert "1 result (" in searched.text and "Show all" in searched.text
    assert "Show all" in filtered.text


def test_the_inbox_help_text_is_shown_as_text(admin_client, kore_connection):
    response = admin_client.get(admin_url(Connection, "change", kore_connection.pk))

    assert "IMPEX_ROOT/&lt;code&gt;/inbox" in response.text
    assert "<code>" not in response.text


def test_the_hub_stylesheet_is_on_every_admin_page(client, admin_client):
    assert "/static/hub/admin.css" in client.get(reverse("admin:login")).text
    for url in (reverse("admin:index"), admin_url(Customer, "changelist"), admin_url(Connection, "add")):
        assert "/static/hub/admin.css" in admin_client.get(url).text
