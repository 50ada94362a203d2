"""ORDER-STATUS (SPEC section 6): the export that tells the platform each order's state; never imported."""

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from impex.models import DataDescriptor, DataGroup, DescriptorColumn, ImportFile
from impex.services.descriptors import descriptor_check
from impex.services.export_runs import export_run
from impex.tests.helpers import run_import, write_raw
from orders.models import Order
from orders.services import order_transition
from orders.tests.helpers import import_catalogue, import_orders, line_row, order_row

HEADER = ["order_id", "state", "shipped_lines", "tracking_numbers", "updated_at"]


def export_order_status(tmp_path: Path, *extra: str) -> list[dict]:
    """Run impex_export ORDER-STATUS to a file and return its rows as dicts, checking the header."""
    out = tmp_path / f"status-{len(list(tmp_path.glob('status-*')))}.tsv"
    call_command("impex_export", "ORDER-STATUS", "--out", str(out), *extra, stdout=io.StringIO())
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    assert rows[0] == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


@pytest.fixture
def three_orders(tmp_path, kore_connection):
    """O1 confirmed, O2 new (no lines), O3 cancelled, imported from real files."""
    import_catalogue(tmp_path / "in")
    import_orders(
        tmp_path / "in",
        [order_row("O1"), order_row("O2"), order_row("O3")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2"), line_row("O3", 1)],
    )
    order_transition(order=Order.objects.get(order_id="O3"), transition="cancel", by="test", reason="customer asked")
    return {o.order_id: o for o in Order.objects.all()}


def test_order_status_export_writes_each_orders_state_with_the_built_in_layout(tmp_path, three_orders):
    rows = export_order_status(tmp_path)

    assert {r["order_id"]: r["state"] for r in rows} == {"O1": "confirmed", "O2": "new", "O3": "cancelled"}
    assert all(r["shipped_lines"] == "" and r["tracking_numbers"] == "" for r in rows)
    stamps = {r["order_id"]: r["updated_at"] for r in rows}
    o3 = Order.objects.get(order_id="O3")
    assert stamps["O3"] == o3.updated_at.isoformat()
    descriptor = DataDescriptor.objects.get(code="ORDER-STATUS")
    assert (descriptor.format, descriptor.export_only, descriptor.builtin) == ("tsv", True, True)


def test_order_status_since_gives_only_orders_whose_state_changed_since(tmp_path, three_orders):
    mark = timezone.now()

    order_transition(order=three_orders["O1"], transition="cancel", by="test")

    rows = export_order_status(tmp_path, "--since", mark.isoformat())
    assert [(r["order_id"], r["state"]) for r in rows] == [("O1", "cancelled")]


def test_the_order_status_group_exports_on_a_schedule_to_its_destination(tmp_path, three_orders):
    group = DataGroup.objects.get(code="order-status")
    group.destination = str(tmp_path / "platform")
    group.schedule_enabled = True
    group.interval_minutes = 5
    group.save()

    run = export_run(group_id=group.pk, trigger="schedule")

    assert run.status == "completed", run.error
    (sent,) = (tmp_path / "platform").iterdir()
    lines = sent.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == HEADER
    assert sorted(line.split("\t")[1] for line in lines[1:]) == ["cancelled", "confirmed", "new"]


def test_an_order_status_file_dropped_for_import_is_rejected_and_changes_nothing(tmp_path, three_orders):
    before = list(Order.objects.order_by("order_id").values_list("order_id", "state", "updated_at"))
    path = write_raw(
        tmp_path,
        "ERP_0000099_INT1_ORDER-STATUS.NET",
        "order_id\tstate\tshipped_lines\ttracking_numbers\tupdated_at\nO2\tcompleted\t1\tT1\t2026-11-01T10:00:00Z\n",
    )

    code, report = run_import(path, connection="kore-erp")

    assert code == 1
    (result,) = report["files"]
    assert result["status"] == "rejected"
    assert "ORDER-STATUS is a layout the hub writes for other systems, not one it imports" in json.dumps(result)
    assert list(Order.objects.order_by("order_id").values_list("order_id", "state", "updated_at")) == before
    assert ImportFile.objects.get(name=path.name).status == "rejected"


def test_reimporting_orders_never_changes_their_state(tmp_path, three_orders):
    import_orders(tmp_path / "again", [order_row("O1", total="99"), order_row("O3", total="12")], [])

    states = dict(Order.objects.values_list("order_id", "state"))
    assert states == {"O1": "confirmed", "O2": "new", "O3": "cancelled"}
    assert str(Order.objects.get(order_id="O1").total) == "99.0000"


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["state", "shipped_lines", "tracking_numbers", "updated_at"])
def test_an_import_descriptor_may_not_fill_what_only_the_hub_sets(field):
    descriptor = DataDescriptor(code="MY-ORDERS", entity="order", format="csv")
    columns = [
        DescriptorColumn(name="id", field="order_id", type="string", is_key=True, required=True),
        DescriptorColumn(name="x", field=field, type="string"),
    ]

    problems = descriptor_check(descriptor=descriptor, columns=columns)

    assert [p.message for p in problems if p.attr == "field"] == [
        f"'{field}' is set by the hub itself, never by a file: only an export-only descriptor may have a column for it."
    ]
    descriptor.export_only = True
    assert [p for p in descriptor_check(descriptor=descriptor, columns=columns) if p.attr == "field"] == []


def test_a_state_change_moves_updated_at_so_incremental_exports_carry_it(tmp_path, three_orders):
    before = Order.objects.get(order_id="O1").updated_at

    order_transition(order=three_orders["O1"], transition="cancel", by="test")

    after = Order.objects.get(order_id="O1")
    assert after.updated_at > before
    assert after.state_changed_at is not None and after.state_changed_at - after.updated_at < timedelta(seconds=1)
