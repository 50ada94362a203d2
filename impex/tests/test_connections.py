"""Connection rules (Connection.clean) through every entry point, the unique company and integration id, deletion."""

import html
import io
import json
import sys

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddConstraint, RunPython
from django.urls import reverse

from impex.exceptions import ConfigurationError, ConnectionDeleteRefused, ConnectionInvalid
from impex.models import Connection, ImportedFileName
from impex.services.connections import connection_delete, connection_save
from syncapp.models import SyncLog

# Each rule broken once: service arguments, the field it concerns, and what the message says.
# The other connections are acme-pos (BSPK, company Acme) and kore-erp (Kore, integration INT1).
KORE = {"convention": "kore", "integration_id": "INT7"}
RULES = [
    ({"convention": "bspk"}, "company_name", "A BSPK connection needs the company name its file names carry."),
    ({"convention": "kore"}, "integration_id", "A Kore connection needs the integration id its file names carry."),
    (
        {"convention": "bspk", "company_name": "acme retail"},
        "company_name",
        "'acme retail' cannot be the company part of a BSPK file name: use the CamelCase name",
    ),
    (
        {"convention": "kore", "integration_id": "INT 7"},
        "integration_id",
        "'INT 7' cannot be the integration part of a Kore file name",
    ),
    (
        {"convention": "bspk", "company_name": "Acme"},
        "company_name",
        "The BSPK connection 'acme-pos' already has the company name 'Acme', so files could reach only one of them.",
    ),
    (
        {"convention": "kore", "integration_id": "INT1"},
        "integration_id",
        "The Kore connection 'kore-erp' already has the integration id 'INT1', so files could reach only one of them.",
    ),
    (
        {**KORE, "timezone": "Mars/Olympus"},
        "timezone",
        "Unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/London.",
    ),
    (
        {**KORE, "contacts": "ops@acme.example; bob@"},
        "contacts",
        "'bob@' is not an e-mail address; separate addresses with commas or semicolons.",
    ),
    (
        {**KORE, "contacts": "ops@acme.example bob@acme.example"},
        "contacts",
        "'ops@acme.example bob@acme.example' is not an e-mail address",
    ),
    ({**KORE, "interval_minutes": 0}, "interval_minutes", "Scan the inbox every 1 minute or more."),
    (
        {**KORE, "inbox": "smb://files.acme.example/in"},
        "inbox",
        "Unknown scheme 'smb://' in the inbox: use a folder path, s3://bucket/prefix, sftp://[user@]host[:port]/path, "
        "ftp://[user@]host[:port]/path or ftps://[user@]host[:port]/path.",
    ),
    ({**KORE, "inbox": "s3:acme-drops/in"}, "inbox", "Write the inbox as a folder path, s3://bucket/prefix"),
    ({**KORE, "inbox": "s3:///in"}, "inbox", "An S3 inbox needs a bucket name right after s3://"),
    ({**KORE, "inbox": "s3://acme-drops/../other"}, "inbox", "Write the S3 inbox's prefix without '..'"),
    ({**KORE, "inbox": "sftp:///in"}, "inbox", "An SFTP inbox needs a host"),
    (
        {**KORE, "inbox": "sftp://files.acme.example:ssh/in"},
        "inbox",
        "The port in 'files.acme.example:ssh' must be a number",
    ),
    ({**KORE, "inbox": "sftp://files.acme.example"}, "inbox", "An SFTP inbox needs the folder after the host"),
    ({**KORE, "inbox": "sftp://bob:secret@files.acme.example/in"}, "inbox", "Keep the password out of the inbox URL"),
]
RULE_IDS = [
    "bspk without company",
    "kore without integration",
    "company not CamelCase",
    "integration with a space",
    "company of another BSPK connection",
    "integration of another Kore connection",
    "unknown time zone",
    "bad contact",
    "contacts not separated",
    "interval 0",
    "unknown inbox scheme",
    "s3 without //",
    "s3 without bucket",
    "s3 prefix climbing out",
    "sftp without host",
    "sftp port not a number",
    "sftp without folder",
    "sftp with password",
]
OPTION = {
    "convention": "--convention",
    "company_name": "--company",
    "integration_id": "--integration",
    "inbox": "--inbox",
    "timezone": "--timezone",
    "contacts": "--contacts",
    "interval_minutes": "--interval",
}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the admin user's password cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def others(bspk_connection, kore_connection):
    """The two connections a new one may clash with."""
    return bspk_connection, kore_connection


