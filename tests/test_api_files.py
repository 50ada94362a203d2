"""POST /api/files/ and GET /api/jobs/{id}/ (SPEC section 10): a connection pushes a file or zip over HTTP, which is
checked, stored and queued like an upload, and follows its job, whose files read as `impex_import --json` says."""

import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from impex.models import Connection, DataDescriptor, DataGroup, ImportedFileName, ImportFile, ImportJob
from impex.services.tokens import api_token_issue
from impex.tests.helpers import bspk_name, customer_row, kore_name, special_order_row, table_text
from syncapp.models import Customer
from tests.raw_http import multipart, send

pytestmark = pytest.mark.django_db

FILES = "/api/files/"
MB = 1024**2
NAME = kore_name("KS_CUSTOMERS", 1)
THREE = [customer_row(f"C-{n}", first_name=f"First {n}") for n in range(3)]


def tsv(rows: list[dict]) -> bytes:
    return table_text(rows, delimiter="\t").encode()


def a_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


@pytest.fixture
def token(kore_connection) -> str:
    return api_token_issue(connection=kore_connection, by="test")


@pytest.fixture
def other_token(db) -> str:
    other = Connection.objects.create(code="kore-two", name="Kore two", convention="kore", integration_id="INT2")
    return api_token_issue(connection=other, by="test")


def push(client, token: str | None, content: bytes, *, name: str = NAME, **fields):
    data = {"file": SimpleUploadedFile(name, content), **fields}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(FILES, data, **headers)


def job_of(client, token: str, job_id) -> dict:
    response = client.get(f"/api/jobs/{job_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


def run(job_id: int) -> dict:
    """Run the job as a worker does (impex_job) and return its JSON."""
    out = io.StringIO()
    try:
        call_command("impex_job", str(job_id), "--json", stdout=out, stderr=io.StringIO())
    except SystemExit:
        pass  # exit 1: a file was rejected; the JSON says which
    return json.loads(out.getvalue().strip().splitlines()[-1])


def records() -> tuple[int, int, int, int]:
    """What a push may leave: jobs, their files, the ledger's names, and files kept in the hub's storage."""
    stored = [p for p in Path(settings.IMPEX_ROOT).rglob("*") if p.is_file()]
    return ImportJob.objects.count(), ImportFile.objects.count(), ImportedFileName.objects.count(), len(stored)


def accepted(response) -> int:
    assert response.status_code == 202, response.content
    body = response.json()
    assert list(body) == ["job"]
    return body["job"]


# -- the happy path -------------------------------------------------------------------------------------------------


def test_a_pushed_file_is_queued_for_the_token_s_connection_and_its_job_reads_as_impex_job_says(
    client, token, kore_connection
):
    job_id = accepted(push(client, token, tsv(THREE)))

    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.source, job.connection, job.group, job.dry_run) == (
        "queued",
        "api",
        kore_connection,
        None,
        False,
    )
    assert job.created_by.startswith("API token ")
    queued = job_of(client, token, job_id)
    assert queued["status"] == "queued" and queued["finished_at"] is None
    assert [(f["name"], f["status"]) for f in queued["files"]] == [(NAME, "queued")]

    ran = run(job_id)

    done = job_of(client, token, job_id)
    assert done["files"] == ran["files"]  # exactly impex_job's (and impex_import's) JSON
    assert {k: done[k] for k in ("job", "status", "dry_run")} == {
        "job": job_id,
        "status": "completed",
        "dry_run": False,
    }
    assert done["created_at"] and done["finished_at"]
    assert done["files"] == [
        {
            "name": NAME,
            "descriptor": "KS_CUSTOMERS",
            "status": "imported",
            "created": 3,
            "updated": 0,
            "unchanged": 0,
            "retired": 0,
            "failed": 0,
            "errors": [],
        }
    ]
    assert sorted(Customer.objects.values_list("customer_id", "first_name", "connection__code")) == [
        ("C-0", "First 0", "kore-erp"),
        ("C-1", "First 1", "kore-erp"),
        ("C-2", "First 2", "kore-erp"),
    ]


def test_a_push_to_a_group_is_matched_to_that_group_s_descriptors(client, token):
    group = DataGroup.objects.get(code="kore-inbound")
    job_id = accepted(push(client, token, tsv(THREE), group="kore-inbound"))

    assert ImportJob.objects.get(pk=job_id).group == group
    assert run(job_id)["files"][0]["status"] == "imported"


