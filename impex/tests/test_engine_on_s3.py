"""The engine keeps its files (job copies, archive, error folder) on S3 when IMPEX_STORAGE says so."""

import io
import json
import zipfile

from impex.models import ImportFile
from impex.tests.helpers import customer_row, file_named, run_import, table_text, write_kore
from syncapp.models import Customer


def keys(s3_client, bucket: str) -> set[str]:
    """Return every object key in the bucket."""
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_an_import_keeps_its_files_on_s3_and_leaves_no_local_copy(
    tmp_path, kore_connection, settings, s3_bucket, s3_client
):
    settings.IMPEX_STORAGE = f"s3://{s3_bucket}/hub"
    settings.IMPEX_CHUNK_ROWS = 2
    good = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row(f"C{n}") for n in range(5)])
    bad_name = tmp_path / "ERP_0000003_INT1_KS_NOTHING.NET"
    bad_name.write_text("customer_id\temail\nC9\tc9@example.com\n", encoding="utf-8")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ERP_0000002_INT1_KS_CUSTOMERS.NET", table_text([customer_row("C7")], delimiter="\t"))

    code, report = run_import(good, bad_name, archive)

    assert code == 1
    assert file_named(report, good.name)["status"] == "imported"
    assert file_named(report, bad_name.name)["status"] == "rejected"
    assert file_named(report, "ERP_0000002_INT1_KS_CUSTOMERS.NET")["status"] == "imported"
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C0", "C1", "C2", "C3", "C4", "C7"]
    stored = keys(s3_client, s3_bucket)
    assert stored == {
        "hub/kore-erp/archive/ERP_0000001_INT1_KS_CUSTOMERS.NET",
        "hub/kore-erp/archive/ERP_0000002_INT1_KS_CUSTOMERS.NET",
        "hub/kore-erp/error/ERP_0000003_INT1_KS_NOTHING.NET",
        "hub/kore-erp/error/ERP_0000003_INT1_KS_NOTHING.NET.reason.txt",
    }
    reason = s3_client.get_object(Bucket=s3_bucket, Key="hub/kore-erp/error/ERP_0000003_INT1_KS_NOTHING.NET.reason.txt")
    assert "unknown API" in reason["Body"].read().decode()
    archived = s3_client.get_object(Bucket=s3_bucket, Key="hub/kore-erp/archive/ERP_0000001_INT1_KS_CUSTOMERS.NET")
    assert archived["Body"].read() == good.read_bytes()
    assert ImportFile.objects.get(name=good.name).path == "kore-erp/archive/ERP_0000001_INT1_KS_CUSTOMERS.NET"
    assert not (settings.IMPEX_ROOT / "jobs").exists()
    assert not [p for p in settings.IMPEX_CACHE_DIR.rglob("*") if p.is_file()]  # downloads are removed


def test_a_rejected_zip_is_kept_in_the_error_folder_with_its_reason(tmp_path, kore_connection, settings):
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as zf:
        zf.writestr("ERP_0000001_INT1_KS_CUSTOMERS.NET", "customer_id\temail\n" + "C1\tc1@example.com\n" * 1000)
    path = tmp_path / "upload.zip"
    path.write_bytes(damaged.getvalue()[: len(damaged.getvalue()) // 2])

    code, report = run_import(path, connection="kore-erp")

    assert code == 1
    (result,) = report["files"]
    assert result["status"] == "rejected"
    assert "the zip archive is damaged or truncated" in result["errors"][0]["message"]
    error_folder = settings.IMPEX_ROOT / "kore-erp" / "error"
    assert sorted(p.name for p in error_folder.iterdir()) == ["upload.zip", "upload.zip.reason.txt"]
    assert (error_folder / "upload.zip").read_bytes() == path.read_bytes()
    assert "damaged or truncated" in (error_folder / "upload.zip.reason.txt").read_text()
    assert not Customer.objects.exists()


def test_an_export_goes_to_the_outbox_in_the_hubs_storage(settings, kore_connection, s3_bucket, s3_client):
    from django.core.management import call_command

    settings.IMPEX_STORAGE = f"s3://{s3_bucket}/hub"
    Customer.objects.create(customer_id="C1", email="c1@example.com", connection=kore_connection)
    out = io.StringIO()

    call_command("impex_export", "KS_CUSTOMERS", "--json", stdout=out)

    payload = json.loads(out.getvalue().strip().splitlines()[-1])
    (key,) = keys(s3_client, s3_bucket)
    assert key.startswith("hub/outbox/KS_CUSTOMERS_") and key.endswith(".tsv")
    assert payload["path"] == f"s3://{s3_bucket}/{key}"
    body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
    assert body.splitlines()[1].startswith("C1\tc1@example.com")
    assert not [p for p in settings.IMPEX_CACHE_DIR.rglob("*") if p.is_file()]
