"""The patterns convention (SPEC section 3): a shop platform's own file names, matched by its descriptors' patterns,
imported once per name for their connection, in the order they arrived; through the command, a scan, the upload and
the connection's admin form."""

import html
import io
import json
import os
import re
import shutil
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from impex import naming
from impex.exceptions import FileNameError
from impex.models import (
    Connection,
    DataDescriptor,
    DataGroup,
    DescriptorColumn,
    ImportedFileName,
    ImportFile,
    ImportJob,
    InboxFile,
)
from impex.services.connections import connection_save
from impex.services.jobs import NameRefused, name_match
from impex.services.uploads import upload_expected_names
from impex.tasks import import_job_run
from impex.tests.helpers import bspk_name, counts, file_named, inbox_of, kore_name, only_file, run_import
from impex.tests.test_connections import form_data
from syncapp.models import Customer
from tests.admin_helpers import staff_user
from tests.shop import SHOP_PATTERN, shop_columns, shop_row, write_shop_file
from tests.test_admin_outbound_urls import form_data as browser_form_data

pytestmark = pytest.mark.django_db

ANN_FIRST = [shop_row("Ann", "First", "ann@example.com")]
ANN_SECOND = [shop_row("Ann", "Second", "ann@example.com")]


def shop_descriptor(code: str = "SHOP_CUSTOMERS", *, pattern: str = SHOP_PATTERN, precedence: int = 10):
    """The shop's 19-column customers layout as an admin makes it (tests/test_admin_descriptors.py posts it)."""
    descriptor = DataDescriptor.objects.create(
        code=code,
        name="Shop customers export",
        entity="customer",
        format="csv",
        file_pattern=pattern,
        precedence=precedence,
        true_words="yes",
        false_words="no",
    )
    DescriptorColumn.objects.bulk_create(DescriptorColumn(descriptor=descriptor, **c) for c in shop_columns())
    return descriptor


@pytest.fixture
def shop_group(db):
    group = DataGroup.objects.create(code="shop-import", name="Shop platform", direction="import")
    group.descriptors.add(shop_descriptor())
    return group


@pytest.fixture
def shop(shop_group):
    """The shop platform: a patterns connection whose import group holds the customers layout."""
    conn, _ = connection_save(code="shop", convention="patterns", groups=["shop-import"])
    return conn


def last_name(email: str = "ann@example.com") -> str:
    return Customer.objects.get(email=email).last_name


def zipped(tmp_path, name: str, *entries) -> str:
    """Zip the files in this order (a zip keeps its entries' order) and return its path."""
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for entry in entries:
            zf.write(entry, entry.name)
    return path


# -- the name: one place parses it ------------------------------------------------------------------------------


def test_a_name_parses_to_the_one_descriptor_whose_pattern_matches_it():
    parsed = naming.parse_file_name(
        "customers_export_1.csv",
        convention=naming.PATTERNS,
        known_types={"SHOP_CUSTOMERS", "SHOP_ORDERS"},
        patterns={"SHOP_CUSTOMERS": "customers_export*.csv", "SHOP_ORDERS": "orders_export*.csv"},
    )

    assert (parsed.convention, parsed.type_code, parsed.mode, parsed.order_key, parsed.sequence) == (
        "patterns",
        "SHOP_CUSTOMERS",
        "DELTA",
        "",
        None,
    )


@pytest.mark.parametrize(
    "name, patterns, message",
    [
        (
            "clients.csv",
            {"SHOP_ORDERS": "orders_export*.csv", "SHOP_CUSTOMERS": "customers_export*.csv"},
            "clients.csv: matches none of the expected file patterns: "
            "customers_export*.csv (SHOP_CUSTOMERS), orders_export*.csv (SHOP_ORDERS)",
        ),
        (
            "customers_export.csv",
            {"SHOP_CUSTOMERS": "customers_export*.csv", "SHOP_ANY": "*.csv"},
            "customers_export.csv: matches the file patterns of several descriptors "
            "(*.csv (SHOP_ANY), customers_export*.csv (SHOP_CUSTOMERS)): make the patterns tell them apart",
        ),
    ],
    ids=["no pattern matches", "two patterns match"],
)
def test_a_name_is_refused_unless_exactly_one_pattern_matches_it(name, patterns, message):
    with pytest.raises(FileNameError) as refused:
        naming.parse_patterns(name, patterns=patterns)

    assert str(refused.value) == message


