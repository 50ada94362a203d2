"""The order export pass works a batch of deliveries at a time (issue 18): its statements do not grow with the
batch, and each delivery of a batch keeps its own outcome."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from impex.models import DataDescriptor
from orders.chain import orders_export_pass
from orders.models import Order, OrderExportRun, OrderFlag
from orders.tests.helpers import configure, import_catalogue, import_orders, line_row, order_row

# SQLite takes at most 999 parameters a statement, so Django splits a bulk insert of more than ~60 rows of a
# wide table into several; PostgreSQL writes any batch in one.
BIG = 100 if connection.vendor == "postgresql" else 50


@pytest.fixture
def one_batch(settings):
    settings.IMPEX_LEASE_SECONDS = 3600  # one lease covers a batch of 100 at any timeout


def orders(tmp_path, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    import_orders(tmp_path / prefix, [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
    return ids


def pass_statements(tmp_path, prefix: str, n: int, *, exporters: int = 1) -> int:
    ids = orders(tmp_path, prefix, n)
    with CaptureQueriesContext(connection) as queries:
        reports = orders_export_pass(by="test")
    assert sorted(r.order for r in reports) == sorted(ids * exporters)
    assert {r.status for r in reports} == {"done"}
    assert Order.objects.filter(order_id__in=ids, state="exported").count() == n
    return len(queries)


def test_a_file_exporter_pass_costs_the_same_statements_for_10_and_100_orders(tmp_path, kore_connection, one_batch):
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    import_catalogue(tmp_path)

    assert pass_statements(tmp_path, "A", 10) == pass_statements(tmp_path, "B", BIG)
    assert OrderExportRun.objects.count() == 10 + BIG
    assert not OrderFlag.objects.exists()


def test_a_webhook_chain_pass_costs_the_same_statements_for_10_and_100_orders(
    tmp_path, kore_connection, one_batch, webhook_receiver
):
    configure("hook", "--flag", "hook", "--kind", "webhook", "--url", webhook_receiver.url, "--next-flag", "erp")
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    import_catalogue(tmp_path)

    assert pass_statements(tmp_path, "A", 10, exporters=2) == pass_statements(tmp_path, "B", BIG, exporters=2)
    assert len(webhook_receiver.received) == 10 + BIG
    assert len({post.headers["X-Event-Id"] for post in webhook_receiver.received}) == 10 + BIG


def test_each_delivery_of_a_batch_keeps_its_own_outcome(tmp_path, kore_connection, webhook_receiver):
    configure("hook", "--flag", "hook", "--kind", "webhook", "--url", webhook_receiver.url, "--next-flag", "erp")
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    import_catalogue(tmp_path)
    ids = orders(tmp_path, "C", 3)
    webhook_receiver.default = (503, 0.0)
    webhook_receiver.answer_next(200, 400)  # the first two POSTs: one accepted, one refused for good

    reports = orders_export_pass(by="test")

    outcome = {r.order: (r.exporter, r.status) for r in reports}
    by_state = {o.order_id: o.state for o in Order.objects.filter(order_id__in=ids)}
    assert sorted(by_state.values()) == ["confirmed", "confirmed", "exported"]
    (exported,) = [i for i, state in by_state.items() if state == "exported"]
    assert outcome[exported] == ("erp", "done")  # its webhook went through, then its file
    flags = {f.order.order_id: (f.flag, f.status, f.attempts) for f in OrderFlag.objects.select_related("order")}
    assert sorted(flags.values()) == [("hook", "failed", 1), ("hook", "pending", 1)]
    refused = OrderFlag.objects.get(status="failed")
    assert "400" in refused.last_error


def test_a_layout_that_cannot_write_a_value_fails_each_delivery_not_the_pass(tmp_path, kore_connection):
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    import_catalogue(tmp_path)
    orders(tmp_path, "P", 3)
    # An admin types a text column of the header as decimal: its values cannot be written.
    column = (
        DataDescriptor.objects.get(code="KS_ORDERS")
        .columns.exclude(type__in=["decimal", "integer"])
        .filter(ignored=False)
        .first()
    )
    column.type = "decimal"
    column.save()

    reports = orders_export_pass(by="test")

    assert [r.status for r in reports] == ["failed"] * 3
    flags = list(OrderFlag.objects.values_list("status", "attempts", "last_error"))
    assert all(status == "pending" and attempts == 1 and "writing to" in error for status, attempts, error in flags)


def test_an_answer_the_database_cannot_hold_is_recorded_and_sends_nothing_twice(
    tmp_path, kore_connection, webhook_receiver
):
    configure("hook", "--flag", "hook", "--kind", "webhook", "--url", webhook_receiver.url)
    import_catalogue(tmp_path)
    ids = orders(tmp_path, "N", 4)
    webhook_receiver.body = b"ok\x00"  # PostgreSQL text cannot hold a NUL byte

    reports = orders_export_pass(by="test")

    assert sorted(r.order for r in reports) == sorted(ids)
    assert len(webhook_receiver.received) == 4
    assert Order.objects.filter(order_id__in=ids, state="exported").count() == 4
    assert orders_export_pass(by="test") == []
    assert len(webhook_receiver.received) == 4
