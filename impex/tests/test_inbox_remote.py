"""The inbox scan with the inbox (and the archive and error folders) on S3 and on SFTP servers on loopback."""

import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from impex.models import Connection, ImportedFileName, ImportFile, InboxFile
from impex.services.inbox import inbox_scan
from impex.storage import resolve_path
from syncapp.models import SpecialOrder

DEMO = Path(__file__).resolve().parents[1] / "demo"
FILES = [
    "SPECIAL-ORDERS_V2_Acme_202611010900.csv",
    "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv",
    "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv",
]


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


def scan_json() -> tuple[dict, int]:
    out = io.StringIO()
    code = 0
    try:
        call_command("impex_scan", "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    return json.loads(out.getvalue().strip().splitlines()[-1]), code


def s3_keys(s3_client, bucket: str, prefix: str) -> list[str]:
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"][len(prefix) :] for obj in listing.get("Contents", []))


def test_an_s3_inbox_is_scanned_emptied_and_its_files_archived_on_s3(bspk_connection, s3_bucket, s3_client):
    Connection.objects.filter(pk=bspk_connection.pk).update(
        inbox=f"s3://{s3_bucket}/in", archive_folder=f"s3://{s3_bucket}/done", error_folder=f"s3://{s3_bucket}/bad"
    )
    for name in FILES:
        s3_client.put_object(Bucket=s3_bucket, Key=f"in/{name}", Body=(DEMO / name).read_bytes())
    s3_client.put_object(Bucket=s3_bucket, Key="in/SPECIAL-ORDERS_V9_Acme_202611011000.csv", Body=b"x\n1\n")
    s3_client.put_object(Bucket=s3_bucket, Key="in/.hidden", Body=b"x")
    s3_client.put_object(Bucket=s3_bucket, Key="in/deeper/SPECIAL-ORDERS_V2_Acme_202611011100.csv", Body=b"x")
    s3_client.put_object(Bucket=s3_bucket, Key="in/upload.csv.part", Body=b"x")

    payload, code = scan_json()

    statuses = {f["name"]: f["status"] for f in payload["connections"][0]["files"]}
    assert statuses == {**dict.fromkeys(FILES, "imported"), "SPECIAL-ORDERS_V9_Acme_202611011000.csv": "rejected"}
    assert code == 1
    assert s3_keys(s3_client, s3_bucket, "in/") == [
        ".hidden",
        "deeper/SPECIAL-ORDERS_V2_Acme_202611011100.csv",
        "upload.csv.part",
    ]
    assert s3_keys(s3_client, s3_bucket, "done/") == sorted(FILES)
    assert s3_keys(s3_client, s3_bucket, "bad/") == [
        "SPECIAL-ORDERS_V9_Acme_202611011000.csv",
        "SPECIAL-ORDERS_V9_Acme_202611011000.csv.reason.txt",
    ]
    reason = s3_client.get_object(Bucket=s3_bucket, Key="bad/SPECIAL-ORDERS_V9_Acme_202611011000.csv.reason.txt")
    assert "V9" in reason["Body"].read().decode()
    assert SpecialOrder.objects.count() == 5
    imported = ImportFile.objects.get(name=FILES[0])
    assert imported.path == f"s3://{s3_bucket}/done/{FILES[0]}"
    storage, name = resolve_path(imported.path)
    assert storage.open(name).read() == (DEMO / FILES[0]).read_bytes()

    again, code = scan_json()
    assert again["connections"][0]["job"] is None and code == 0
    assert ImportedFileName.objects.count() == 3


def test_an_sftp_inbox_is_scanned_and_emptied_and_a_file_being_written_waits(bspk_connection, sftp_location):
    inbox = sftp_location.path / "inbox"
    inbox.mkdir()
    Connection.objects.filter(pk=bspk_connection.pk).update(
        inbox=f"{sftp_location.url}/inbox", error_folder=f"{sftp_location.url}/error"
    )
    bspk_connection.refresh_from_db()
    past = time.time() - 60
    for name in FILES:
        shutil.copyfile(DEMO / name, inbox / name)
        os.utime(inbox / name, (past, past))
    (inbox / "README.txt").write_text("for people")
    (inbox / "SPECIAL-ORDERS_V2_Acme_202611011200.csv.tmp").write_text("half")
    (inbox / "not-a-name.csv").write_text("a\n1\n")
    os.utime(inbox / "not-a-name.csv", (past, past))

    result = inbox_scan(connection=bspk_connection, run_here=True)

    assert not result.error, result.error
    assert sorted(result.taken) == sorted([*FILES, "not-a-name.csv"])
    assert result.left == [
        ("SPECIAL-ORDERS_V2_Acme_202611011200.csv.tmp", "still being written (a .part or .tmp name)")
    ]
    assert result.job.status == "failed"  # the file that is no name is rejected
    assert sorted(os.listdir(inbox)) == ["README.txt", "SPECIAL-ORDERS_V2_Acme_202611011200.csv.tmp"]
    assert sorted(os.listdir(sftp_location.path / "error")) == ["not-a-name.csv", "not-a-name.csv.reason.txt"]
    # The archive is the default one, in the hub's own storage.
    from django.conf import settings

    assert sorted(os.listdir(Path(settings.IMPEX_ROOT) / bspk_connection.code / "archive")) == sorted(FILES)
    assert SpecialOrder.objects.count() == 5
    assert set(InboxFile.objects.values_list("status", flat=True)) == {"taken"}


def test_an_sftp_inbox_whose_host_key_is_unknown_is_not_scanned_and_says_why(
    bspk_connection, sftp_location, settings, tmp_path
):
    (sftp_location.path / "inbox").mkdir()
    shutil.copyfile(DEMO / FILES[0], sftp_location.path / "inbox" / FILES[0])
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    settings.SFTP_KNOWN_HOST_FILE = str(empty)
    Connection.objects.filter(pk=bspk_connection.pk).update(inbox=f"{sftp_location.url}/inbox")

    payload, code = scan_json()

    assert payload["connections"][0]["job"] is None and code == 1
    bspk_connection.state.refresh_from_db()
    assert bspk_connection.state.last_scan_ok is False
    assert "could not be scanned" in bspk_connection.state.last_scan_message
    assert os.listdir(sftp_location.path / "inbox") == [FILES[0]]
