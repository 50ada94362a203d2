"""The dry run (issue 6): what the import would do, per file and for its first rows, with nothing written."""

import zipfile
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

from impex.models import (
    Connection,
    ConnectionState,
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportedFileName,
    ImportFile,
    ImportJob,
)
from impex.services.jobs import job_create, job_prefix
from impex.storage import file_exists, hub_storage
from impex.tasks import import_job_run
from impex.tests.helpers import (
    counts,
    customer_row,
    file_named,
    only_file,
    product_row,
    run_import,
    special_order_row,
    write_bspk,
    write_kore,
)
from syncapp.models import Customer, SyncError, SyncLog

ENTITY_APPS = ("syncapp", "orders")


def entity_models() -> list:
    """Return the models of the synced records (and their sync logs)."""
    return [m for app in ENTITY_APPS for m in apps.get_app_config(app).get_models()]


def snapshot() -> dict:
    """Return every row of the entity tables, the ledger, the connections' state and the sync logs."""
    models = [*entity_models(), ImportedFileName, ConnectionState, Connection, SyncLog, SyncError]
    return {m._meta.label: list(m.objects.order_by("pk").values()) for m in models}


def sequences() -> dict:
    """Return the last value of each entity table's id sequence (PostgreSQL), read from the real schema."""
    if connection.vendor != "postgresql":
        return {}
    found = {}
    with connection.cursor() as cursor:
        for model in entity_models():
            cursor.execute(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, %s))",
                [f"public.{model._meta.db_table}", model._meta.pk.column],
            )
            found[model._meta.db_table] = cursor.fetchone()[0]
    return found


def work_rows() -> int:
    """Count the engine's work rows of every file."""
    return FileKey.objects.count() + FileDuplicate.objects.count() + DeferredRow.objects.count()


def zip_of(path: Path, members: list[Path]) -> Path:
    """Write a zip holding the files."""
    with zipfile.ZipFile(path, "w") as archive:
        for member in members:
            archive.write(member, arcname=member.name)
    return path


def results(report: dict) -> dict:
    """Return name -> (status, counts, row errors) of every file of a report."""
    return {f["name"]: (f["status"], counts(f), f["errors"]) for f in report["files"]}


def dry_run(*paths) -> dict:
    """Dry-run the files; check that nothing but the job's own rows changed; return the report."""
    before, ids, work = snapshot(), sequences(), work_rows()

    code, report = run_import(*paths, dry_run=True)

    report["job"] = ImportJob.objects.latest("pk").pk  # the command prints no job id when it runs the job
    assert snapshot() == before
    assert sequences() == ids
    assert work_rows() == work == 0
    job = ImportJob.objects.get(pk=report["job"])
    hub = hub_storage()
    for f in ImportFile.objects.filter(job=job, kind="data").exclude(path=""):
        assert f.path.startswith(f"{job_prefix(job)}/") and file_exists(hub, f.path), f.name
    return report


def dry_then_real(*paths) -> tuple[dict, dict]:
    """Dry-run the files, then import them for real; check that both tell the same per file."""
    dry = dry_run(*paths)
    code, real = run_import(*paths)
    assert results(dry) == results(real)
    return dry, real


def preview_of(report: dict, name: str) -> dict:
    """Return the preview of a dry-run job's file."""
    return ImportFile.objects.get(job_id=report["job"], name=name).preview


def bspk_files(folder: Path, *, bad: bool = False) -> list[Path]:
    """Write the three BSPK files of two special orders (and bad rows if asked)."""
    orders = write_bspk(folder, "SPECIAL-ORDERS", [special_order_row("SO-1"), special_order_row("SO-2")])
    items = [
        {"line_item_id": "L1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"},
        {"line_item_id": "L2", "special_order_id": "SO-2", "product_name": "Chain", "quantity": "2"},
    ]
    events = [{"event_id": "E1", "special_order_id": "SO-1", "event_type": "CREATED", "event_at": "2026-11-01T10:05"}]
    if bad:
        items.append({"line_item_id": "L3", "special_order_id": "SO-9", "product_name": "Pin", "quantity": "1"})
        items.append({"line_item_id": "L4", "special_order_id": "SO-1", "product_name": "Pin", "quantity": "x"})
        events.append({"event_id": "E2", "special_order_id": "SO-9", "event_type": "CREATED", "event_at": "soon"})
    return [
        orders,
        write_bspk(folder, "SPECIAL-ORDER-LINE-ITEMS", items),
        write_bspk(folder, "SPECIAL-ORDER-EVENTS", events),
    ]


# -- several files: each sees what the files before it would do ---------------------------------------------


