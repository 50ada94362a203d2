"""Cancellation and amendment of orders (SPEC sections 6 and 7): by KS_ORDERS and KS_ORDER_LINES files, with
shipped orders refusing both, versions raised once per file and order, and exporters that had sent an order
getting it again."""

import csv
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from impex.tests.helpers import run_import, write_kore
from orders.exceptions import OrderShipped
from orders.feeds import orders_feed_pass
from orders.models import Order, OrderEvent, OrderFlag
from orders.services import order_cancel
from orders.tests.helpers import (
    _next_sequence,
    configure,
    export_pass,
    import_catalogue,
    import_orders,
    import_rows,
    line_row,
    order_row,
)

SECRET = "s3cr3t-key"


def import_with_errors(folder: Path, api: str, rows: list[dict]) -> dict:
    """Import one Kore file whose rows may be refused; return the report's one file."""
    path = write_kore(Path(folder), api, _next_sequence("kore-erp"), rows)
    code, report = run_import(path, connection="kore-erp")
    (result,) = report["files"]
    assert result["status"] == "imported", result
    return result


def order(order_id: str) -> Order:
    return Order.objects.get(order_id=order_id)


def amendments(order_id: str) -> list[str]:
    return list(OrderEvent.objects.filter(order__order_id=order_id, kind="amended").values_list("message", flat=True))


def ship(order_id: str) -> None:
    """Ship every line of the order through a KS_SHIPMENTS file and the feed, as carriers report it."""
    import_rows(
        Path(settings.IMPEX_ROOT) / "shipments",
        "KS_SHIPMENTS",
        [{"shipment_id": f"S-{order_id}", "order_id": order_id, "shipped_at": "2026-11-02T10:00:00Z"}],
    )
    orders_feed_pass(by="test")
    assert order(order_id).state == "completed"


@pytest.fixture
def orders_in(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("O1", total="10"), order_row("O2", total="20"), order_row("O3", total="30")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2"), line_row("O1", 3, "SKU3"), line_row("O2", 1), line_row("O3", 1)],
    )
    return tmp_path


def test_a_ks_orders_row_with_status_cancelled_cancels_and_a_shipped_order_refuses_it(orders_in):
    ship("O3")

    result = import_with_errors(
        orders_in,
        "KS_ORDERS",
        [
            order_row("O1", total="10", status="cancelled"),
            order_row("O2", total="20", status="open"),
            order_row("O3", total="30", status="cancelled"),
            order_row("O4", total="5", status="closed"),
        ],
    )

    assert [(e["row"], e["column"], e["message"]) for e in result["errors"]] == [
        (4, "status", "order O3 has shipped: it can no longer be cancelled"),
        (5, "status", result["errors"][1]["message"]),
    ]
    assert "closed" in result["errors"][1]["message"] and "open" in result["errors"][1]["message"]
    assert dict(Order.objects.values_list("order_id", "state")) == {
        "O1": "cancelled",
        "O2": "confirmed",
        "O3": "completed",
    }
    cancel = OrderEvent.objects.get(order__order_id="O1", transition="cancel")
    assert cancel.by.startswith("file ") and cancel.by.endswith(" of kore-erp")
    assert "KS_ORDERS" in cancel.by and "cancelled" in cancel.message
    assert order("O1").status == "cancelled" and order("O3").status == "open"

    # The same file again (a re-sent file under a new name) changes nothing: no second cancel, no amendment.
    import_with_errors(orders_in, "KS_ORDERS", [order_row("O1", total="10", status="cancelled")])
    assert OrderEvent.objects.filter(order__order_id="O1", transition="cancel").count() == 1
    # A file that says "open" of a cancelled order does not bring it back.
    import_with_errors(orders_in, "KS_ORDERS", [order_row("O1", total="10", status="open")])
    assert (order("O1").state, order("O1").status, order("O1").version) == ("cancelled", "cancelled", 1)