def command_args(values: dict) -> list[str]:
    """Return impex_connection options for service arguments."""
    return [item for field, value in values.items() for item in (OPTION[field], str(value))]


def call_json(*args) -> dict:
    """Run impex_connection with --json and return the JSON of its last line."""
    out = io.StringIO()
    call_command("impex_connection", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def form_data(**values) -> dict:
    """Return the admin form of a connection, filled with valid defaults and the given values."""
    data = {
        "code": "new-one",
        "name": "",
        "convention": "",
        "company_name": "",
        "integration_id": "",
        "active": "on",
        "inbox": "",
        "interval_minutes": "5",
        "timezone": "UTC",
        "contacts": "",
        "next_expected_sequence": "",
        "sequence_wait_alert_minutes": "60",
        "full_window_start": "",
        "full_window_end": "",
    }
    data.update({field: str(value) for field, value in values.items()})
    return data


def snapshot() -> list[tuple]:
    """Return every connection's settings, to show that a refusal changed nothing."""
    return list(
        Connection.objects.order_by("code").values_list(
            "code",
            "convention",
            "company_name",
            "integration_id",
            "inbox",
            "timezone",
            "contacts",
            "interval_minutes",
            "active",
            "updated_at",
        )
    )


def admin_url(view: str, *args) -> str:
    """Reverse an admin URL of connections."""
    return reverse(f"admin:impex_connection_{view}", args=args)


def page_messages(response) -> list[str]:
    """Return the texts of the messages a page shows."""
    return [str(m) for m in response.context["messages"]]


# -- every rule through every entry point -------------------------------------------------------------------


@pytest.mark.parametrize("values, field, message", RULES, ids=RULE_IDS)
def test_the_command_refuses_a_connection_that_breaks_a_rule(others, values, field, message):
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        call_command("impex_connection", "new-one", *command_args(values), stdout=io.StringIO())

    assert f"{OPTION[field]}: {message}" in str(refused.value)
    assert str(refused.value).startswith("connection new-one not saved:")
    assert snapshot() == before


@pytest.mark.parametrize("values, field, message", RULES, ids=RULE_IDS)
def test_the_service_refuses_a_connection_that_breaks_a_rule(others, values, field, message):
    before = snapshot()

    with pytest.raises(ConnectionInvalid) as refused:
        connection_save(code="new-one", **values)

    assert isinstance(refused.value, ConfigurationError)
    assert any(message in m for m in refused.value.errors[field]), refused.value.errors
    assert f"{field}: {message}" in str(refused.value)
    assert snapshot() == before


@pytest.mark.parametrize("values, field, message", RULES, ids=RULE_IDS)
def test_the_admin_add_page_refuses_a_connection_that_breaks_a_rule(admin_client, others, values, field, message):
    before = snapshot()

    response = admin_client.post(admin_url("add"), form_data(**values))

    assert response.status_code == 200
    assert any(message in m for m in response.context["adminform"].form.errors[field])
    assert message in html.unescape(response.text)
    assert snapshot() == before


@pytest.mark.parametrize("values, field, message", RULES, ids=RULE_IDS)
def test_the_admin_change_page_refuses_a_connection_that_breaks_a_rule(admin_client, others, values, field, message):
    spare, _ = connection_save(code="spare", **KORE)
    before = snapshot()

    response = admin_client.post(admin_url("change", spare.pk), form_data(code="spare", **values))

    assert response.status_code == 200
    assert any(message in m for m in response.context["adminform"].form.errors[field])
    assert message in html.unescape(response.text)
    assert snapshot() == before


def test_the_admin_saves_a_connection_that_follows_the_rules(admin_client, others, settings):
    settings.SFTP_HOSTS = {"93.184.216.34:2222": {}}
    values = {
        "convention": "kore",
        "integration_id": "INT-7_b",
        "inbox": "sftp://drop@93.184.216.34:2222/kore/in",
        "timezone": "Europe/Paris",
        "contacts": "ops@acme.example; it@acme.example, night@acme.example",
        "interval_minutes": 1,
    }

    response = admin_client.post(admin_url("add"), form_data(**values))

    assert response.status_code == 302
    saved = Connection.objects.get(code="new-one")
    assert (saved.integration_id, saved.inbox, saved.timezone, saved.interval_minutes) == (
        "INT-7_b",
        "sftp://drop@93.184.216.34:2222/kore/in",
        "Europe/Paris",
        1,
    )
    assert saved.contact_list == ["ops@acme.example", "it@acme.example", "night@acme.example"]


@pytest.mark.parametrize(
    "inbox",
    [
        "",
        "/srv/impex/acme/inbox",
        "inbox/acme",
        r"C:\impex\inbox",
        "s3://acme-drops",
        "s3://acme-drops/kore/in",
        "sftp://93.184.216.34/in",
        "sftp://drop@10.0.0.5:22/",
    ],
)
def test_a_folder_path_or_an_s3_or_sftp_url_is_a_good_inbox(db, inbox, settings):
    # Folders under a listed root, SFTP hosts listed for their login and at a public or listed address.
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = ["/srv/impex"]
    settings.SFTP_HOSTS = {"93.184.216.34": {}, "10.0.0.5": {}}
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["10.0.0.0/8"]
    conn, created = connection_save(code="new-one", inbox=inbox, **KORE)

    assert created
    assert Connection.objects.get(code="new-one").inbox == inbox


def test_the_admin_edits_a_connection_keeping_its_own_company(admin_client, bspk_connection):
    response = admin_client.post(
        admin_url("change", bspk_connection.pk),
        form_data(code="acme-pos", convention="bspk", company_name="Acme", timezone="Europe/London"),
    )

    assert response.status_code == 302
    bspk_connection.refresh_from_db()
    assert (bspk_connection.company_name, bspk_connection.timezone) == ("Acme", "Europe/London")


# -- one connection per company (BSPK) and per integration id (Kore) --------------------------------------


def test_a_company_name_is_unique_among_bspk_connections_only(others):
    kore_with_company, _ = connection_save(
        code="kore-two", convention="kore", integration_id="INT2", company_name="Acme"
    )

    with pytest.raises(ConnectionInvalid) as refused:
        connection_save(code="acme-two", convention="bspk", company_name="Acme")

    assert kore_with_company.company_name == "Acme"
    assert (
        "The BSPK connection 'acme-pos' already has the company name 'Acme'" in refused.value.errors["company_name"][0]
    )
    assert not Connection.objects.filter(code="acme-two").exists()


def test_an_integration_id_is_unique_among_kore_connections_only(others):
    bspk_with_integration, _ = connection_save(
        code="globex-pos", convention="bspk", company_name="Globex", integration_id="INT1"
    )

    with pytest.raises(ConnectionInvalid) as refused:
        connection_save(code="kore-two", convention="kore", integration_id="INT1")

    assert bspk_with_integration.integration_id == "INT1"
    assert (
        "The Kore connection 'kore-erp' already has the integration id 'INT1'"
        in (refused.value.errors["integration_id"][0])
    )
    assert not Connection.objects.filter(code="kore-two").exists()


def test_the_database_refuses_a_shared_company_or_integration_id_that_skipped_validation(others):
    for values in (
        {"code": "acme-two", "convention": "bspk", "company_name": "Acme"},
        {"code": "kore-two", "convention": "kore", "integration_id": "INT1"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Connection.objects.create(**values)

    assert Connection.objects.count() == 2


def test_empty_company_names_and_integration_ids_do_not_clash_in_the_database(db):
    Connection.objects.create(code="bspk-a", convention="bspk")
    Connection.objects.create(code="bspk-b", convention="bspk")
    Connection.objects.create(code="kore-a", convention="kore")
    Connection.objects.create(code="kore-b", convention="kore")

    assert Connection.objects.count() == 4


def test_the_migration_lists_connections_that_share_a_company_or_integration_id(others):
    loader = MigrationLoader(None, ignore_no_migrations=True)
    migration = next(m for (app, name), m in loader.disk_migrations.items() if name.endswith("_connection_rules"))
    kinds = [type(op) for op in migration.operations]
    # A database that already holds duplicates: the constraints are not there yet.
    with connection.cursor() as cursor:
        for name in ("connection_bspk_company_once", "connection_kore_integration_once"):
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    Connection.objects.create(code="acme-old", convention="bspk", company_name="Acme")
    Connection.objects.create(code="kore-old", convention="kore", integration_id="INT1")
    Connection.objects.create(code="kore-other", convention="kore", integration_id="INT2")

    with pytest.raises(CommandError) as refused:
        sys.modules[migration.__module__].refuse_shared_names(apps, None)

    assert kinds.index(RunPython) < kinds.index(AddConstraint)
    assert "BSPK company name 'Acme': acme-old, acme-pos" in str(refused.value)
    assert "Kore integration id 'INT1': kore-erp, kore-old" in str(refused.value)
    assert "INT2" not in str(refused.value)
    assert "then run migrate again" in str(refused.value)


# -- impex_connection: creating needs --convention, updating does not ---------------------------------------


def test_creating_a_connection_needs_its_convention(db):
    with pytest.raises(CommandError) as refused:
        call_command("impex_connection", "kore-erp", "--integration", "INT1", stdout=io.StringIO())

    assert str(refused.value) == (
        "connection kore-erp not saved:\n  --convention: "
        "A new connection needs its naming convention (bspk, kore or patterns)."
    )
    assert not Connection.objects.exists()


def test_an_update_changes_one_setting_without_repeating_the_convention(kore_connection):
    connection_save(code="kore-erp", timezone="Europe/Paris", contacts="ops@acme.example")

    updated = call_json("kore-erp", "--interval", "15")

    assert updated == {
        "code": "kore-erp",
        "created": False,
        "convention": "kore",
        "company": "",
        "integration": "INT1",
        "inbox": "",
        "timezone": "Europe/Paris",
        "contacts": ["ops@acme.example"],
        "interval": 15,
        "cron": "",
        "scan_seconds": None,
        "scan": True,
        "archive": "",
        "error_folder": "",
        "outbox": "",
        "groups": [],
    }
    kore_connection.refresh_from_db()
    assert (kore_connection.convention, kore_connection.interval_minutes) == ("kore", 15)


def test_a_refused_update_changes_nothing(kore_connection):
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        call_command(
            "impex_connection", "kore-erp", "--interval", "0", "--timezone", "Europe/Pariss", stdout=io.StringIO()
        )

    assert str(refused.value) == (
        "connection kore-erp not saved:\n"
        "  --timezone: Unknown time zone 'Europe/Pariss'; use an IANA name such as Europe/London.\n"
        "  --interval: Scan the inbox every 1 minute or more."
    )
    assert snapshot() == before


def test_the_convention_of_a_connection_changes_when_it_stays_valid(kore_connection):
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        call_command("impex_connection", "kore-erp", "--convention", "bspk", stdout=io.StringIO())
    unchanged = snapshot()
    changed = call_json("kore-erp", "--convention", "bspk", "--company", "Globex")

    assert "--company: A BSPK connection needs the company name its file names carry." in str(refused.value)
    assert unchanged == before
    assert (changed["convention"], changed["company"], changed["integration"]) == ("bspk", "Globex", "INT1")
    assert Connection.objects.get(code="kore-erp").convention == "bspk"


def test_the_convention_cannot_change_onto_another_connections_company(others):
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        call_command("impex_connection", "kore-erp", "--convention", "bspk", "--company", "Acme", stdout=io.StringIO())

    assert "--company: The BSPK connection 'acme-pos' already has the company name 'Acme'" in str(refused.value)
    assert snapshot() == before


# -- deleting a connection that has imported files -----------------------------------------------------------


@pytest.fixture
def ledger(kore_connection):
    """Three file names kore-erp has imported, and its sync log."""
    for sequence in (1, 2, 3):
        ImportedFileName.objects.create(
            connection=kore_connection, name=f"ERP_000000{sequence}_INT1_KS_CUSTOMERS.NET", content_hash="ab" * 32
        )
    SyncLog.objects.create(connection=kore_connection, entity="customer")
    return kore_connection


def switch_off(conn: Connection) -> None:
    """Set a connection inactive, as the admin's Active box does."""
    conn.active = False
    conn.save()


def state() -> tuple:
    """Return the connections, the ledger size and the sync logs, to show what a deletion changed."""
    return (
        list(Connection.objects.order_by("code").values_list("code", flat=True)),
        ImportedFileName.objects.count(),
        SyncLog.objects.count(),
    )


def test_the_service_refuses_to_delete_an_active_connection_that_has_imported_files(ledger):
    with pytest.raises(ConnectionDeleteRefused) as refused:
        connection_delete(connection=ledger, confirm=True)

    assert str(refused.value) == (
        "Connection 'kore-erp' has imported 3 file names, and that record is what keeps a file from being "
        "imported twice. Switch it off first (untick Active and save), then delete it."
    )
    assert state() == (["kore-erp"], 3, 1)


def test_the_service_deletes_a_switched_off_connection_only_when_confirmed(ledger):
    switch_off(ledger)

    with pytest.raises(ConnectionDeleteRefused) as refused:
        connection_delete(connection=ledger, confirm=False)
    unchanged = state()
    forgotten = connection_delete(connection=ledger, confirm=True)

    assert str(refused.value) == (
        "Deleting connection 'kore-erp' forgets its 3 imported file names, so files with those names could be "
        "imported again: confirm the deletion to go ahead."
    )
    assert unchanged == (["kore-erp"], 3, 1)
    assert forgotten == 3
    assert state() == ([], 0, 0)


def test_the_service_deletes_a_connection_that_imported_nothing(kore_connection):
    forgotten = connection_delete(connection=kore_connection, confirm=False)

    assert forgotten == 0
    assert state() == ([], 0, 0)


def test_the_service_reads_the_connection_afresh_before_deleting(ledger):
    stale = Connection.objects.get(pk=ledger.pk)
    stale.active = False

    with pytest.raises(ConnectionDeleteRefused):
        connection_delete(connection=stale, confirm=True)

    assert state() == (["kore-erp"], 3, 1)


def test_the_admin_delete_page_refuses_an_active_connection_that_has_imported_files(admin_client, ledger):
    page = admin_client.get(admin_url("delete", ledger.pk), follow=True)
    posted = admin_client.post(admin_url("delete", ledger.pk), {"post": "yes"}, follow=True)

    for response in (page, posted):
        assert response.redirect_chain == [(admin_url("change", ledger.pk), 302)]
        assert page_messages(response) == [
            "Connection 'kore-erp' has imported 3 file names, and that record is what keeps a file from being "
            "imported twice. Switch it off first (untick Active and save), then delete it. Nothing was deleted."
        ]
    assert state() == (["kore-erp"], 3, 1)


def test_the_admin_delete_page_of_a_switched_off_connection_says_what_is_forgotten(admin_client, ledger):
    switch_off(ledger)

    confirm = admin_client.get(admin_url("delete", ledger.pk))
    unchanged = state()
    done = admin_client.post(admin_url("delete", ledger.pk), {"post": "yes"})

    assert confirm.status_code == 200
    assert page_messages(confirm) == [
        "Connection 'kore-erp': 3 imported file names will be forgotten, so those names could be imported again."
    ]
    assert "3 imported file names" in confirm.context["deleted_objects"]
    assert unchanged == (["kore-erp"], 3, 1)
    assert done.status_code == 302
    assert state() == ([], 0, 0)


def test_the_admin_deletes_an_active_connection_that_imported_nothing(admin_client, kore_connection):
    confirm = admin_client.get(admin_url("delete", kore_connection.pk))
    done = admin_client.post(admin_url("delete", kore_connection.pk), {"post": "yes"})

    assert confirm.status_code == 200
    assert page_messages(confirm) == []
    assert done.status_code == 302
    assert state() == ([], 0, 0)


def test_the_admin_bulk_delete_refuses_the_whole_selection_if_one_connection_has_imported_files(
    admin_client, ledger, bspk_connection
):
    selection = {"action": "delete_selected", "_selected_action": [ledger.pk, bspk_connection.pk]}

    asked = admin_client.post(admin_url("changelist"), selection, follow=True)
    confirmed = admin_client.post(admin_url("changelist"), {**selection, "post": "yes"}, follow=True)

    for response in (asked, confirmed):
        assert response.redirect_chain == [(admin_url("changelist"), 302)]
        assert page_messages(response) == [
            "Connection 'kore-erp' has imported 3 file names, and that record is what keeps a file from being "
            "imported twice. Switch it off first (untick Active and save), then delete it. Nothing was deleted."
        ]
    assert state() == (["acme-pos", "kore-erp"], 3, 1)


def test_the_admin_bulk_delete_of_switched_off_connections_says_what_is_forgotten(
    admin_client, ledger, bspk_connection
):
    switch_off(ledger)
    selection = {"action": "delete_selected", "_selected_action": [ledger.pk, bspk_connection.pk]}

    confirm = admin_client.post(admin_url("changelist"), selection)
    unchanged = state()
    done = admin_client.post(admin_url("changelist"), {**selection, "post": "yes"}, follow=True)

    assert confirm.status_code == 200
    assert confirm.template_name[-1] == "admin/delete_selected_confirmation.html"
    assert page_messages(confirm) == [
        "Connection 'kore-erp': 3 imported file names will be forgotten, so those names could be imported again."
    ]
    assert unchanged == (["acme-pos", "kore-erp"], 3, 1)
    assert page_messages(done) == ["Successfully deleted 2 connections."]
    assert state() == ([], 0, 0)


def test_saving_a_connection_in_the_admin_keeps_the_sequence_an_import_moved_meanwhile(admin_client, kore_connection):
    from django.urls import reverse

    url = reverse("admin:impex_connection_change", args=[kore_connection.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}
    data.update(contacts="ops@example.com", interval_minutes=10)
    data["initial-next_expected_sequence"] = ""  # the value the page showed
    Connection.objects.filter(pk=kore_connection.pk).update(next_expected_sequence=7)  # an import ran meanwhile

    response = admin_client.post(url, {k: v for k, v in data.items() if v is not False})

    assert response.status_code == 302, response.context["adminform"].form.errors
    kore_connection.refresh_from_db()
    assert (kore_connection.contacts, kore_connection.interval_minutes) == ("ops@example.com", 10)
    assert kore_connection.next_expected_sequence == 7

    data.update(next_expected_sequence=3, **{"initial-next_expected_sequence": "7"})
    admin_client.post(url, {k: v for k, v in data.items() if v is not False})
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 3  # an admin's own change is saved
