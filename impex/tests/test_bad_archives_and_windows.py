"""Zips and sizes of SPEC section 12 through impex_import, and the full-refresh window of SPEC section 5."""

import json
import zipfile
from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from impex.models import ImportJob
from syncapp.models import Customer

GOOD = "customer_id\temail\nC1\tc1@example.com\n"


def run_import(*args):
    """Run impex_import --json; return (exit code, files, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    code = 0
    try:
        call_command("impex_import", *[str(a) for a in args], "--json", stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    files = json.loads(out.getvalue().strip().splitlines()[-1])["files"]
    return code, files, out.getvalue(), err.getvalue()


def test_zip_with_a_path_leaving_its_folder_is_refused_whole(tmp_path, kore_connection):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ERP_0000001_INT1_KS_CUSTOMERS.NET", GOOD)
        zf.writestr("../../etc/evil.NET", "x")

    code, files, _, _ = run_import(archive, "--connection", kore_connection.code)

    assert code == 1
    (f,) = files
    assert f["status"] == "rejected"
    assert "upload.zip" in f["errors"][0]["message"]
    assert "../../etc/evil.NET" in f["errors"][0]["message"]
    assert not Customer.objects.exists()
    assert not (tmp_path.parent / "etc").exists()


def test_zip_bomb_is_refused_and_nothing_is_written(tmp_path, kore_connection, settings):
    settings.IMPEX_MAX_ZIP_RATIO = 50
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ERP_0000001_INT1_KS_CUSTOMERS.NET", GOOD + "\t" * (20 * 1024 * 1024))

    code, files, _, _ = run_import(archive, "--connection", kore_connection.code)

    assert code == 1
    assert files[0]["status"] == "rejected"
    assert "expands more than 50 times (a zip bomb?)" in files[0]["errors"][0]["message"]
    assert not Customer.objects.exists()


def test_zip_beyond_the_size_limit_is_refused(tmp_path, kore_connection, settings):
    settings.IMPEX_MAX_ZIP_BYTES = 1000
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ERP_0000001_INT1_KS_CUSTOMERS.NET", GOOD + "C2\tc2@example.com\n" * 100)

    code, files, _, _ = run_import(archive, "--connection", kore_connection.code)

    assert code == 1
    assert files[0]["status"] == "rejected"
    assert not Customer.objects.exists()


def test_file_beyond_the_size_limit_is_rejected(tmp_path, kore_connection, settings):
    settings.IMPEX_MAX_FILE_BYTES = 100
    path = tmp_path / "ERP_0000001_INT1_KS_CUSTOMERS.NET"
    path.write_text(GOOD + "C2\tc2@example.com\n" * 20, encoding="utf-8")

    code, files, _, _ = run_import(path)

    assert code == 1
    assert files[0]["status"] == "rejected"
    assert "more than the limit of 100 bytes" in files[0]["errors"][0]["message"]
    assert not Customer.objects.exists()


def test_zip_with_nothing_the_group_knows_says_so(tmp_path, kore_connection):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("holiday.jpg", b"\xff\xd8\xff")
        zf.writestr("notes.txt", "hello")

    code, files, _, err = run_import(archive, "--connection", kore_connection.code, "--group", "kore-inbound")

    assert code == 1
    assert {f["status"] for f in files} == {"rejected"}
    job = ImportJob.objects.get()
    assert "photos.zip: the zip holds nothing the group kore-inbound knows" in job.error
    assert "photos.zip: the zip holds nothing" in err


def test_zip_files_are_matched_and_imported_in_order(tmp_path, kore_connection):
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inner/ERP_0000002_INT1_KS_CUSTOMERS.NET", "customer_id\temail\nC1\tsecond@example.com\n")
        zf.writestr("ERP_0000001_INT1_KS_CUSTOMERS.NET", "customer_id\temail\nC1\tfirst@example.com\n")

    code, files, _, _ = run_import(archive, "--group", "kore-inbound")

    assert code == 0
    assert [f["name"] for f in files] == ["ERP_0000001_INT1_KS_CUSTOMERS.NET", "ERP_0000002_INT1_KS_CUSTOMERS.NET"]
    assert Customer.objects.get().email == "second@example.com"


def _window_around(now_local, *, inside: bool):
    if inside:
        start, end = now_local - timedelta(hours=1), now_local + timedelta(hours=1)
    else:
        start, end = now_local + timedelta(hours=1), now_local + timedelta(hours=2)
    return start.time().replace(second=0, microsecond=0), end.time().replace(second=0, microsecond=0)


@pytest.mark.parametrize("inside", [False, True])
def test_full_files_are_held_until_the_off_hours_window(tmp_path, kore_connection, inside):
    kore_connection.timezone = "Europe/Paris"
    now_local = datetime.now(ZoneInfo("Europe/Paris"))
    if not inside and now_local.hour >= 21:
        now_local -= timedelta(hours=4)  # keep the window on one day (start before end)
    kore_connection.full_window_start, kore_connection.full_window_end = _window_around(now_local, inside=inside)
    kore_connection.save()
    full = tmp_path / "ERP_0000001_INT1_KS_CUSTOMERS.FULL"
    full.write_text(GOOD, encoding="utf-8")
    net = tmp_path / "ERP_0000001_INT1_KS_PRODUCTS.NET"
    net.write_text("product_id\ttitle\tvariant_id\tsku\nP1\tShirt\tV1\tSKU1\n", encoding="utf-8")

    code, files, _, _ = run_import(full, net)

    by_name = {f["name"]: f for f in files}
    assert by_name[net.name]["status"] == "imported"
    if inside:
        assert (code, by_name[full.name]["status"]) == (0, "imported")
        assert Customer.objects.filter(customer_id="C1").exists()
    else:
        assert (code, by_name[full.name]["status"]) == (1, "waiting")
        assert not Customer.objects.exists()
        job = ImportJob.objects.get()
        assert "held until the full-refresh window" in job.files.get(name=full.name).message