def test_a_dry_run_counts_and_writes_nothing(client, token):
    job_id = accepted(push(client, token, tsv(THREE), dry_run="true"))
    assert ImportJob.objects.get(pk=job_id).dry_run

    run(job_id)

    done = job_of(client, token, job_id)
    assert (done["status"], done["dry_run"]) == ("completed", True)
    assert [(f["status"], f["created"]) for f in done["files"]] == [("imported", 3)]
    assert not Customer.objects.exists()
    assert not ImportedFileName.objects.exists()


def test_a_zip_is_unpacked_and_its_files_imported_in_order(client, token):
    orders = [{"order_id": "O-1", "customer_id": "C-0", "order_date": "2026-11-01", "currency": "EUR", "total": "9.50"}]
    content = a_zip({kore_name("KS_ORDERS", 1): tsv(orders), NAME: tsv(THREE)})  # orders first in the zip

    job_id = accepted(push(client, token, content, name="batch.zip"))
    ran = run(job_id)

    assert [(f["name"], f["status"], f["created"]) for f in ran["files"]] == [
        (NAME, "imported", 3),
        (kore_name("KS_ORDERS", 1), "imported", 1),
    ]
    assert job_of(client, token, job_id)["files"] == ran["files"]


def test_a_file_bigger_than_the_api_s_json_limit_is_pushed_within_the_upload_limit(client, token, settings):
    settings.IMPEX_API_MAX_BODY = 1024  # JSON bodies; a push is an upload, with its own limit
    rows = [customer_row(f"C-{n}") for n in range(200)]
    assert len(tsv(rows)) > 4 * 1024

    job_id = accepted(push(client, token, tsv(rows)))

    assert run(job_id)["files"][0]["created"] == 200


# -- the once-only ledger -------------------------------------------------------------------------------------------


def test_the_same_name_and_content_pushed_again_is_a_duplicate(client, token):
    run(accepted(push(client, token, tsv(THREE))))

    again = accepted(push(client, token, tsv(THREE)))
    run(again)

    files = job_of(client, token, again)["files"]
    assert [(f["name"], f["status"], f["created"]) for f in files] == [(NAME, "duplicate", 0)]
    assert ImportedFileName.objects.count() == 1


def test_the_same_name_with_other_content_is_a_conflict_and_changes_nothing(client, token):
    run(accepted(push(client, token, tsv(THREE))))

    other = [customer_row("C-0", first_name="Changed")]
    again = accepted(push(client, token, tsv(other)))
    run(again)

    job = job_of(client, token, again)
    assert job["status"] == "failed"
    [file] = job["files"]
    assert file["status"] == "rejected"
    assert "with other content" in file["errors"][0]["message"]
    assert Customer.objects.get(customer_id="C-0").first_name == "First 0"
    assert ImportedFileName.objects.count() == 1


# -- refusals: 400 with the field's errors, nothing created ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("customers.csv", "no descriptor of connection kore-erp claims customers.csv; it expects: "),
        (kore_name("KS_NOTHING", 1), "KS_NOTHING"),
        ("ERP_12_INT1_KS_CUSTOMERS.NET", "ERP_12_INT1_KS_CUSTOMERS.NET"),
    ],
)
def test_a_name_that_does_not_parse_is_refused_with_nothing_created(client, token, name, message):
    response = push(client, token, tsv(THREE), name=name)

    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["file"] and len(body["file"]) == 1
    assert message in body["file"][0]
    assert records() == (0, 0, 0, 0)


def test_a_name_of_another_connection_is_refused_the_token_pushes_for_its_own_only(client, token, other_token):
    theirs = kore_name("KS_CUSTOMERS", 1, integration="INT2")

    response = push(client, token, tsv(THREE), name=theirs)

    assert response.status_code == 400
    assert "INT2" in response.json()["file"][0] and "INT1" in response.json()["file"][0]
    # A BSPK name of another connection's company is not one this Kore connection sends either.
    Connection.objects.create(code="acme-pos", name="Acme", convention="bspk", company_name="Acme")
    special = table_text([special_order_row("SO-1")], delimiter=",").encode()
    response = push(client, token, special, name=bspk_name("SPECIAL-ORDERS"))
    assert response.status_code == 400
    assert "connection kore-erp uses the Kore convention" in response.json()["file"][0]
    # Nor inside a zip.
    response = push(client, token, a_zip({NAME: tsv(THREE), theirs: tsv(THREE)}), name="both.zip")
    assert response.status_code == 400
    assert theirs in response.json()["file"][0]
    assert records() == (0, 0, 0, 0)
    assert not Customer.objects.exists()


