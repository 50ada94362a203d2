"""Upload and import in the admin: the upload page, the job page, downloads, dry runs run for real, re-runs."""

import csv
import html
import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from impex.models import DataDescriptor, DataGroup, ImportedFileName, ImportFile, ImportJob, RowError
from impex.tasks import import_job_run
from impex.tests.helpers import bspk_name, special_order_row, table_text
from syncapp.models import SpecialOrder, SpecialOrderEvent, SpecialOrderLineItem
from tests.admin_helpers import staff_user

pytestmark = pytest.mark.django_db

UPLOAD = reverse("admin:impex_importjob_upload")


def job_url(job, *parts):
    """The job page, or one of its own URLs."""
    if not parts:
        return reverse("admin:impex_importjob_change", args=[job.pk])
    if parts[0] == "file":
        return reverse("admin:impex_importjob_file", args=[job.pk, parts[1].pk, parts[2]])
    return reverse(f"admin:impex_importjob_{parts[0]}", args=[job.pk])


def bspk_csv(rows: list[dict]) -> bytes:
    return table_text(rows, delimiter=",").encode("utf-8")


def bspk_zip(*, timestamp="202611011000", bad_lines=False, extra: dict | None = None) -> bytes:
    """A zip of the three BSPK files of two special orders (with two refused line items if bad_lines)."""
    orders = [special_order_row("SO-1", description="Ring resize"), special_order_row("SO-2", order_type="CUSTOM")]
    lines = [
        {"line_item_id": "L-1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"},
        {"line_item_id": "L-2", "special_order_id": "SO-2", "product_name": "Chain", "quantity": "2"},
    ]
    if bad_lines:
        lines += [
            {"line_item_id": "L-3", "special_order_id": "SO-404", "product_name": "Lost", "quantity": "1"},
            {"line_item_id": "L-4", "special_order_id": "SO-1", "product_name": "Clasp", "quantity": "zero"},
        ]
    events = [{"event_id": "E-1", "special_order_id": "SO-1", "event_type": "CREATED", "event_at": "2026-11-01T10:00Z"}]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(bspk_name("SPECIAL-ORDERS", timestamp), bspk_csv(orders))
        zf.writestr(bspk_name("SPECIAL-ORDER-LINE-ITEMS", timestamp), bspk_csv(lines))
        zf.writestr(bspk_name("SPECIAL-ORDER-EVENTS", timestamp), bspk_csv(events))
        zf.writestr("__MACOSX/._" + bspk_name("SPECIAL-ORDERS", timestamp), b"\x00\x05junk")
        zf.writestr(".DS_Store", b"\x00junk")
        for name, content in (extra or {}).items():
            zf.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def group():
    return DataGroup.objects.get(code="bspk-special-orders")


@pytest.fixture
def importer(client, django_user_model):
    """A staff user who may view jobs and run imports, logged in."""
    user = staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import")
    client.force_login(user)
    return user


def upload(client, group, content: bytes, *, name="upload.zip", dry_run=False, connection=None):
    data = {"group": group.pk, "file": SimpleUploadedFile(name, content)}
    if dry_run:
        data["dry_run"] = "on"
    if connection is not None:
        data["connection"] = connection.pk
    return client.post(UPLOAD, data)


def uploaded_job(response) -> ImportJob:
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ImportJob.objects.get()
    assert response["Location"] == job_url(job)
    return job


def test_upload_page_offers_import_groups_and_a_dry_run(client, importer, group, bspk_connection):
    page = client.get(UPLOAD + f"?group={group.pk}")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Upload and import" in text and "Dry run" in text
    form = page.context["form"]
    assert form["group"].value() == str(group.pk)
    assert group in form.fields["group"].queryset
    assert not form.fields["group"].queryset.filter(direction="export").exists()