def test_a_dry_run_of_a_fresh_bspk_zip_sees_the_special_orders_its_first_file_would_create(tmp_path, bspk_connection):
    source = tmp_path / "source"
    source.mkdir()
    archive = zip_of(tmp_path / "bspk.zip", bspk_files(source))
    before, ids = snapshot(), sequences()
    job = job_create(paths=[archive], connection=bspk_connection, dry_run=True)

    status = import_job_run(job.pk)

    assert status == "completed"
    assert snapshot() == before
    assert sequences() == ids
    assert work_rows() == 0
    files = {f.name: f for f in ImportFile.objects.filter(job=job, kind="data")}
    assert {name: (f.status, f.created, f.failed) for name, f in files.items()} == {
        "SPECIAL-ORDERS_V2_Acme_202611011000.csv": ("imported", 2, 0),
        "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611011000.csv": ("imported", 2, 0),
        "SPECIAL-ORDER-EVENTS_V2_Acme_202611011000.csv": ("imported", 1, 0),
    }
    assert all(file_exists(hub_storage(), f.path) for f in files.values())
    items = files["SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611011000.csv"].preview
    assert items["retire"] == {"count": 0, "keys": []}
    assert items["rows"][0] == {
        "row": 2,
        "key": "L1",
        "action": "create",
        "changes": [
            {"field": "line_item_id", "old": "", "new": "L1"},
            {"field": "special_order_id", "old": "", "new": "SO-1"},
            {"field": "product_name", "old": "", "new": "Ring"},
            {"field": "quantity", "old": "", "new": "1"},
        ],
    }

    code, real = run_import(archive, connection="acme-pos")

    assert {f["name"]: counts(f) for f in real["files"]} == {
        name: {k: getattr(f, k) for k in ("created", "updated", "unchanged", "retired", "failed")}
        for name, f in files.items()
    }


def test_a_bspk_zip_with_bad_rows_gives_the_real_run_s_counts_and_row_errors(tmp_path, bspk_connection):
    source = tmp_path / "source"
    source.mkdir()
    archive = zip_of(tmp_path / "bspk.zip", bspk_files(source, bad=True))

    dry, real = dry_then_real(archive)

    items = file_named(dry, "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611011000.csv")
    assert (items["created"], items["failed"]) == (2, 2)
    rows = preview_of(dry, items["name"])["rows"]
    assert [(r["row"], r["key"], r["action"]) for r in rows] == [
        (2, "L1", "create"),
        (3, "L2", "create"),
        (4, "L3", "error"),
        (5, "L4", "error"),
    ]
    assert (rows[2]["message"], rows[2]["changes"]) == ("unknown special order 'SO-9'", [])
    assert rows[3]["message"] == "'x' is not a whole number"
    events = file_named(dry, "SPECIAL-ORDER-EVENTS_V2_Acme_202611011000.csv")
    assert (events["created"], events["failed"]) == (1, 1)


# -- counts equal to the real run's ----------------------------------------------------------------------------


@pytest.fixture
def customers(tmp_path, kore_connection):
    """Customers C1-C4 sent FULL, then C4 retired by a FULL file without it."""
    people = [customer_row(f"C{n}", first_name=f"Name{n}") for n in range(1, 5)]
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, people, mode="FULL"))[0] == 0
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, people[:3], mode="FULL"))[0] == 0
    assert not Customer.objects.get(customer_id="C4").active
    return kore_connection


@pytest.mark.parametrize("chunk_rows", [20_000, 2], ids=["whole", "chunked"])
def test_a_full_file_shows_changes_old_to_new_and_the_records_it_would_retire(
    tmp_path, customers, settings, chunk_rows
):
    settings.IMPEX_CHUNK_ROWS = chunk_rows
    source = tmp_path / "source"
    source.mkdir()
    full = write_kore(
        source,
        "KS_CUSTOMERS",
        3,
        [
            customer_row("C1", first_name="Anne"),
            customer_row("C2", first_name="Name2"),
            customer_row("C4", first_name="Name4"),
            customer_row("C5", first_name="New"),
        ],
        mode="FULL",
    )
    net = write_kore(source, "KS_CUSTOMERS", 4, [customer_row("C5", first_name="Newer"), customer_row("C3")])

    dry, real = dry_then_real(full, net)

    assert counts(file_named(dry, full.name)) == {
        "created": 1,
        "updated": 2,
        "unchanged": 1,
        "retired": 1,
        "failed": 0,
    }
    assert counts(file_named(dry, net.name)) == {"created": 0, "updated": 2, "unchanged": 0, "retired": 0, "failed": 0}
    preview = preview_of(dry, full.name)
    assert preview["retire"] == {"count": 1, "keys": ["C3"]}
    c1, c2, c4, c5 = preview["rows"]
    assert c1 == {
        "row": 2,
        "key": "C1",
        "action": "update",
        "changes": [{"field": "first_name", "old": "Name1", "new": "Anne"}],
    }
    assert (c2["action"], c2["changes"]) == ("unchanged", [])
    assert (c4["action"], c4["changes"]) == ("update", [{"field": "active", "old": "false", "new": "true"}])
    assert c5["action"] == "create"
    assert {"field": "first_name", "old": "", "new": "New"} in c5["changes"]
    later = preview_of(dry, net.name)
    assert later["retire"] == {"count": 0, "keys": []}
    # The NET file comes after the FULL one: it sees C5 created and C3 retired by it.
    assert later["rows"][0]["changes"] == [{"field": "first_name", "old": "New", "new": "Newer"}]
    assert [r["action"] for r in later["rows"]] == ["update", "update"]