def test_ks_orders_exports_write_the_status_so_a_file_round_trips(orders_in, tmp_path):
    order_cancel(order=order("O2"), reason="out of stock", by="test")
    out = tmp_path / "orders.tsv"
    call_command("impex_export", "KS_ORDERS", "--out", str(out), stdout=io.StringIO())
    rows = list(csv.DictReader(out.open(encoding="utf-8"), delimiter="\t"))
    assert {r["order_id"]: r["status"] for r in rows} == {"O1": "open", "O2": "cancelled", "O3": "open"}


def test_an_amendment_by_ks_orders_raises_the_version_once_and_says_what_changed(orders_in):
    import_rows(orders_in, "KS_ORDERS", [order_row("O1", total="12", ship_to_city="Gent"), order_row("O2", total="20")])

    assert (order("O1").version, order("O2").version) == (2, 1)
    assert amendments("O1") == ["amended: total 10.00 -> 12.00; ship_to_city (empty) -> Gent"]
    assert amendments("O2") == []

    # Unchanged rows (the same file again under a new name) do not amend.
    import_rows(orders_in, "KS_ORDERS", [order_row("O1", total="12", ship_to_city="Gent")])
    assert order("O1").version == 2


def test_a_lines_file_replaces_the_lines_of_each_order_it_names_in_one_amendment(orders_in):
    import_rows(
        orders_in, "KS_ORDER_LINES", [line_row("O1", 1, quantity=4), line_row("O1", 3, "SKU3"), line_row("O2", 1)]
    )

    assert sorted(order("O1").lines.values_list("line_no", "quantity")) == [(1, 4), (3, 1)]
    assert order("O1").version == 2
    assert amendments("O1") == ["amended: line 1 quantity 1 -> 4; line 2 removed"]
    # O2's line is as it was, and O3 is not named: neither is amended.
    assert (order("O2").version, order("O3").version, order("O3").lines.count()) == (1, 1, 1)


@override_settings(IMPEX_CHUNK_ROWS=2, IMPEX_BATCH_SIZE=1)
def test_a_lines_file_in_several_chunks_amends_each_order_once_after_all_its_rows(orders_in):
    skus = {1: "SKU1", 2: "SKU2", 3: "SKU3"}
    rows = [line_row("O1", n, skus[n], quantity=n + 1) for n in (1, 2, 3)]
    rows += [line_row("O1", 4, "SKU2"), line_row("O2", 2)]

    import_rows(orders_in, "KS_ORDER_LINES", rows)

    assert sorted(order("O1").lines.values_list("line_no", flat=True)) == [1, 2, 3, 4]
    assert order("O1").version == 2
    (message,) = amendments("O1")
    assert message == "amended: line 1 quantity 1 -> 2; line 2 quantity 1 -> 3; line 3 quantity 1 -> 4; line 4 added"
    # O2's file named line 2 only: line 1 is removed, in the same single amendment.
    assert list(order("O2").lines.values_list("line_no", flat=True)) == [2]
    assert amendments("O2") == ["amended: line 2 added; line 1 removed"]


