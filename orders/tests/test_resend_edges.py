"""Cancellations and amendments that meet the chain half-way (SPEC 7): one amendment per delivery of files, re-sends
from every way an order is cancelled, a new event for a new version, and the exporter whose send was under way."""

import json
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from impex.models import Problem
from impex.tests.helpers import process_env, run_import, write_kore
from orders.models import Order, OrderEvent, OrderFlag
from orders.services import order_cancel, order_reject
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


def bodies(receiver) -> list[tuple[str, int]]:
    return [(post.json["order"]["state"], post.json["order"]["version"]) for post in receiver.received]


def amendments(order_id: str) -> list[str]:
    return list(OrderEvent.objects.filter(order__order_id=order_id, kind="amended").values_list("message", flat=True))


def test_a_ks_orders_and_a_ks_order_lines_file_of_one_delivery_are_one_amendment(
    tmp_path, kore_connection, webhook_receiver
):
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url)
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1), line_row("O1", 2, "SKU2")])
    export_pass()
    assert Order.objects.get().state == "exported"

    sequence = _next_sequence("kore-erp")
    header = write_kore(tmp_path, "KS_ORDERS", sequence, [order_row("O1", total="12")])
    lines = write_kore(tmp_path, "KS_ORDER_LINES", sequence, [line_row("O1", 1)])
    code, report = run_import(header, lines, connection="kore-erp")

    assert code == 0, report
    assert Order.objects.get().version == 2
    assert amendments("O1") == ["amended: total 10.00 -> 12.00; line 2 removed"]
    export_pass()
    assert bodies(webhook_receiver) == [("confirmed", 1), ("exported", 2)]

    # A later delivery is another amendment.
    import_rows(tmp_path, "KS_ORDERS", [order_row("O1", total="13")])
    assert Order.objects.get().version == 3
    assert amendments("O1")[-1] == "amended: total 12.00 -> 13.00"


def test_a_rejected_order_is_sent_again_to_the_exporters_that_had_sent_it(tmp_path, kore_connection, webhook_receiver):
    configure("erp", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url, "--next-flag", "approval")
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "1", "--next-flag", "wms")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1)])
    export_pass()
    order = Order.objects.get()
    assert order.state == "on_hold"
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")

    order_reject(order=order, user=boss, reason="not this customer")
    export_pass()

    assert bodies(webhook_receiver) == [("confirmed", 1), ("cancelled", 1)]


def test_an_amendment_during_a_failing_first_send_is_a_new_event(tmp_path, kore_connection, webhook_receiver):
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url)
    webhook_receiver.answer_next(500)
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1), line_row("O1", 2, "SKU2")])
    export_pass()
    # The order is confirmed, not yet exported: an amendment raises its version; the retry sends version 2 as a new
    # event, which a receiver that took version 1 in does not drop as a repeat.
    import_rows(tmp_path, "KS_ORDER_LINES", [line_row("O1", 1)])
    export_pass("--retry-now")

    first, second = webhook_receiver.received
    assert bodies(webhook_receiver) == [("confirmed", 1), ("confirmed", 2)]
    assert first.headers["X-Event-Id"] != second.headers["X-Event-Id"]
    assert Order.objects.get().state == "exported"


def test_a_cancel_resolves_the_problems_of_exporters_that_gave_up_on_the_order(
    tmp_path, kore_connection, webhook_receiver
):
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url)
    webhook_receiver.answer_next(400)  # refused: not retried, a problem
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1)])
    export_pass()
    assert list(Problem.objects.filter(resolved_at=None).values_list("key", flat=True)) == ["exporter:wms:order:O1"]

    order_cancel(order=Order.objects.get(), reason="customer called", by="test")

    assert not Problem.objects.filter(resolved_at=None).exists()
    assert not OrderFlag.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two processes share the database: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("builtin_installed")
def test_an_order_cancelled_while_its_first_send_is_under_way_is_sent_again_cancelled(
    tmp_path, kore_connection, webhook_receiver
):
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url, "--timeout", "20")
    webhook_receiver.answer_next(200, delay=3)  # the receiver takes its time with the first send
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="10")], [line_row("O1", 1)])
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "orders_export", "--json"],
        cwd=settings.BASE_DIR,
        env=process_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not webhook_receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert webhook_receiver.received, log.read_text()

    order_cancel(order=Order.objects.get(), reason="customer called", by="test")  # while wms is sending

    assert worker.wait(timeout=120) == 0, log.read_text()
    runs = json.loads(log.read_text().strip().splitlines()[-1])["runs"]
    assert [(r["exporter"], r["status"]) for r in runs][:1] == [("wms", "done")]
    export_pass()
    assert bodies(webhook_receiver) == [("confirmed", 1), ("cancelled", 1)]