def test_a_connection_with_no_file_pattern_says_so():
    with pytest.raises(FileNameError, match="no descriptor of the connection's import groups has a file pattern"):
        naming.parse_file_name("customers.csv", convention=naming.PATTERNS, known_types={"X"}, patterns={"X": ""})


def test_name_match_answers_for_every_convention_without_writing(shop, bspk_connection, kore_connection):
    matched = name_match(name="customers_export_2.csv", connection=shop)
    assert (matched.connection, matched.descriptor.code, matched.mode, matched.order_key) == (
        shop,
        "SHOP_CUSTOMERS",
        "DELTA",
        "",
    )
    group = DataGroup.objects.get(code="shop-import")
    assert name_match(name="customers_export.csv", group=group).connection == shop  # the group's connection
    assert name_match(name="customers_export.csv").connection == shop  # the one connection whose pattern matches

    bspk = name_match(name=bspk_name("SPECIAL-ORDERS"), connection=bspk_connection)
    assert (bspk.descriptor.code, bspk.order_key) == ("SPECIAL-ORDERS", "202611011000")
    kore = name_match(name=kore_name("KS_ORDERS", 7), connection=kore_connection)
    assert (kore.descriptor.code, kore.sequence, kore.mode) == ("KS_ORDERS", 7, "NET")

    with pytest.raises(NameRefused) as refused:
        name_match(name=bspk_name("SPECIAL-ORDERS"), connection=kore_connection)
    assert refused.value.connection == kore_connection
    assert "mode 'csv' is not FULL or NET" in str(refused.value)
    with pytest.raises(NameRefused, match="matches none of the expected file patterns: customers_export"):
        name_match(name="orders_export.csv", connection=shop)
    assert not ImportJob.objects.exists() and not ImportFile.objects.exists()


def test_the_upload_page_expects_a_patterns_connection_s_files_by_their_descriptors_patterns(shop, kore_connection):
    shop_group = DataGroup.objects.get(code="shop-import")
    expected = upload_expected_names(group=shop_group, connection=shop)
    assert [str(e) for e in expected] == ["SHOP_CUSTOMERS (names matching customers_export*.csv)"]
    kore = {
        e.code: e
        for e in upload_expected_names(group=DataGroup.objects.get(code="kore-inbound"), connection=kore_connection)
    }
    assert kore["KS_ORDERS"].example.endswith("_INT1_KS_ORDERS.NET")
    assert "ORDER-STATUS" not in kore  # written for other systems, never imported


# -- the engine, through impex_import ----------------------------------------------------------------------------


def test_a_shop_export_imports_for_its_patterns_connection_which_becomes_its_source(shop, tmp_path):
    code, report = run_import(write_shop_file(tmp_path), connection="shop")

    result = only_file(report)
    assert code == 0, report
    assert (result["status"], result["descriptor"]) == ("imported", "SHOP_CUSTOMERS")
    assert counts(result) == {"created": 3, "updated": 0, "unchanged": 0, "retired": 0, "failed": 2}
    assert [(e["row"], e["column"], e["message"]) for e in result["errors"]] == [
        (3, "Email", "Email is the key: a value is required"),
        (5, "Email", "duplicate key ann@example.com in this file (first at row 2)"),
    ]
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}
    assert list(ImportedFileName.objects.filter(connection=shop).values_list("name", flat=True)) == [
        "customers_export.csv"
    ]


def test_the_same_name_again_is_a_duplicate_and_with_other_content_a_conflict(shop, tmp_path):
    first = write_shop_file(tmp_path, rows=ANN_FIRST)
    assert run_import(first, connection="shop")[0] == 0
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(first, again / first.name)

    code, report = run_import(again / first.name, connection="shop")

    assert code == 0 and only_file(report)["status"] == "duplicate", report
    other = tmp_path / "other"
    other.mkdir()
    code, report = run_import(write_shop_file(other, rows=ANN_SECOND), connection="shop")
    assert code == 1
    assert only_file(report)["status"] == "rejected"
    assert only_file(report)["errors"][0]["message"].startswith(
        "customers_export.csv: a file of this name was imported on "
    )
    # A patterns name has no timestamp or sequence: the sender changes the file's name to send changed data.
    assert only_file(report)["errors"][0]["message"].endswith(
        "with other content: conflict, not imported (send changed data under a new file name)"
    )
    assert last_name() == "First"  # the conflicting file changed nothing