def test_upload_is_queued_not_run_and_the_job_imports_the_zip_in_order(client, importer, group, bspk_connection):
    job = uploaded_job(upload(client, group, bspk_zip()))
    # The web request stored the upload and queued the job: nothing is imported until a worker runs it.
    assert job.status == "queued" and job.source == "admin" and job.created_by == "importer"
    assert job.group == group and not job.dry_run
    assert SpecialOrder.objects.count() == 0
    import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == "completed", job.error
    data_files = {f.name: f for f in ImportFile.objects.filter(job=job, kind="data")}
    # The macOS metadata of the zip is not a file of the job.
    assert sorted(data_files) == sorted(
        bspk_name(t) for t in ("SPECIAL-ORDERS", "SPECIAL-ORDER-LINE-ITEMS", "SPECIAL-ORDER-EVENTS")
    )
    assert SpecialOrder.objects.count() == 2
    assert SpecialOrderLineItem.objects.count() == 2
    assert SpecialOrderEvent.objects.count() == 1
    page = client.get(job_url(job))
    assert page.status_code == 200
    progress = page.context["progress"]
    assert progress["finished"] and progress["files_done"] == progress["files_total"] == 3
    assert progress["rows_done"] == progress["rows_total"] == 5
    orders = next(row for row in page.context["file_rows"] if row["file"].name == bspk_name("SPECIAL-ORDERS"))
    assert orders["counts"] == [2, 0, 0, 0, 0] and orders["status_label"] == "Imported"


def test_progress_url_answers_json_for_the_live_page(client, importer, group, bspk_connection):
    job = uploaded_job(upload(client, group, bspk_zip()))
    before = client.get(job_url(job, "progress")).json()
    assert before["status"] == "queued" and not before["finished"]
    assert before["files_total"] == 0 and before["unpacking"]
    import_job_run(job.pk)
    after = client.get(job_url(job, "progress")).json()
    assert after["finished"] and after["status_label"] == "Completed"
    assert (after["shown_status"], after["status_tone"]) == ("completed", "ok")
    assert (after["files_done"], after["files_total"], after["rows_done"], after["rows_total"]) == (3, 3, 5, 5)
    assert {f["name"] for f in after["files"] if f["kind"] == "data"} == {
        bspk_name(t) for t in ("SPECIAL-ORDERS", "SPECIAL-ORDER-LINE-ITEMS", "SPECIAL-ORDER-EVENTS")
    }


def test_single_file_upload(client, importer, group, bspk_connection):
    name = bspk_name("SPECIAL-ORDERS")
    job = uploaded_job(upload(client, group, bspk_csv([special_order_row("SO-9")]), name=name))
    import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == "completed"
    assert list(SpecialOrder.objects.values_list("special_order_id", flat=True)) == ["SO-9"]


def test_upload_over_the_limit_is_a_form_error_and_stores_nothing(client, importer, group, settings, impex_root):
    settings.IMPEX_MAX_UPLOAD_BYTES = 100
    response = upload(client, group, bspk_zip())
    assert response.status_code == 200
    assert "an upload may be up to 100" in response.content.decode()
    assert ImportJob.objects.count() == 0
    assert not (impex_root / "jobs").exists()


def test_rows_refused_are_listed_filtered_and_downloaded_for_a_fixed_upload(client, importer, group, bspk_connection):
    job = uploaded_job(upload(client, group, bspk_zip(bad_lines=True)))
    import_job_run(job.pk)
    lines = ImportFile.objects.get(job=job, name=bspk_name("SPECIAL-ORDER-LINE-ITEMS"))
    assert (lines.created, lines.failed) == (2, 2)
    page = client.get(job_url(job))
    errors = list(page.context["errors_page"])
    assert [(e.row, e.column) for e in errors] == [(4, "special_order_id"), (5, "quantity")]
    filtered = client.get(job_url(job) + "?e_column=quantity")
    assert [e.row for e in filtered.context["errors_page"]] == [5]
    searched = client.get(job_url(job) + "?e_q=SO-404")
    assert [e.row for e in searched.context["errors_page"]] == [4]
    assert "download rejected rows" in page.content.decode()

    download = client.get(job_url(job, "file", lines, "rejected-rows"))
    assert download.status_code == 200
    filename = download["Content-Disposition"].split("filename=")[1].strip('"')
    # A new name, so that the fixed file is imported as a new file of the connection.
    assert filename != lines.name and filename.startswith("SPECIAL-ORDER-LINE-ITEMS_V2_Acme_")
    content = b"".join(download.streaming_content).decode("utf-8")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["line_item_id", "special_order_id", "product_name", "quantity", "errors"]
    assert [r[0] for r in rows[1:]] == ["L-3", "L-4"]
    assert "SO-404" in rows[1][4] and "quantity" in rows[2][4]

    # The sender fixes the rows and uploads the file again as it is, errors column and all.
    fixed = content.replace("SO-404", "SO-2").replace("zero", "3")
    ImportJob.objects.all().delete()
    again = uploaded_job(upload(client, group, fixed.encode("utf-8"), name=filename))
    import_job_run(again.pk)
    refixed = ImportFile.objects.get(job=again)
    assert (refixed.status, refixed.created, refixed.failed) == ("imported", 2, 0), refixed.message
    assert SpecialOrderLineItem.objects.count() == 4