def test_a_new_order_takes_a_lines_file_as_its_content_without_a_new_version(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_rows(tmp_path, "KS_ORDERS", [order_row("N1")])
    assert order("N1").state == "new"
    import_rows(tmp_path, "KS_ORDER_LINES", [line_row("N1", 1), line_row("N1", 2)])
    assert (order("N1").state, order("N1").version) == ("confirmed", 1)
    assert amendments("N1") == []


def test_a_shipped_order_refuses_amendments_and_other_rows_go_on(orders_in):
    ship("O3")

    orders = import_with_errors(orders_in, "KS_ORDERS", [order_row("O3", total="31"), order_row("O2", total="21")])
    lines = import_with_errors(orders_in, "KS_ORDER_LINES", [line_row("O3", 1, quantity=9), line_row("O3", 2)])

    refused = "order O3 has shipped: it can no longer be amended"
    assert [(e["row"], e["column"], e["value"], e["message"]) for e in orders["errors"]] == [
        (2, "total", "31", refused)
    ]
    assert [(e["row"], e["column"], e["value"], e["message"]) for e in lines["errors"]] == [
        (2, "quantity", "9", refused),
        (3, "line_no", "2", refused),
    ]
    o3 = order("O3")
    assert (o3.total, o3.version, list(o3.lines.values_list("line_no", "quantity"))) == (30, 1, [(1, 1)])
    assert order("O2").version == 2
    with pytest.raises(OrderShipped, match="order O3 has shipped: it can no longer be cancelled"):
        order_cancel(order=o3, reason="too late", by="test")
    assert order("O3").state == "completed"


def test_a_row_refused_in_a_lines_file_keeps_its_order_s_lines(orders_in):
    result = import_with_errors(orders_in, "KS_ORDER_LINES", [line_row("O1", 1, "NOPE")])

    assert "unknown" in result["errors"][0]["message"]
    assert order("O1").lines.count() == 3 and order("O1").version == 1


def test_exporters_that_had_sent_an_order_get_it_again_when_it_is_amended_or_cancelled(
    tmp_path, kore_connection, webhook_receiver
):
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url, "--secret", SECRET)
    configure("late", "--flag", "late", "--kind", "webhook", "--url", webhook_receiver.url, "--secret", SECRET)
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1), line_row("O1", 2, "SKU2")])
    OrderFlag.objects.filter(flag="late").delete()  # only crm has sent it
    assert [(r["order"], r["exporter"], r["status"]) for r in export_pass()] == [("O1", "crm", "done")]
    assert order("O1").state == "exported"

    import_rows(tmp_path, "KS_ORDER_LINES", [line_row("O1", 1)])
    assert list(OrderFlag.objects.values_list("flag", flat=True)) == ["crm"]
    assert [(r["exporter"], r["status"]) for r in export_pass()] == [("crm", "done")]
    amended = webhook_receiver.received[-1].json["order"]
    assert (amended["state"], amended["version"], len(amended["lines"])) == ("exported", 2, 1)

    order_cancel(order=order("O1"), reason="customer called", by="test")
    assert [(r["exporter"], r["status"]) for r in export_pass()] == [("crm", "done")]
    cancelled = webhook_receiver.received[-1].json["order"]
    assert (cancelled["state"], cancelled["version"]) == ("cancelled", 2)
    assert len(webhook_receiver.received) == 3
    assert export_pass() == []


def test_cancelling_drops_the_waiting_flags_but_not_the_resend_flags(tmp_path, kore_connection):
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS", "--next-flag", "wms")
    configure("wms", "--flag", "wms", "--kind", "file", "--descriptor", "KS_ORDERS")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    export_pass("--limit", "1")  # erp done, wms waiting
    assert list(OrderFlag.objects.values_list("flag", flat=True)) == ["wms"]

    order_cancel(order=order("O1"), reason="customer called", by="test")

    assert list(OrderFlag.objects.values_list("flag", "status")) == [("erp", "pending")]
    dropped = OrderEvent.objects.filter(order__order_id="O1", message__startswith="flags dropped").get()
    assert dropped.message == "flags dropped: wms"


def test_a_refused_row_keeps_the_lines_of_an_order_whose_id_holds_a_slash(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(
        tmp_path,
        [order_row("2026/0001"), order_row("2026")],
        [line_row("2026/0001", 1), line_row("2026/0001", 2, "SKU2"), line_row("2026/0001", 3, "SKU3")]
        + [line_row("2026", 1), line_row("2026", 2)],
    )
    rows = [line_row("2026/0001", 1, quantity=4), line_row("2026/0001", 2, "NOPE"), line_row("2026", 1)]

    result = import_with_errors(tmp_path, "KS_ORDER_LINES", rows)

    assert [(e["row"], e["column"]) for e in result["errors"]] == [(3, "sku")]
    assert sorted(order("2026/0001").lines.values_list("line_no", flat=True)) == [1, 2, 3]
    assert list(order("2026").lines.values_list("line_no", flat=True)) == [1]


def test_the_migration_gives_orders_already_cancelled_the_status_cancelled(orders_in):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("orders.migrations.0009_order_status_amendment_notes")
    order_cancel(order=order("O1"), reason="before the status existed", by="test")
    Order.objects.update(status="open")  # what adding the column with its default left

    migration.status_from_state(apps, None)

    assert dict(Order.objects.values_list("order_id", "status")) == {"O1": "cancelled", "O2": "open", "O3": "open"}