def test_a_name_no_pattern_of_the_connection_matches_is_refused_naming_the_patterns(shop, tmp_path):
    code, report = run_import(write_shop_file(tmp_path, "clients.csv"), connection="shop")

    assert code == 1
    assert only_file(report)["status"] == "rejected"
    assert only_file(report)["errors"][0]["message"] == (
        "clients.csv: matches none of the expected file patterns: customers_export*.csv (SHOP_CUSTOMERS)"
    )
    assert not Customer.objects.exists()


def test_two_descriptors_of_the_connection_matching_one_name_reject_it(shop, tmp_path):
    DataGroup.objects.get(code="shop-import").descriptors.add(shop_descriptor("SHOP_ANY", pattern="*.csv"))

    code, report = run_import(write_shop_file(tmp_path), connection="shop")

    assert code == 1
    assert (
        "matches the file patterns of several descriptors (*.csv (SHOP_ANY), customers_export*.csv"
        in (only_file(report)["errors"][0]["message"])
    )
    assert not Customer.objects.exists()


@pytest.mark.parametrize("order", [("b", "a"), ("a", "b")])
def test_files_of_one_upload_go_in_as_they_arrived_not_by_name(shop, tmp_path, order):
    written = {
        order[0]: write_shop_file(tmp_path, f"customers_export_{order[0]}.csv", rows=ANN_FIRST),
        order[1]: write_shop_file(tmp_path, f"customers_export_{order[1]}.csv", rows=ANN_SECOND),
    }
    archive = zipped(tmp_path, "shop.zip", written[order[0]], written[order[1]])

    code, report = run_import(archive, connection="shop")

    assert code == 0, report
    assert counts(file_named(report, f"customers_export_{order[0]}.csv"))["created"] == 1
    assert counts(file_named(report, f"customers_export_{order[1]}.csv"))["updated"] == 1
    assert last_name() == "Second"  # the second to arrive updated the first's record


def test_paths_given_to_the_command_arrive_in_their_order(shop, tmp_path):
    later, earlier = (
        write_shop_file(tmp_path, "customers_export_a.csv", rows=ANN_SECOND),
        write_shop_file(tmp_path, "customers_export_b.csv", rows=ANN_FIRST),
    )

    assert run_import(earlier, later, connection="shop")[0] == 0

    assert last_name() == "Second"


def test_within_one_upload_precedence_comes_first_then_arrival(shop, tmp_path):
    # A second layout at a lower precedence level goes in first, though it came second in the zip.
    DataGroup.objects.get(code="shop-import").descriptors.add(
        shop_descriptor("SHOP_CONTACTS", pattern="contacts_export*.csv", precedence=5)
    )
    customers = write_shop_file(tmp_path, "customers_export.csv", rows=ANN_SECOND)
    contacts = write_shop_file(tmp_path, "contacts_export.csv", rows=ANN_FIRST)

    code, report = run_import(zipped(tmp_path, "shop.zip", customers, contacts), connection="shop")

    assert code == 0, report
    assert counts(file_named(report, "contacts_export.csv"))["created"] == 1
    assert counts(file_named(report, "customers_export.csv"))["updated"] == 1
    assert last_name() == "Second"


def queued(path, **options) -> int:
    """Queue a job for the file (impex_import --queue) and return its id."""
    code, report = run_import(path, queue=True, **options)
    assert code == 0, report
    return report["job"]


def test_a_later_upload_taken_first_waits_for_the_earlier_one(shop, tmp_path, settings):
    settings.IMPEX_CONNECTION_WAIT_SECONDS = 0  # set aside at once rather than wait in this thread
    first = queued(write_shop_file(tmp_path, "customers_export_1.csv", rows=ANN_FIRST), connection="shop")
    second = queued(write_shop_file(tmp_path, "customers_export_2.csv", rows=ANN_SECOND), connection="shop")

    # A second worker takes the later job first: it goes back to the queue behind the earlier one.
    assert import_job_run(second) == "queued"
    assert ImportJob.objects.get(pk=second).events.filter(message__contains=f"job #{first}").exists()
    assert not Customer.objects.exists()

    assert import_job_run(first) == "completed"
    assert import_job_run(second) == "completed"
    assert last_name() == "Second"  # the later file's values, as they arrived