def test_original_file_and_rejected_reason_download(client, importer, group, bspk_connection, tmp_path):
    # The upload page refuses a zip holding a bad name: such a job comes from the command line (or an inbox).
    bad_name = "SPECIAL-ORDERS_V9_Acme_202611011000.csv"
    (tmp_path / "delivery.zip").write_bytes(bspk_zip(extra={bad_name: b"x\n"}))
    call_command("impex_import", str(tmp_path / "delivery.zip"), group=group.code, queue=True)
    job = ImportJob.objects.get()
    import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    rejected = ImportFile.objects.get(job=job, name=bad_name)
    reason = client.get(job_url(job, "file", rejected, "reason"))
    assert reason.status_code == 200 and "version 'V9' is not supported" in reason.content.decode()
    orders = ImportFile.objects.get(job=job, name=bspk_name("SPECIAL-ORDERS"))
    original = client.get(job_url(job, "file", orders, "original"))
    assert b"".join(original.streaming_content).startswith(b"special_order_id,")


def test_dry_run_then_run_it_for_real(client, importer, group, bspk_connection):
    dry = uploaded_job(upload(client, group, bspk_zip(), dry_run=True))
    assert dry.dry_run
    import_job_run(dry.pk)
    dry.refresh_from_db()
    assert SpecialOrder.objects.count() == 0
    page = client.get(job_url(dry))
    assert page.context["progress"]["status_label"].startswith("dry run")
    assert page.context["may_run_for_real"]
    assert "Run it for real" in page.content.decode()

    response = client.post(job_url(dry, "run_for_real"))
    real = ImportJob.objects.exclude(pk=dry.pk).get()
    assert response.status_code == 302 and response["Location"] == job_url(real)
    assert real.dry_run_of == dry and not real.dry_run and real.status == "queued"
    # A second click gets the same run, not a second import.
    client.post(job_url(dry, "run_for_real"))
    assert ImportJob.objects.count() == 2
    import_job_run(real.pk)
    real.refresh_from_db()
    assert real.status == "completed", real.error
    assert SpecialOrder.objects.count() == 2 and SpecialOrderLineItem.objects.count() == 2


def test_failed_job_can_be_run_again(client, importer, group, tmp_path):
    # No connection has the company Acme yet: every file is rejected and the job fails (the upload page would refuse
    # the zip, so the job comes from the command line).
    (tmp_path / "delivery.zip").write_bytes(bspk_zip())
    call_command("impex_import", str(tmp_path / "delivery.zip"), group=group.code, queue=True)
    job = ImportJob.objects.get()
    import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    page = client.get(job_url(job))
    assert page.context["may_run_again"]
    from impex.models import Connection

    Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    response = client.post(job_url(job, "run_again"))
    again = ImportJob.objects.exclude(pk=job.pk).get()
    assert response["Location"] == job_url(again)
    import_job_run(again.pk)
    again.refresh_from_db()
    assert again.status == "completed", again.error
    assert SpecialOrder.objects.count() == 2


