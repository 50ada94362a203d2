"""FTP and FTPS inboxes, archives, error folders and outboxes on real servers on loopback (SPEC 11: they work like
SFTP ones): scans that import and archive, files still being uploaded, connections lost mid-transfer, refusals."""

import csv
import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from impex.models import Connection, DataDescriptor, DataGroup, ImportFile, InboxFile, SentFile
from impex.services.export_runs import export_run
from impex.services.inbox import inbox_scan
from impex.storage import resolve_path
from syncapp.models import Customer, SpecialOrder

DEMO = Path(__file__).resolve().parents[1] / "demo"
FILES = [
    "SPECIAL-ORDERS_V2_Acme_202611010900.csv",
    "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv",
    "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv",
]
REJECTED = "SPECIAL-ORDERS_V9_Acme_202611011000.csv"


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


def put_old(folder: Path, name: str, data: bytes) -> None:
    """Put a file in a folder on the server, last written a minute ago (settled)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    past = time.time() - 60
    os.utime(folder / name, (past, past))


@pytest.mark.parametrize("scheme", ["ftp", "ftps"])
def test_an_ftp_inbox_is_scanned_its_files_archived_and_a_rejected_one_kept_with_its_reason(
    request, scheme, bspk_connection
):
    where = request.getfixturevalue(f"{scheme}_location")
    inbox = where.path / "in box"
    for name in FILES:
        put_old(inbox, name, (DEMO / name).read_bytes())
    put_old(inbox, REJECTED, b"x\n1\n")
    put_old(inbox, "upload.csv.part", b"half")
    Connection.objects.filter(pk=bspk_connection.pk).update(
        inbox=f"{where.url}/in box", archive_folder=f"{where.url}/done", error_folder=f"{where.url}/bad"
    )
    bspk_connection.refresh_from_db()

    result = inbox_scan(connection=bspk_connection, run_here=True)

    assert not result.error, result.error
    assert sorted(result.taken) == sorted([*FILES, REJECTED])
    assert result.job.status == "failed"  # the V9 file is rejected, the others imported
    assert sorted(os.listdir(inbox)) == ["upload.csv.part"]
    assert sorted(os.listdir(where.path / "done")) == sorted(FILES)
    assert sorted(os.listdir(where.path / "bad")) == [REJECTED, f"{REJECTED}.reason.txt"]
    assert "V9" in (where.path / "bad" / f"{REJECTED}.reason.txt").read_text()
    assert SpecialOrder.objects.count() == 5
    imported = ImportFile.objects.get(name=FILES[0])
    assert imported.path == f"{where.url}/done/{FILES[0]}"
    storage, name = resolve_path(imported.path)
    with storage.open(name) as stream:
        assert stream.read() == (DEMO / FILES[0]).read_bytes()

    again = inbox_scan(connection=bspk_connection, run_here=True)
    assert again.job is None and not again.error


def test_a_file_still_being_uploaded_is_left_for_the_next_pass(bspk_connection, ftp_location, settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 1
    inbox = ftp_location.path / "inbox"
    inbox.mkdir()
    data = (DEMO / FILES[0]).read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    (inbox / FILES[0]).write_bytes(data[:half])  # just written: the scan looks at it again after a second...
    ftp_location.server.grow_when_sized(FILES[0], data[half:])  # ...and the uploader has written more by then
    Connection.objects.filter(pk=bspk_connection.pk).update(inbox=f"{ftp_location.url}/inbox")
    bspk_connection.refresh_from_db()

    first = inbox_scan(connection=bspk_connection, run_here=True)

    assert not first.error, first.error
    assert first.taken == [] and first.job is None
    assert first.left == [(FILES[0], "still being written (it changed while the scan looked)")]
    assert os.listdir(inbox) == [FILES[0]]

    second = inbox_scan(connection=bspk_connection, run_here=True)  # the same size and time as last seen

    assert second.taken == [FILES[0]] and second.job.status == "completed"
    assert SpecialOrder.objects.count() == 5
    assert ImportFile.objects.get(name=FILES[0]).content_hash == hashlib.sha256(data).hexdigest()


def test_a_connection_lost_mid_transfer_imports_nothing_and_the_next_pass_takes_the_file(bspk_connection, ftp_location):
    inbox = ftp_location.path / "inbox"
    put_old(inbox, FILES[0], (DEMO / FILES[0]).read_bytes())
    ftp_location.server.cut_after(FILES[0], 100)  # the server goes away 100 bytes into the download
    Connection.objects.filter(pk=bspk_connection.pk).update(inbox=f"{ftp_location.url}/inbox")
    bspk_connection.refresh_from_db()

    first = inbox_scan(connection=bspk_connection, run_here=True)

    assert first.taken == [] and first.job is None
    [(name, why)] = first.left
    assert name == FILES[0]
    assert why.startswith("could not be copied (the download of ftp://127.0.0.1:")
    assert "broke off after 100 bytes of 895 (the server closed the connection)" in why
    assert ImportFile.objects.count() == 0 and SpecialOrder.objects.count() == 0
    assert InboxFile.objects.get().status == "seen"
    assert os.listdir(inbox) == [FILES[0]]

    second = inbox_scan(connection=bspk_connection, run_here=True)

    assert second.taken == [FILES[0]] and second.job.status == "completed"
    assert SpecialOrder.objects.count() == 5
    assert os.listdir(inbox) == []


def test_an_ftp_inbox_on_a_private_host_is_not_scanned_without_the_allow_list(
    bspk_connection, ftp_location, nothing_listed
):
    put_old(ftp_location.path / "inbox", FILES[0], (DEMO / FILES[0]).read_bytes())
    Connection.objects.filter(pk=bspk_connection.pk).update(inbox=f"{ftp_location.url}/inbox")
    bspk_connection.refresh_from_db()

    result = inbox_scan(connection=bspk_connection, run_here=True)

    assert result.job is None
    assert "could not be scanned" in result.error and "loopback address" in result.error
    assert "IMPEX_ALLOWED_HOSTS_OUTBOUND" in result.error
    assert os.listdir(ftp_location.path / "inbox") == [FILES[0]]
    assert InboxFile.objects.count() == 0


def test_impex_connection_sets_an_ftp_inbox_and_refuses_an_unlisted_host(db, ftp_location, settings):
    call_command(
        "impex_connection",
        "acme",
        "--convention",
        "bspk",
        "--company",
        "Acme",
        "--inbox",
        f"{ftp_location.url}/in",
        stdout=io.StringIO(),
    )
    assert Connection.objects.get(code="acme").inbox == f"{ftp_location.url}/in"

    settings.FTP_HOSTS = {}
    with pytest.raises(Exception, match="not listed in FTP_HOSTS"):
        call_command("impex_connection", "acme", "--inbox", f"{ftp_location.url}/other", stdout=io.StringIO())
    assert Connection.objects.get(code="acme").inbox == f"{ftp_location.url}/in"


def test_an_export_run_writes_its_file_to_an_ftps_outbox(db, ftps_location):
    for i in (1, 2):
        Customer.objects.create(customer_id=f"C{i}", email=f"c{i}@example.com", first_name=f"N{i}")
    group = DataGroup.objects.create(
        code="customers-out", name="Customers out", direction="export", destination=f"{ftps_location.url}/out box"
    )
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))

    run = export_run(group_id=group.pk, trigger="schedule")

    assert run.status == "completed", run.error
    sent = SentFile.objects.get(run=run)
    written = ftps_location.path / "out box" / sent.name
    assert os.listdir(ftps_location.path / "out box") == [sent.name]  # no partial file left beside it
    data = written.read_bytes()
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(data.decode()), delimiter="\t")] == ["C1", "C2"]
    assert sent.path == f"{ftps_location.url}/out box/{sent.name}"
    assert sent.sha256 == hashlib.sha256(data).hexdigest()
    shutil.rmtree(ftps_location.path / "out box")


def test_the_admin_sets_ftp_and_ftps_folders_only_with_change_locations_and_refuses_unlisted_hosts(
    client, django_user_model, ftp_location, ftps_location, settings
):
    from tests.admin_helpers import admin_url, post_data
    from tests.test_admin_locations import LOCATIONS, editor, form_errors

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    conn = Connection.objects.create(code="acme-pos", convention="bspk", company_name="Acme")
    url = admin_url(Connection, "change", conn.pk)
    user = editor(client, django_user_model)
    crafted = {"inbox": f"{ftp_location.url}/in", "archive_folder": f"{ftps_location.url}/done"}

    page = client.get(url)
    assert not LOCATIONS & set(page.context["adminform"].form.fields)
    ignored = client.post(url, {**post_data(page.context["adminform"].form), **crafted})
    assert ignored.status_code == 302
    conn.refresh_from_db()
    assert (conn.inbox, conn.archive_folder) == ("", "")

    user.user_permissions.add(Permission.objects.get(content_type__app_label="impex", codename="change_locations"))
    data = post_data(client.get(url).context["adminform"].form)
    unlisted = client.post(url, {**data, "error_folder": "ftps://ftp.partner.example/bad"})
    saved = client.post(url, {**data, **crafted})

    assert unlisted.status_code == 200 and "not listed in FTP_HOSTS" in form_errors(unlisted)["error_folder"][0]
    assert saved.status_code == 302
    conn.refresh_from_db()
    assert (conn.inbox, conn.archive_folder) == (crafted["inbox"], crafted["archive_folder"])