def test_an_earlier_job_nobody_takes_holds_a_later_one_up_only_for_a_while(shop, tmp_path, settings):
    queued(write_shop_file(tmp_path, "customers_export_1.csv", rows=ANN_FIRST), connection="shop")
    second = queued(write_shop_file(tmp_path, "customers_export_2.csv", rows=ANN_SECOND), connection="shop")
    settings.IMPEX_ARRIVAL_WAIT_SECONDS = 0  # the earlier job has been queued longer than a worker takes

    assert import_job_run(second) == "completed"
    assert last_name() == "Second"


def test_without_a_connection_the_one_whose_pattern_matches_the_name_is_found(shop, tmp_path):
    code, report = run_import(write_shop_file(tmp_path, rows=ANN_FIRST))

    assert code == 0, report
    assert Customer.objects.get().connection == shop


def test_a_name_two_patterns_connections_match_needs_the_connection(shop, tmp_path):
    other = DataGroup.objects.create(code="outlet-import", name="Outlet", direction="import")
    other.descriptors.add(DataDescriptor.objects.get(code="SHOP_CUSTOMERS"))
    connection_save(code="outlet", convention="patterns", groups=["outlet-import"])

    code, report = run_import(write_shop_file(tmp_path, rows=ANN_FIRST))

    assert code == 1
    assert only_file(report)["errors"][0]["message"] == (
        "customers_export.csv: the file patterns of several patterns connections match it (outlet, shop): "
        "pass the connection (--connection)"
    )
    assert run_import(write_shop_file(tmp_path, rows=ANN_FIRST), connection="outlet")[0] == 0
    assert Customer.objects.get().connection.code == "outlet"


def test_a_key_of_several_columns_names_the_empty_one_as_part_of_the_key(kore_connection, tmp_path):
    path = tmp_path / kore_name("KS_PRICES", 1)
    path.write_text("price_list\tsku\tcurrency\tprice\nRETAIL\t\tGBP\t9.99\n", encoding="utf-8")

    code, report = run_import(path, connection="kore-erp")

    assert [(e["column"], e["message"]) for e in only_file(report)["errors"]] == [
        ("sku", "sku is part of the key: a value is required")
    ]


# -- the inbox scan ------------------------------------------------------------------------------------------------