def test_without_run_import_uploads_and_runs_are_refused(client, django_user_model, group, bspk_connection, impex_root):
    importer = staff_user(django_user_model, "importer", "impex.view_importjob", "impex.run_import")
    client.force_login(importer)
    dry = uploaded_job(upload(client, group, bspk_zip(), dry_run=True))
    import_job_run(dry.pk)
    errors_before = RowError.objects.count()
    viewer = staff_user(django_user_model, "viewer", "impex.view_importjob")
    client.force_login(viewer)
    assert client.get(UPLOAD).status_code == 403
    assert upload(client, group, bspk_zip()).status_code == 403
    assert client.post(job_url(dry, "run_for_real")).status_code == 403
    assert client.post(job_url(dry, "run_again")).status_code == 403
    assert ImportJob.objects.count() == 1
    assert RowError.objects.count() == errors_before and SpecialOrder.objects.count() == 0
    page = client.get(job_url(dry)).content.decode()
    assert "Run it for real" not in page and "Upload and import" not in page
    client.logout()
    anonymous = client.get(UPLOAD)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_import_groups_and_connections_link_to_the_upload_page(client, django_user_model, group, bspk_connection):
    from impex.models import Connection

    user = staff_user(
        django_user_model, "importer", "impex.view_datagroup", "impex.view_connection", "impex.run_import"
    )
    client.force_login(user)
    group_page = client.get(reverse("admin:impex_datagroup_change", args=[group.pk])).content.decode()
    assert f'href="{UPLOAD}?group={group.pk}"' in group_page and "Upload and import" in group_page
    connection_page = client.get(reverse("admin:impex_connection_change", args=[bspk_connection.pk])).content.decode()
    assert f'href="{UPLOAD}?connection={bspk_connection.pk}"' in connection_page
    export_group = DataGroup.objects.filter(direction="export").first() or DataGroup.objects.create(
        code="out", name="Out", direction="export"
    )
    assert UPLOAD not in client.get(reverse("admin:impex_datagroup_change", args=[export_group.pk])).content.decode()
    prefilled = client.get(f"{UPLOAD}?group={group.pk}&connection={bspk_connection.pk}")
    assert prefilled.context["form"]["connection"].value() == str(bspk_connection.pk)

    viewer = staff_user(django_user_model, "viewer", "impex.view_datagroup", "impex.view_connection")
    client.force_login(viewer)
    assert UPLOAD not in client.get(reverse("admin:impex_datagroup_change", args=[group.pk])).content.decode()
    assert (
        UPLOAD
        not in client.get(reverse("admin:impex_connection_change", args=[Connection.objects.get().pk])).content.decode()
    )


def test_a_file_no_longer_kept_is_said_so_not_a_server_error(client, importer, group, bspk_connection):
    job = uploaded_job(upload(client, group, bspk_zip()))
    import_job_run(job.pk)
    archive = ImportFile.objects.get(job=job, kind="archive")
    orders = ImportFile.objects.get(job=job, name=bspk_name("SPECIAL-ORDERS"))
    ImportFile.objects.filter(pk=orders.pk).update(path="")
    for f in (archive, orders):
        response = client.get(job_url(job, "file", f, "original"), follow=True)
        assert response.status_code == 200
        assert "is no longer kept" in response.content.decode()
    assert client.get(job_url(job, "file", orders, "nonsense")).status_code == 404
    assert client.get(job_url(job, "file", orders, "rejected-rows"), follow=True).status_code == 200


# The upload page checks what it can before a job exists: refusals are form errors, and nothing is created.


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def refused(response) -> list[str]:
    """The file field's errors of a refused upload, after checking that they are on the page and nothing exists."""
    assert response.status_code == 200, response.get("Location")
    errors = list(response.context["form"].errors.get("file", []))
    page = html.unescape(response.content.decode())
    assert errors and all(error in page for error in errors)
    assert '<label for="id_file">File or zip:</label>' in page  # the field keeps its label above its errors
    assert not ImportJob.objects.exists() and not ImportFile.objects.exists()
    assert not ImportedFileName.objects.exists() and not RowError.objects.exists()
    return errors


ORDERS = "SPECIAL-ORDERS_V2_Acme_202611010900.csv"


def test_a_text_file_renamed_zip_is_refused_as_not_a_zip(client, importer, group, bspk_connection, impex_root):
    (error,) = refused(upload(client, group, b"special_order_id,store_id\nSO-1,S1\n", name="delivery.zip"))
    assert error.startswith("delivery.zip is not a zip archive")
    assert not (impex_root / "jobs").exists()


@pytest.mark.parametrize(
    "entries",
    [{}, {"__MACOSX/._x.csv": b"\x00", ".DS_Store": b"\x00"}, {"folder/": b""}],
    ids=["no-entries", "only-mac-metadata", "only-a-folder"],
)
def test_a_zip_holding_no_files_is_refused(client, importer, group, bspk_connection, entries):
    assert refused(upload(client, group, zip_of(entries), name="delivery.zip")) == ["delivery.zip holds no files."]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("../evil.csv", 'delivery.zip: the entry "../evil.csv" has a path that leaves its folder ("..").'),
        ("/etc/evil.csv", 'delivery.zip: the entry "/etc/evil.csv" has an absolute path.'),
    ],
)
def test_a_zip_with_an_unsafe_entry_is_refused(client, importer, group, bspk_connection, entry, message):
    assert refused(upload(client, group, zip_of({entry: b"x"}), name="delivery.zip")) == [message]


