"""Order of processing (SPEC section 4): precedence, timestamps, Kore sequences, and resuming a killed job."""

import os
import signal
import subprocess
import sys
import time
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from impex.models import Connection, ImportChunk, ImportFile, ImportJob
from impex.runner import run_job
from impex.tests.helpers import (
    counts,
    customer_row,
    file_named,
    lapse,
    only_file,
    process_env,
    product_row,
    run_import,
    special_order_row,
    table_text,
    write_bspk,
    write_kore,
)
from orders.models import Order, OrderLine
from syncapp.models import Customer, SpecialOrder, SpecialOrderEvent, SpecialOrderLineItem

# -- 15. Precedence and timestamps ----------------------------------------------------------------------


def test_bspk_files_of_one_timestamp_import_by_precedence_whatever_the_argument_order(tmp_path, bspk_connection):
    orders = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1"), special_order_row("SO-2")])
    items = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-LINE-ITEMS",
        [
            {"line_item_id": "L1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"},
            {"line_item_id": "L2", "special_order_id": "SO-2", "product_name": "Chain", "quantity": "2"},
        ],
    )
    events = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-EVENTS",
        [{"event_id": "E1", "special_order_id": "SO-1", "event_type": "CREATED", "event_at": "2026-11-01T10:05:00Z"}],
    )

    code, report = run_import(events, items, orders)

    assert code == 0
    assert [(f["status"], f["failed"], f["errors"]) for f in report["files"]] == [("imported", 0, [])] * 3
    assert SpecialOrder.objects.count() == 2
    assert SpecialOrderLineItem.objects.count() == 2
    assert SpecialOrderEvent.objects.get().special_order.special_order_id == "SO-1"


def test_special_orders_files_are_applied_oldest_timestamp_first(tmp_path, bspk_connection):
    older = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1", status="OPEN")], timestamp="202611011000")
    newer = write_bspk(
        tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1", status="READY")], timestamp="202611011100"
    )

    code, report = run_import(newer, older)

    assert code == 0
    assert {f["status"] for f in report["files"]} == {"imported"}
    assert SpecialOrder.objects.get().status == "READY"


def test_the_timestamp_orders_files_before_precedence_does(tmp_path, bspk_connection):
    events = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-EVENTS",
        [{"event_id": "E1", "special_order_id": "SO-1", "event_type": "NOTE", "event_at": "2026-11-01T11:00:00Z"}],
        timestamp="202611010900",
    )
    orders = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1")], timestamp="202611011000")

    code, report = run_import(orders, events)

    assert code == 0
    assert file_named(report, orders.name)["status"] == "imported"
    events_result = file_named(report, events.name)
    assert (events_result["status"], events_result["failed"]) == ("imported", 1)
    assert events_result["errors"][0]["message"] == "unknown special order 'SO-1'"
    assert not SpecialOrderEvent.objects.exists()


def kore_order_files(folder: Path, sequences: dict[str, int]) -> dict[str, Path]:
    """Write customers, products, orders and order lines that refer to each other; return api -> path."""
    rows = {
        "KS_CUSTOMERS": [customer_row("CU1"), customer_row("CU2")],
        "KS_PRODUCTS": [product_row("P1", "V1", "SKU1"), product_row("P1", "V2", "SKU2")],
        "KS_ORDERS": [
            {
                "order_id": "O1",
                "customer_id": "CU1",
                "order_date": "2026-11-01T10:00:00Z",
                "currency": "EUR",
                "total": "30",
            },
            {
                "order_id": "O2",
                "customer_id": "CU2",
                "order_date": "2026-11-01T11:00:00Z",
                "currency": "EUR",
                "total": "5",
            },
        ],
        "KS_ORDER_LINES": [
            {"order_id": "O1", "line_no": "1", "sku": "SKU1", "quantity": "2", "unit_price": "10"},
            {"order_id": "O1", "line_no": "2", "sku": "SKU2", "quantity": "1", "unit_price": "10"},
            {"order_id": "O2", "line_no": "1", "sku": "SKU2", "quantity": "1", "unit_price": "5"},
        ],
    }
    return {api: write_kore(folder, api, sequences[api], rows[api]) for api in sequences}