def scan(code: str = "shop") -> tuple[int, dict]:
    """Run impex_scan on one connection; return its exit code and what it says of the connection."""
    out = io.StringIO()
    try:
        call_command("impex_scan", "--connection", code, "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return exc.code, json.loads(out.getvalue().strip().splitlines()[-1])["connections"][0]
    return 0, json.loads(out.getvalue().strip().splitlines()[-1])["connections"][0]


def settled(path, *, age: int):
    """Give a file a modification time age seconds ago: it arrived then and is no longer being written."""
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def test_a_scan_of_a_patterns_inbox_imports_files_in_the_order_they_arrived(shop, tmp_path):
    inbox = inbox_of(shop)
    # The second by name arrived first: it creates the record, the other updates it.
    settled(write_shop_file(inbox, "customers_export_2.csv", rows=ANN_FIRST), age=120)
    settled(write_shop_file(inbox, "customers_export_1.csv", rows=ANN_SECOND), age=60)

    code, result = scan()

    assert code == 0, result
    assert [(f["name"], f["status"]) for f in result["files"]] == [
        ("customers_export_2.csv", "imported"),
        ("customers_export_1.csv", "imported"),
    ]
    assert last_name() == "Second"
    assert Customer.objects.get().connection == shop
    assert sorted(InboxFile.objects.values_list("name", "status")) == [
        ("customers_export_1.csv", "taken"),
        ("customers_export_2.csv", "taken"),
    ]
    assert not list(inbox.glob("customers_export*"))

    settled(write_shop_file(inbox, "customers_export_1.csv", rows=ANN_SECOND), age=60)
    settled(write_shop_file(inbox, "clients.csv", rows=ANN_FIRST), age=60)
    code, again = scan()
    assert code == 1  # a file was rejected
    assert {f["name"]: f["status"] for f in again["files"]} == {
        "customers_export_1.csv": "duplicate",
        "clients.csv": "rejected",
    }
    assert (tmp_path / "impex" / "shop" / "error" / "clients.csv").exists()


# -- impex_connection --convention patterns --groups ------------------------------------------------------------


def connection_json(*args) -> dict:
    out = io.StringIO()
    call_command("impex_connection", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_impex_connection_makes_a_patterns_connection_with_its_import_groups(shop_group):
    made = connection_json("shop", "--convention", "patterns", "--groups", "shop-import")

    assert (made["convention"], made["groups"], made["company"], made["integration"]) == (
        "patterns",
        ["shop-import"],
        "",
        "",
    )
    shop_group.refresh_from_db()
    assert shop_group.connection.code == "shop"
    # An update without --groups keeps them; --groups names all of them.
    assert connection_json("shop", "--interval", "10")["groups"] == ["shop-import"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--groups", "nope"], "--groups: no group is called nope (import groups: "),
        (
            ["--groups", "bare-import"],
            "--groups: No descriptor of bare-import has a file pattern, so no file name could match",
        ),
    ],
    ids=["unknown group", "no patterns"],
)
def test_impex_connection_refuses_a_patterns_connection_without_usable_groups(shop_group, args, message):
    bare = DataGroup.objects.create(code="bare-import", name="No patterns", direction="import")
    bare.descriptors.add(shop_descriptor("SHOP_BARE", pattern=""))

    with pytest.raises(CommandError) as refused:
        call_command("impex_connection", "shop", "--convention", "patterns", *args, stdout=io.StringIO())

    assert message in str(refused.value)
    assert not Connection.objects.filter(code="shop").exists()


def test_impex_connection_refuses_an_export_group_or_another_connections_group(shop, shop_group):
    DataGroup.objects.create(code="shop-out", name="Out", direction="export")
    with pytest.raises(CommandError, match="shop-out is an export group"):
        call_command("impex_connection", "outlet", "--convention", "patterns", "--groups", "shop-out")
    with pytest.raises(CommandError, match="The group shop-import belongs to the connection shop"):
        call_command("impex_connection", "outlet", "--convention", "patterns", "--groups", "shop-import")
    shop_group.refresh_from_db()
    assert shop_group.connection == shop and not Connection.objects.filter(code="outlet").exists()


def test_a_patterns_connection_without_groups_imports_what_names_a_group_and_its_scans_say_why_not(tmp_path):
    group = DataGroup.objects.create(code="webshop-import", name="Webshop", direction="import")
    group.descriptors.add(shop_descriptor("WEBSHOP_CUSTOMERS"))
    created = connection_json("webshop", "--convention", "patterns")
    assert created["groups"] == []

    code, report = run_import(write_shop_file(tmp_path), connection="webshop", group="webshop-import")
    assert code == 0 and only_file(report)["status"] == "imported", report
    assert Customer.objects.filter(connection__code="webshop").exists()

    code, report = run_import(write_shop_file(tmp_path, name="customers_export_2.csv"), connection="webshop")
    assert code == 1
    assert (
        "no descriptor of the connection's import groups has a file pattern"
        in only_file(report)["errors"][0]["message"]
    )


# -- the admin: the connection's form, and the upload --------------------------------------------------------------


def connection_form(**values) -> dict:
    """The admin form of a patterns connection shop, with the given values (groups: a list of group ids)."""
    return {**form_data(code="shop", name="Shop platform", convention="patterns"), **values}


def test_the_admin_saves_a_patterns_connection_without_a_group_but_not_with_a_group_lacking_patterns(
    admin_client, shop_group
):
    bare = DataGroup.objects.create(code="bare-import", name="No patterns", direction="import")
    bare.descriptors.add(shop_descriptor("SHOP_BARE", pattern=""))

    refused = admin_client.post(reverse("admin:impex_connection_add"), connection_form(groups=[bare.pk]))
    assert refused.status_code == 200
    assert "No descriptor of bare-import has a file pattern" in html.unescape(refused.text)
    assert not Connection.objects.exists()

    response = admin_client.post(reverse("admin:impex_connection_add"), connection_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Connection.objects.get(code="shop").import_groups().count() == 0


def test_the_admin_makes_a_patterns_connection_with_its_groups_and_changes_them(admin_client, shop_group):
    page = admin_client.get(reverse("admin:impex_connection_add"))
    text = html.unescape(page.text)
    assert "shop-import: customers_export*.csv (SHOP_CUSTOMERS)" in text
    assert "Import groups" in text and "Not used by Kore or patterns connections." in text

    response = admin_client.post(reverse("admin:impex_connection_add"), connection_form(groups=[shop_group.pk]))

    assert response.status_code == 302, response.context["adminform"].form.errors
    conn = Connection.objects.get(code="shop")
    assert list(conn.import_groups()) == [shop_group]
    change = reverse("admin:impex_connection_change", args=[conn.pk])
    assert admin_client.get(change).context["adminform"].form["groups"].value() == [shop_group.pk]

    assert admin_client.post(change, connection_form()).status_code == 302  # no group left: the group is let go
    shop_group.refresh_from_db()
    assert shop_group.connection is None
    other = DataGroup.objects.create(code="shop-2", name="Shop 2", direction="import")
    other.descriptors.add(DataDescriptor.objects.get(code="SHOP_CUSTOMERS"))
    assert admin_client.post(change, connection_form(groups=[other.pk], contacts="ops@shop.example")).status_code == 302
    assert list(conn.import_groups()) == [other]
    shop_group.refresh_from_db()
    conn.refresh_from_db()
    assert shop_group.connection is None and conn.contacts == "ops@shop.example"


def test_the_admin_refuses_another_connections_group(admin_client, shop):
    group = DataGroup.objects.get(code="shop-import")
    response = admin_client.post(
        reverse("admin:impex_connection_add"), connection_form(code="outlet", groups=[group.pk])
    )

    assert response.context["adminform"].form.errors["groups"] == [
        "The group shop-import belongs to the connection shop: a group's files come from one connection. "
        "Take it off that connection first."
    ]


def test_choosing_a_connections_groups_needs_the_permission_to_change_groups(
    client, django_user_model, kore_connection
):
    # A group's connection is the group's own field: who may change connections only sees the groups.
    client.force_login(staff_user(django_user_model, "clerk", "impex.view_connection", "impex.change_connection"))
    url = reverse("admin:impex_connection_change", args=[kore_connection.pk])
    bspk_group = DataGroup.objects.get(code="bspk-special-orders")
    page = client.get(url)
    assert "groups" not in page.context["adminform"].form.fields
    assert '<div class="readonly">-</div>' in re.sub(r"\s+", " ", page.text.split('field-groups">', 1)[1])[:400]

    response = client.post(
        url, {**browser_form_data(client, url), "groups": [bspk_group.pk], "contacts": "ops@x.example"}
    )

    assert response.status_code == 302
    bspk_group.refresh_from_db()
    kore_connection.refresh_from_db()
    assert bspk_group.connection is None and kore_connection.contacts == "ops@x.example"


@pytest.mark.parametrize("choose_connection", [False, True], ids=["group only", "connection and group"])
def test_an_upload_to_the_shop_group_imports_for_the_patterns_connection(
    admin_client, shop, tmp_path, choose_connection
):
    group = DataGroup.objects.get(code="shop-import")
    data = {
        "group": group.pk,
        "file": SimpleUploadedFile("customers_export.csv", write_shop_file(tmp_path).read_bytes()),
    }
    if choose_connection:
        data["connection"] = shop.pk

    response = admin_client.post(reverse("admin:impex_importjob_upload"), data)
    assert response.status_code == 302
    job = ImportJob.objects.get()
    import_job_run(job.pk)

    f = ImportFile.objects.get(job=job)
    assert (f.status, f.connection, f.descriptor.code) == ("imported", shop, "SHOP_CUSTOMERS")
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}
    admin_client.post(
        reverse("admin:impex_importjob_upload"),
        data | {"file": SimpleUploadedFile("customers_export.csv", write_shop_file(tmp_path).read_bytes())},
    )
    second = ImportJob.objects.exclude(pk=job.pk).get()
    import_job_run(second.pk)
    assert ImportFile.objects.get(job=second).status == "duplicate"