def test_a_zip_bomb_is_refused_by_its_declared_sizes(client, importer, group, bspk_connection, settings):
    settings.IMPEX_MAX_FILE_BYTES = 1_000_000
    (error,) = refused(upload(client, group, zip_of({ORDERS: b"a" * 5_000_000}), name="delivery.zip"))
    assert error.startswith(f'delivery.zip: the entry "{ORDERS}" is 5,000,000 bytes, more than the limit of 1,000,000')


def test_a_damaged_zip_is_refused(client, importer, group, bspk_connection):
    (error,) = refused(upload(client, group, bspk_zip()[:200], name="delivery.zip"))
    assert error.startswith("delivery.zip: the zip archive is damaged or truncated")


def test_a_bspk_name_sent_with_a_kore_connection_names_both_conventions(
    client, importer, group, bspk_connection, kore_connection
):
    response = upload(client, group, bspk_csv([special_order_row("SO-1")]), name=ORDERS, connection=kore_connection)
    assert refused(response) == [f"{ORDERS} is a BSPK name, but connection kore-erp uses the Kore convention"]


def test_a_kore_name_in_a_zip_sent_with_a_bspk_connection_names_both_conventions(
    client, importer, group, bspk_connection
):
    content = zip_of({ORDERS: b"x", "DT_0000001_INT1_KS_ORDERS.NET": b"x"})
    assert refused(upload(client, group, content, connection=bspk_connection)) == [
        "DT_0000001_INT1_KS_ORDERS.NET is a Kore name, but connection acme-pos uses the BSPK convention"
    ]


@pytest.mark.parametrize(
    "chosen, message",
    [
        (False, "SPECIAL-ORDERS_V2_Globex_202611010900.csv: no connection has the company 'Globex'"),
        (
            True,
            "SPECIAL-ORDERS_V2_Globex_202611010900.csv: company 'Globex' does not match the connection's company "
            "'Acme'",
        ),
    ],
    ids=["found-from-the-name", "connection-chosen"],
)
def test_a_name_of_another_company_is_refused(client, importer, group, bspk_connection, chosen, message):
    name = "SPECIAL-ORDERS_V2_Globex_202611010900.csv"
    response = upload(client, group, b"x", name=name, connection=bspk_connection if chosen else None)
    (error,) = refused(response)
    assert error.startswith(message)


def test_a_name_of_another_integration_is_refused(client, importer, kore_connection):
    kore = DataGroup.objects.get(code="kore-inbound")
    name = "DT_0000001_OTHER_KS_ORDERS.NET"
    (error,) = refused(upload(client, kore, b"x", name=name, connection=kore_connection))
    assert error == f"{name}: integration 'OTHER' does not match the connection's integration 'INT1'"


def test_a_name_of_an_unknown_type_is_refused(client, importer, group, bspk_connection):
    name = "SPECIAL-THINGS_V2_Acme_202611010900.csv"
    (error,) = refused(upload(client, group, zip_of({ORDERS: b"x", name: b"x"})))
    assert error.startswith(f"{name}: unknown type 'SPECIAL-THINGS' (known: SPECIAL-ORDER-EVENTS, ")


def test_a_file_of_a_type_the_group_does_not_hold_is_refused(client, importer, bspk_connection):
    orders_only = DataGroup.objects.create(code="orders-only", name="Orders only")
    orders_only.descriptors.add(DataDescriptor.objects.get(code="SPECIAL-ORDERS"))
    errors = refused(upload(client, orders_only, bspk_zip()))
    assert errors == [
        f"{bspk_name(kind)}: no descriptor of the import group orders-only claims this file: it is {kind}, "
        "and the group holds SPECIAL-ORDERS"
        for kind in ("SPECIAL-ORDER-LINE-ITEMS", "SPECIAL-ORDER-EVENTS")
    ]
    assert SpecialOrder.objects.count() == 0


def test_a_name_no_descriptor_of_the_group_claims_says_what_the_group_expects(
    client, importer, kore_connection, settings
):
    settings.TIME_ZONE = "UTC"
    kore = DataGroup.objects.get(code="kore-inbound")
    (error,) = refused(upload(client, kore, b"email\n", name="customers_export_1.csv", connection=kore_connection))
    assert error.startswith(
        "no descriptor of group kore-inbound claims customers_export_1.csv; it expects: "
        "KS_CUSTOMERS (DT_0000001_INT1_KS_CUSTOMERS.NET), KS_PRODUCTS (DT_0000001_INT1_KS_PRODUCTS.NET), "
    )
    assert "KS_SHIPMENTS (DT_0000001_INT1_KS_SHIPMENTS.NET)" in error


