"""Upload and import in the admin: the upload page, the job page, downloads, dry runs run for real, re-runs."""

import csv
import html
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from impex.models import DataGroup, ImportFile, ImportJob, RowError
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


def test_original_file_and_rejected_reason_download(client, importer, group, bspk_connection):
    bad_name = "SPECIAL-ORDERS_V9_Acme_202611011000.csv"
    job = uploaded_job(upload(client, group, bspk_zip(extra={bad_name: b"x\n"})))
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


@pytest.mark.parametrize(
    "entry, message",
    [
        ("../evil.csv", "leaves"),
        ("bomb", "limit"),
    ],
)
def test_unsafe_zips_fail_the_job_with_their_reason(client, importer, group, bspk_connection, settings, entry, message):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if entry == "bomb":
            settings.IMPEX_MAX_FILE_BYTES = 1_000_000
            zf.writestr(bspk_name("SPECIAL-ORDERS"), b"a" * 5_000_000)
        else:
            zf.writestr(entry, b"x")
    job = uploaded_job(upload(client, group, buffer.getvalue()))
    import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    archive = ImportFile.objects.get(job=job, kind="archive")
    assert archive.status == "rejected" and message in archive.message
    page = html.unescape(client.get(job_url(job)).content.decode())
    assert archive.message in page
    assert SpecialOrder.objects.count() == 0


def test_failed_job_can_be_run_again(client, importer, group, settings):
    # No connection has the company Acme yet: every file is rejected and the job fails.
    job = uploaded_job(upload(client, group, bspk_zip()))
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


def test_file_of_a_type_the_group_does_not_hold_is_listed_as_such(client, importer, bspk_connection):
    orders_only = DataGroup.objects.create(code="orders-only", name="Orders only")
    from impex.models import DataDescriptor

    orders_only.descriptors.add(DataDescriptor.objects.get(code="SPECIAL-ORDERS"))
    job = uploaded_job(upload(client, orders_only, bspk_zip()))
    import_job_run(job.pk)
    events = ImportFile.objects.get(job=job, name=bspk_name("SPECIAL-ORDER-EVENTS"))
    assert events.status == "rejected"
    assert "no descriptor of the import group orders-only claims this file: it is SPECIAL-ORDER-EVENTS" in (
        events.message
    )
    assert SpecialOrder.objects.count() == 2


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