def test_duplicate_keys_and_a_parent_named_by_a_later_row_count_as_for_real(tmp_path, kore_connection):
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [
            customer_row("C1", parent_customer_id="C3"),
            customer_row("C2"),
            customer_row("C2", first_name="Again"),
            customer_row("C3", parent_customer_id="C9"),
            customer_row("C4", parent_customer_id="C1"),
        ],
    )

    dry, real = dry_then_real(path)

    result = only_file(dry)
    assert counts(result) == {"created": 3, "updated": 0, "unchanged": 0, "retired": 0, "failed": 2}
    assert {(e["row"], e["column"]) for e in result["errors"]} == {(4, "customer_id"), (5, "parent_customer_id")}
    rows = preview_of(dry, path.name)["rows"]
    assert [(r["row"], r["key"], r["action"]) for r in rows] == [
        (2, "C1", "create"),
        (3, "C2", "create"),
        (4, "C2", "error"),
        (5, "C3", "error"),
        (6, "C4", "create"),
    ]
    assert rows[2]["message"] == "duplicate key C2 in this file (first at row 3)"
    assert {"field": "parent_customer_id", "old": "", "new": "C3"} in rows[0]["changes"]


def test_a_full_prices_file_that_creates_a_price_list_draws_no_id_and_counts_as_for_real(tmp_path, kore_connection):
    products = [product_row("P1", "V1", "SKU1"), product_row("P1", "V2", "SKU2")]
    run_import(write_kore(tmp_path, "KS_PRODUCTS", 1, products))
    first = [
        {"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "10.00"},
        {"price_list": "RETAIL", "sku": "SKU2", "currency": "EUR", "price": "12.00"},
    ]
    run_import(write_kore(tmp_path, "KS_PRICES", 2, first, mode="FULL"))
    prices = [
        {"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "11.50"},
        {"price_list": "TRADE", "sku": "SKU2", "currency": "EUR", "price": "9.00"},
    ]
    stock = [{"sku": "SKU1", "location": "A", "quantity": "3"}]

    dry, real = dry_then_real(
        write_kore(tmp_path, "KS_PRICES", 3, prices, mode="FULL"), write_kore(tmp_path, "KS_INVENTORY", 4, stock)
    )

    result = file_named(dry, "ERP_0000003_INT1_KS_PRICES.FULL")
    assert counts(result) == {"created": 1, "updated": 1, "unchanged": 0, "retired": 1, "failed": 0}
    preview = preview_of(dry, result["name"])
    assert preview["retire"] == {"count": 1, "keys": ["RETAIL / SKU2 / 1"]}
    assert preview["rows"][0]["key"] == "RETAIL / SKU1 / 1"
    assert preview["rows"][0]["changes"] == [{"field": "price", "old": "10", "new": "11.5"}]


def test_a_product_title_change_shows_on_each_variant_and_counts_them_updated(tmp_path, kore_connection):
    first = [product_row("P1", "V1", "SKU1"), product_row("P1", "V2", "SKU2")]
    run_import(write_kore(tmp_path, "KS_PRODUCTS", 1, first))
    rows = [product_row("P1", "V1", "SKU1", title="Shirt"), product_row("P1", "V2", "SKU2", title="Shirt")]

    dry, real = dry_then_real(write_kore(tmp_path, "KS_PRODUCTS", 2, rows, mode="FULL"))

    assert counts(only_file(dry))["updated"] == 2
    preview = preview_of(dry, only_file(dry)["name"])
    assert [r["changes"] for r in preview["rows"]] == [[{"field": "title", "old": "Product P1", "new": "Shirt"}]] * 2
    assert preview["retire"] == {"count": 0, "keys": []}


# -- the gates tell what would happen now, and change nothing --------------------------------------------------


def test_a_file_behind_the_sequence_and_a_file_imported_before_show_as_they_would(tmp_path, kore_connection):
    done = write_kore(tmp_path, "KS_CUSTOMERS", 5, [customer_row("C1")])
    run_import(done)
    behind = write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C2")])

    dry = dry_run(done, behind)

    assert file_named(dry, done.name)["status"] == "duplicate"
    refused = file_named(dry, behind.name)
    assert refused["status"] == "rejected"
    assert refused["errors"][0]["message"] == (
        f"{behind.name}: sequence 3 is behind: sequence 5 is already applied (send it again with a new sequence)"
    )
    code, real = run_import(behind)
    assert only_file(real)["errors"] == refused["errors"]


def test_a_dry_run_of_several_sequences_lets_each_in_after_the_one_before(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    later = [write_kore(tmp_path, "KS_CUSTOMERS", n, [customer_row(f"C{n}")]) for n in (2, 3, 4)]

    dry, real = dry_then_real(*later)

    assert [(f["status"], f["created"]) for f in dry["files"]] == [("imported", 1)] * 3
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 5