def test_a_zip_of_many_bad_names_lists_the_first_ten(client, importer, group, bspk_connection):
    content = zip_of({f"notes-{n:02}.txt": b"x" for n in range(25)})
    errors = refused(upload(client, group, content))
    assert len(errors) == 11 and errors[-1] == "and 15 more files like these."
    assert errors[0].startswith("no descriptor of group bspk-special-orders claims notes-00.txt; it expects: ")


def test_a_good_zip_is_still_stored_and_queued_after_the_checks(client, importer, group, bspk_connection):
    job = uploaded_job(upload(client, group, bspk_zip(), connection=bspk_connection))
    assert job.status == "queued" and ImportFile.objects.filter(job=job).count() == 1
    assert SpecialOrder.objects.count() == 0


def test_the_page_shows_the_names_each_group_expects_per_connection(client, importer, group, bspk_connection):
    page = client.get(UPLOAD)
    expectations = json.loads(re.search(r'id="upload-expectations"[^>]*>(.*?)</script>', page.text, re.S).group(1))
    anyone, acme = expectations[str(group.pk)][""], expectations[str(group.pk)][str(bspk_connection.pk)]
    assert [e["code"] for e in anyone["names"]] == [
        "SPECIAL-ORDERS",
        "SPECIAL-ORDER-LINE-ITEMS",
        "SPECIAL-ORDER-EVENTS",
    ]
    assert (anyone["from"], acme["from"]) == ("", "acme-pos")
    assert re.fullmatch(r"SPECIAL-ORDERS_V2_CompanyName_\d{12}\.csv", anyone["names"][0]["example"])
    assert re.fullmatch(r"SPECIAL-ORDERS_V2_Acme_\d{12}\.csv", acme["names"][0]["example"])
    assert 'id="upload-expected"' in page.text


def test_a_third_party_file_is_matched_by_its_descriptor_s_pattern_and_others_are_told_the_pattern(client, importer):
    shop = DataGroup.objects.create(code="shop", name="Shop")
    shop.descriptors.add(
        DataDescriptor.objects.create(code="SHOP_CUSTOMERS", entity="customer", file_pattern="customers_export*.csv")
    )
    (error,) = refused(upload(client, shop, b"Email\n", name="orders_export_1.csv"))
    assert error == (
        "no descriptor of group shop claims orders_export_1.csv; it expects: "
        "SHOP_CUSTOMERS (names matching customers_export*.csv)"
    )
    job = uploaded_job(upload(client, shop, b"Email\na@example.com\n", name="customers_export_1.csv"))
    assert job.status == "queued"
    page = client.get(UPLOAD)
    expectations = json.loads(re.search(r'id="upload-expectations"[^>]*>(.*?)</script>', page.text, re.S).group(1))
    assert expectations[str(shop.pk)][""]["names"] == [
        {
            "code": "SHOP_CUSTOMERS",
            "example": "",
            "pattern": "customers_export*.csv",
            "text": "SHOP_CUSTOMERS (names matching customers_export*.csv)",
        }
    ]


def test_a_name_near_its_convention_is_told_the_part_that_is_wrong(client, importer, group, bspk_connection):
    name = "SPECIAL-ORDERS_V2_Acme_2026110109.csv"
    (error,) = refused(upload(client, group, b"x", name=name, connection=bspk_connection))
    assert error == f"{name}: timestamp '2026110109' is not YYYYMMDDHHMM"


def test_a_zip_spooled_to_disk_is_checked_where_it_lies(client, importer, group, bspk_connection, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # past this, Django writes the upload to a temporary file
    rows = [special_order_row(f"SO-{n}") for n in range(50)]
    content = zip_of({ORDERS: bspk_csv(rows), "SPECIAL-ORDERS_V3_Acme_202611010900.csv": bspk_csv(rows)})
    assert len(content) > 100
    (error,) = refused(upload(client, group, content))
    assert error == "SPECIAL-ORDERS_V3_Acme_202611010900.csv: version 'V3' is not supported (expected V2)"
    job = uploaded_job(upload(client, group, zip_of({ORDERS: bspk_csv(rows)})))
    assert job.status == "queued"