def test_another_connection_s_group_is_refused_as_if_it_were_not_there(client, token, other_token):
    DataGroup.objects.create(
        code="theirs", name="Theirs", direction="import", connection=Connection.objects.get(code="kore-two")
    )

    refused = push(client, token, tsv(THREE), group="theirs")
    missing = push(client, token, tsv(THREE), group="nothing")

    assert refused.status_code == missing.status_code == 400
    assert list(refused.json()) == ["group"]
    assert refused.json()["group"][0].startswith("connection kore-erp has no import group 'theirs'")
    assert missing.json()["group"][0].startswith("connection kore-erp has no import group 'nothing'")
    assert records() == (0, 0, 0, 0)


def test_an_export_group_and_a_group_without_the_file_s_descriptor_are_refused(client, token):
    export = DataGroup.objects.filter(direction="export").first()
    response = push(client, token, tsv(THREE), group=export.code)
    assert response.status_code == 400
    assert response.json() == {"group": [f"{export.code} is an export group: push to an import group, or to none."]}

    orders_only = DataGroup.objects.create(code="kore-orders", name="Orders", direction="import")
    orders_only.descriptors.set(DataDescriptor.objects.filter(code="KS_ORDERS"))
    response = push(client, token, tsv(THREE), group="kore-orders")
    assert response.status_code == 400
    assert "no descriptor of the import group kore-orders claims this file" in response.json()["file"][0]
    assert records() == (0, 0, 0, 0)