def zip_of(path: Path, members: list[Path]) -> Path:
    """Write a zip holding the files in the given order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(member, arcname=member.name)
    return path


@pytest.mark.parametrize(
    "sequences",
    [
        {"KS_CUSTOMERS": 1, "KS_PRODUCTS": 2, "KS_ORDERS": 3, "KS_ORDER_LINES": 4},
        {"KS_CUSTOMERS": 1, "KS_PRODUCTS": 1, "KS_ORDERS": 1, "KS_ORDER_LINES": 1},
    ],
    ids=["by sequence", "by precedence"],
)
def test_a_kore_zip_with_scrambled_entries_imports_cleanly(tmp_path, kore_connection, sequences):
    source = tmp_path / "source"
    source.mkdir()
    files = kore_order_files(source, sequences)
    archive = zip_of(
        tmp_path / "kore.zip",
        [files["KS_ORDER_LINES"], files["KS_ORDERS"], files["KS_CUSTOMERS"], files["KS_PRODUCTS"]],
    )

    code, report = run_import(archive)

    assert code == 0
    assert sorted(f["name"] for f in report["files"]) == sorted(p.name for p in files.values())
    assert [(f["status"], f["failed"]) for f in report["files"]] == [("imported", 0)] * 4
    assert Order.objects.count() == 2
    lines = {(line.order.order_id, line.line_no): line.variant.sku for line in OrderLine.objects.all()}
    assert lines == {("O1", 1): "SKU1", ("O1", 2): "SKU2", ("O2", 1): "SKU2"}
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == max(sequences.values()) + 1


# -- 16. Kore sequences ---------------------------------------------------------------------------------------


def test_a_sequence_gap_makes_the_file_wait_until_the_missing_one_arrives(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))
    third = write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C3")])

    code, report = run_import(third)

    assert code == 1
    assert only_file(report)["status"] == "waiting"
    assert ImportFile.objects.get(name=third.name).message == "waiting for sequence 2"
    assert not Customer.objects.filter(customer_id="C3").exists()

    second = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2")])
    code, report = run_import(second)

    assert code == 0
    assert file_named(report, second.name)["status"] == "imported"
    assert file_named(report, third.name)["status"] == "imported"
    assert ImportFile.objects.get(name=third.name).status == "imported"
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C1", "C2", "C3"]
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 4


def test_files_given_together_out_of_sequence_import_in_sequence(tmp_path, kore_connection):
    first = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="One")])
    second = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1", first_name="Two")])
    third = write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("C1", first_name="Three")])

    code, report = run_import(third, first, second)

    assert code == 0
    assert {f["status"] for f in report["files"]} == {"imported"}
    assert Customer.objects.get().first_name == "Three"


def test_an_admin_set_next_sequence_makes_a_first_file_with_a_higher_one_wait(tmp_path, kore_connection):
    Connection.objects.filter(pk=kore_connection.pk).update(next_expected_sequence=5)
    sixth = write_kore(tmp_path, "KS_CUSTOMERS", 6, [customer_row("C6")])

    code, report = run_import(sixth)

    assert (code, only_file(report)["status"]) == (1, "waiting")
    assert ImportFile.objects.get(name=sixth.name).message == "waiting for sequence 5"
    assert not Customer.objects.exists()

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 5, [customer_row("C5")]))

    assert code == 0
    assert {f["status"] for f in report["files"]} == {"imported"}
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C5", "C6"]


def test_the_vendor_short_form_name_imports_with_the_given_connection(tmp_path, kore_connection):
    Customer.objects.create(customer_id="CU1", email="cu1@example.com", connection=kore_connection)
    path = tmp_path / "DT_000001_KS_ORDERS.NET"
    path.write_text(
        table_text(
            [
                {
                    "order_id": "O1",
                    "customer_id": "CU1",
                    "order_date": "2026-11-01T10:00:00Z",
                    "currency": "EUR",
                    "total": "12.50",
                }
            ],
            delimiter="\t",
        ),
        encoding="utf-8",
    )

    code, report = run_import(path, connection="kore-erp")

    assert code == 0
    result = only_file(report)
    assert (result["descriptor"], result["status"], counts(result)["created"]) == ("KS_ORDERS", "imported", 1)
    order = Order.objects.get()
    assert (order.order_id, order.customer.customer_id, order.total) == ("O1", "CU1", Decimal("12.50"))
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 2


def test_the_short_form_name_needs_the_connection_when_several_could_send_it(tmp_path, kore_connection):
    Connection.objects.create(code="kore-two", convention="kore", integration_id="INT2")
    path = tmp_path / "DT_000001_KS_CUSTOMERS.NET"
    path.write_text(table_text([customer_row("C1")], delimiter="\t"), encoding="utf-8")

    code, report = run_import(path)

    assert code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert "--connection" in result["errors"][0]["message"]
    assert not Customer.objects.exists()


# -- 17. Resume after a kill ------------------------------------------------------------------------------------

ROWS = 5_000


def killed_rows() -> list[dict]:
    """Customers with parents among earlier rows, and a last row repeating the first key."""
    rows = [
        customer_row(
            f"C{n:05d}",
            first_name=f"Name {n}",
            discount_percentage=f"{n % 50}.5",
            parent_customer_id="C00000" if n % 10 == 5 else "",
        )
        for n in range(ROWS)
    ]
    rows.append(customer_row("C00000", first_name="Repeated"))
    return rows


def wait_for(condition, *, seconds: float, step: float = 0.005) -> bool:
    """Poll condition until it is true or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def other_backends() -> int:
    """Count the other sessions connected to the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_a_job_killed_half_way_is_resumed_to_the_end_state_of_one_clean_run(tmp_path, kore_connection):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database shared between processes (runs on PostgreSQL)")
    rows = killed_rows()
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, rows)
    env = process_env(IMPEX_CHUNK_ROWS=100, IMPEX_BATCH_SIZE=50)
    log = tmp_path / "killed.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "impex_import", str(path), "--json"],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            started = wait_for(lambda: ImportChunk.objects.filter(status="done").exists(), seconds=60)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert started, log.read_text()
    assert wait_for(lambda: other_backends() == 0, seconds=30, step=0.05)
    job = ImportJob.objects.get()
    import_file = job.files.get()
    done = ImportChunk.objects.filter(file=import_file, status="done").count()
    assert 0 < done < ImportChunk.objects.filter(file=import_file).count()
    assert import_file.status == "running"
    # The killed process's claims on the job and its chunks (60 s by default) run out, as a machine whose clock is
    # past them sees them: the resume below need not wait for them.
    assert lapse(ImportJob.objects.filter(pk=job.pk)) == 1
    lapse(ImportChunk.objects.filter(file=import_file))

    job = run_job(job.pk)

    assert job.status == "completed"
    import_file.refresh_from_db()
    assert import_file.status == "imported"
    assert (import_file.created, import_file.updated, import_file.failed) == (ROWS, 0, 1)
    assert (import_file.rows_total, import_file.rows_done) == (ROWS + 1, ROWS + 1)
    assert not ImportChunk.objects.filter(file=import_file).exclude(status="done").exists()
    stored = {
        c.customer_id: (c.email, c.first_name, c.discount_percentage, c.parent.customer_id if c.parent else "")
        for c in Customer.objects.select_related("parent")
    }
    expected = {
        r["customer_id"]: (r["email"], r["first_name"], Decimal(r["discount_percentage"]), r["parent_customer_id"])
        for r in rows[:ROWS]
    }
    assert stored == expected
    assert import_file.errors.get().row == ROWS + 2