def test_a_push_without_a_file_or_with_an_empty_one_is_refused(client, token):
    response = client.post(FILES, {"group": "kore-inbound"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response.json() == {"file": ["No file was submitted."]}

    response = push(client, token, b"")
    assert response.status_code == 400
    assert list(response.json()) == ["file"]

    response = client.post(FILES, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 415
    assert records() == (0, 0, 0, 0)


def test_a_zip_with_a_path_that_leaves_its_folder_is_refused(client, token):
    response = push(client, token, a_zip({f"../{NAME}": tsv(THREE)}), name="evil.zip")

    assert response.status_code == 400
    assert response.json()["file"][0].startswith("evil.zip: ")
    assert "../" in response.json()["file"][0]
    assert records() == (0, 0, 0, 0)


def test_zip_bombs_are_refused_by_the_upload_s_limits(client, token, settings):
    settings.IMPEX_MAX_ZIP_RATIO = 50
    bomb = a_zip({NAME: tsv(THREE) + b"\n" * (2 * MB)})  # compresses ~1000:1

    response = push(client, token, bomb, name="bomb.zip")

    assert response.status_code == 400
    assert response.json()["file"][0].startswith("bomb.zip: the entry ")
    assert "expands more than 50 times (a zip bomb?)" in response.json()["file"][0]
    settings.IMPEX_MAX_ZIP_RATIO = 10_000
    settings.IMPEX_MAX_ZIP_ENTRIES = 2
    many = a_zip({kore_name("KS_CUSTOMERS", n): tsv(THREE) for n in range(1, 4)})
    response = push(client, token, many, name="many.zip")
    assert response.status_code == 400
    assert "more than the limit of 2" in response.json()["file"][0]
    assert records() == (0, 0, 0, 0)


def test_a_non_zip_named_zip_is_refused(client, token):
    response = push(client, token, tsv(THREE), name="data.zip")

    assert response.status_code == 400
    assert "data.zip is not a zip archive" in response.json()["file"][0]
    assert records() == (0, 0, 0, 0)


# -- tokens ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_no_token_or_a_wrong_one_is_401_and_nothing_is_created(client, token, header):
    job_id = accepted(push(client, token, tsv(THREE)))
    before = records()
    headers = {"HTTP_AUTHORIZATION": header} if header else {}

    pushed = client.post(FILES, {"file": SimpleUploadedFile(kore_name("KS_CUSTOMERS", 2), tsv(THREE))}, **headers)
    read = client.get(f"/api/jobs/{job_id}/", **headers)

    assert pushed.status_code == read.status_code == 401
    assert pushed["WWW-Authenticate"] == 'Bearer realm="impex-hub"'
    assert records() == before


def test_a_revoked_token_pushes_nothing(client, token, kore_connection):
    kore_connection.api_tokens.update(revoked_at="2026-01-01T00:00:00Z")

    assert push(client, token, tsv(THREE)).status_code == 401
    assert records() == (0, 0, 0, 0)


def test_a_job_of_another_connection_is_404_like_one_that_does_not_exist(client, token, other_token):
    theirs = accepted(push(client, other_token, tsv(THREE), name=kore_name("KS_CUSTOMERS", 1, integration="INT2")))
    mine = accepted(push(client, token, tsv(THREE)))
    assert job_of(client, other_token, theirs)["job"] == theirs
    missing = theirs + mine + 1000

    answers = {
        job_id: client.get(f"/api/jobs/{job_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
        for job_id in (theirs, missing, "abc", "99999999999999999999999")
    }

    assert {a.status_code for a in answers.values()} == {404}
    assert answers[theirs].json() == {"detail": f"connection kore-erp has no import job #{theirs}"}
    assert answers[missing].json() == {"detail": f"connection kore-erp has no import job #{missing}"}
    assert job_of(client, token, mine)["job"] == mine


# -- sizes ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def spool(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    return tmp_path / "spool"


def push_raw(live_server, token: str, *, file_bytes: int, declared_file_bytes: int | None = None, name: str = NAME):
    """POST /api/files/ over a socket: file_bytes of filler as the file, the body declared as holding
    declared_file_bytes of file (the whole file is sent when they are equal)."""
    boundary = "pushboundary7MA4YWxkTrZu0gW"
    head, tail = multipart({}, file_field="file", file_name=name, boundary=boundary)
    declared_file_bytes = file_bytes if declared_file_bytes is None else declared_file_bytes
    return send(
        live_server.url + FILES,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {token}"},
        head=head,
        filler=file_bytes,
        tail=tail if file_bytes == declared_file_bytes else b"",
        declared=len(head) + declared_file_bytes + len(tail),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_a_body_declared_over_the_upload_limit_is_413_unread(live_server, token, settings, spool):
    settings.IMPEX_MAX_UPLOAD_BYTES = MB

    answer = push_raw(live_server, token, file_bytes=MB, declared_file_bytes=300 * MB)

    assert answer.status == 413
    detail = json.loads(answer.body)["detail"]
    assert detail.startswith("the body is ")
    assert detail.endswith("larger than IMPEX_MAX_UPLOAD_BYTES (1 MB) and 1 MB for the form's other fields")
    assert list(spool.iterdir()) == []
    assert records() == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_a_file_over_the_upload_limit_is_stopped_while_it_streams_in(live_server, token, settings, spool):
    settings.IMPEX_MAX_UPLOAD_BYTES = MB

    # Declared within the limit and the form's other fields, but the file itself is over the limit.
    answer = push_raw(live_server, token, file_bytes=MB + MB // 2)

    assert answer.status == 413
    assert json.loads(answer.body)["detail"].startswith(f"{NAME} was stopped and nothing of it kept; an upload may")
    assert list(spool.iterdir()) == []
    assert records() == (0, 0, 0, 0)


def test_a_file_of_exactly_the_upload_limit_goes_in(client, token, settings):
    content = tsv(THREE)
    settings.IMPEX_MAX_UPLOAD_BYTES = len(content)

    accepted(push(client, token, content))
    assert push(client, token, content + b"\n", name=kore_name("KS_CUSTOMERS", 2)).status_code == 413


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_a_50_mb_push_streams_to_disk_and_storage_without_being_held_in_memory(live_server, token, spool):
    tracemalloc.start()
    try:
        answer = push_raw(live_server, token, file_bytes=50 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert answer.status == 202, answer.text
    stored = ImportFile.objects.get(job_id=json.loads(answer.body)["job"])
    assert stored.size == 50 * MB
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"
    # The spooled upload is removed once the request is closed, which the server's thread may do after answering.
    deadline = time.monotonic() + 30
    while list(spool.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(spool.iterdir()) == []
