"""Several exporters on one flag (SPEC 7): each delivers and is retried on its own, the next flag is set once all have
sent the order; and re-sends of a cancelled or amended order to the exporters that had sent it."""

import re
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from orders.models import Order, OrderEvent, OrderExportRun, OrderFlag
from orders.services import order_resend, order_transition
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row


def outbox() -> Path:
    return Path(settings.IMPEX_ROOT) / "kore-erp" / "outbox"


def exporters_of(runs: list[dict]) -> list[tuple[str, str]]:
    return sorted((run["exporter"], run["status"]) for run in runs)


def posts(receiver, exporter: str) -> list:
    return [post for post in receiver.received if post.json["exporter"] == exporter]


def page_text(client, order: Order) -> str:
    html = client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def sent_table(client, order: Order) -> str:
    return page_text(client, order).split("Sent by")[1].split("Timeline")[0]


@pytest.fixture
def erp_and_wms(webhook_receiver):
    """The flag erp sent as a file (erp) and to a warehouse webhook (wms); then crm (a webhook) once both have: one
    exporter of a flag naming the next flag is enough."""
    configure("erp", "--flag", "erp", "--kind", "file", "--next-flag", "crm")
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url)
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url + "?crm", "--timeout", "2")
    return webhook_receiver


def test_two_exporters_of_a_flag_retry_on_their_own_and_the_next_flag_is_set_once(
    tmp_path, kore_connection, erp_and_wms, admin_client
):
    receiver = erp_and_wms
    receiver.answer_next(500, 503)  # the warehouse is down for its first two tries
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    order = Order.objects.get()
    assert sorted(OrderFlag.objects.values_list("flag", "exporter__code")) == [("erp", "erp"), ("erp", "wms")]

    first = export_pass()

    assert exporters_of(first) == [("erp", "done"), ("wms", "failed")]
    assert "try 1 of 10" in next(run["message"] for run in first if run["exporter"] == "wms")
    assert dict(OrderFlag.objects.values_list("exporter__code", "status")) == {"erp": "done", "wms": "pending"}
    assert export_pass() == []  # the warehouse's retry is not due yet, and the file is not written again

    second = export_pass("--retry-now")

    assert exporters_of(second) == [("wms", "failed")]
    # The admin's action makes the third try due now; the next pass sends it and moves the chain on.
    response = admin_client.post(
        reverse("admin:orders_order_changelist") + "?approval=all",
        {"action": "retry_waiting_now", "_selected_action": [order.pk], "index": "0"},
    )
    assert response.status_code == 302
    third = export_pass()

    assert exporters_of(third) == [("crm", "done"), ("wms", "done")]
    order.refresh_from_db()
    assert order.state == "exported" and not order.flags.exists()
    done = Counter(OrderExportRun.objects.filter(status="done").values_list("exporter_code", flat=True))
    assert done == {"erp": 1, "wms": 1, "crm": 1}
    assert sorted(p.name for p in outbox().iterdir()) == ["erp_O1.tsv", "erp_O1_lines.tsv"]
    wms = posts(receiver, "wms")
    assert len(wms) == 3 and len({post.headers["X-Event-Id"] for post in wms}) == 1  # one event, tried three times
    assert [post.path for post in posts(receiver, "crm")] == ["/hooks/orders?crm"]
    assert OrderEvent.objects.filter(kind="flag_set", flag="crm").count() == 1
    assert OrderEvent.objects.filter(kind="retry", flag="erp").count() == 2  # --retry-now, then the admin's action
    # The order's page says who sent it, when, which version and state.
    sent = sent_table(admin_client, order)
    for exporter, flag in (("erp", "erp"), ("wms", "erp"), ("crm", "crm")):
        assert re.search(rf"{exporter} {flag} \d{{4}}-\d\d-\d\d \d\d:\d\d 1 Confirmed", sent), sent


def test_a_resent_order_carries_its_new_state_and_version_to_the_exporters_that_had_sent_it(
    tmp_path, kore_connection, webhook_receiver, admin_client
):
    receiver = webhook_receiver
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "500", "--next-flag", "erp")
    configure("erp", "--flag", "erp", "--kind", "file")
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", receiver.url)
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    export_pass()
    order = Order.objects.get()
    assert order.state == "exported"
    configure("late", "--flag", "later", "--kind", "webhook", "--url", receiver.url)  # never sent O1

    # An amendment (version 2): each exporter that had sent the order gets it again, the gate does not.
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        Order.objects.filter(pk=order.pk).update(version=2)
        order.refresh_from_db()
        assert order_resend(order, by="test") == ["erp", "wms"]
    amended = export_pass()

    assert exporters_of(amended) == [("erp", "done"), ("wms", "done")]
    first, again = posts(receiver, "wms")
    assert (first.json["order"]["state"], first.json["order"]["version"]) == ("confirmed", 1)
    assert (again.json["order"]["state"], again.json["order"]["version"]) == ("exported", 2)
    assert again.headers["X-Event-Id"] == again.json["event_id"] != first.headers["X-Event-Id"]
    assert "erp_O1_v2_exported.tsv" in {p.name for p in outbox().iterdir()}

    # Cancelled: a re-send queued before the cancel is not dropped with the chain's flags; it sends the new state.
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_resend(order, by="test")
        order_transition(order=order, transition="cancel", by="test", reason="customer changed their mind")
    assert OrderFlag.objects.filter(resend=True).count() == 2
    cancelled = export_pass()

    assert exporters_of(cancelled) == [("erp", "done"), ("wms", "done")]
    assert posts(receiver, "wms")[-1].json["order"]["state"] == "cancelled"
    assert sorted(p.name for p in outbox().iterdir()) == [
        "erp_O1.tsv",
        "erp_O1_lines.tsv",
        "erp_O1_v2_cancelled.tsv",
        "erp_O1_v2_cancelled_lines.tsv",
        "erp_O1_v2_exported.tsv",
        "erp_O1_v2_exported_lines.tsv",
    ]
    assert not posts(receiver, "late") and not OrderFlag.objects.exists()
    runs = OrderExportRun.objects.filter(exporter_code="wms", status="done").order_by("pk")
    assert [(r.version, r.state, r.resend) for r in runs] == [
        (1, "confirmed", False),
        (2, "exported", True),
        (2, "cancelled", True),
    ]
    sent = sent_table(admin_client, order)
    assert "wms (re-send) erp" in sent and " 2 Cancelled " in sent and " 1 Confirmed " in sent
    assert "gate" not in sent


def test_an_exporter_added_joins_orders_carrying_its_flag_and_one_switched_off_no_longer_holds_it_up(
    tmp_path, kore_connection, webhook_receiver
):
    receiver = webhook_receiver
    receiver.default = (500, 0.0)
    configure("erp", "--flag", "erp", "--kind", "file")
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", receiver.url, "--max-attempts", "1")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])

    assert exporters_of(export_pass()) == [("erp", "done"), ("wms", "failed")]
    assert dict(OrderFlag.objects.values_list("exporter__code", "status")) == {"erp": "done", "wms": "failed"}
    assert export_pass("--retry-now") == []  # failed for good: only the admin's "Retry" takes it up again

    receiver.default = (200, 0.0)
    configure("extra", "--flag", "erp", "--kind", "webhook", "--url", receiver.url + "?extra")

    assert exporters_of(export_pass()) == [("extra", "done")]  # erp is not sent again
    assert Order.objects.get().state == "confirmed"  # wms has not sent it

    configure("wms", "--off")

    assert export_pass() == []
    order = Order.objects.get()
    assert order.state == "exported" and not order.flags.exists()
    assert Counter(OrderExportRun.objects.filter(status="done").values_list("exporter_code", flat=True)) == {
        "erp": 1,
        "extra": 1,
    }
    assert OrderEvent.objects.filter(kind="note", message="erp is now sent by extra too").count() == 1


def test_the_migration_gives_each_waiting_flag_to_the_exporter_that_acted_on_it(tmp_path, kore_connection):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("orders.migrations.0008_exporters_per_flag_deliveries")
    configure("erp", "--flag", "erp", "--kind", "file")
    configure("old", "--flag", "crm", "--kind", "file", "--off")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O2", 1)])
    o1, o2 = Order.objects.order_by("order_id")
    # The shape before: one row per flag, no exporter; runs without a version.
    OrderFlag.objects.all().delete()
    OrderFlag.objects.create(order=o1, flag="erp", status="failed", attempts=10, last_error="HTTP 500")
    OrderFlag.objects.create(order=o2, flag="erp", status="pending", attempts=2)
    OrderFlag.objects.create(order=o2, flag="crm")
    OrderExportRun.objects.create(order=o1, exporter_code="erp", flag="erp", status="done")

    migration.deliveries_from_flags(apps, None)

    rows = OrderFlag.objects.order_by("order__order_id", "flag")
    assert [(r.order.order_id, r.flag, r.exporter.code if r.exporter else None, r.status) for r in rows] == [
        ("O1", "erp", "erp", "failed"),
        ("O2", "crm", None, "pending"),  # no enabled exporter acts on crm: it keeps waiting for one
        ("O2", "erp", "erp", "pending"),
    ]
    assert OrderExportRun.objects.get().version == 1


def test_reversing_the_migration_leaves_one_enabled_exporter_per_flag_the_first_by_code(tmp_path, kore_connection):
    import importlib

    from django.apps import apps

    from orders.models import Exporter

    migration = importlib.import_module("orders.migrations.0008_exporters_per_flag_deliveries")
    for code, flag in (("wms", "erp"), ("crm", "erp"), ("mail", "erp"), ("bi", "bi")):
        configure(code, "--flag", flag, "--kind", "file")
    configure("audit", "--flag", "bi", "--kind", "file", "--off")

    migration.flags_from_deliveries(apps, None)

    assert dict(Exporter.objects.values_list("code", "enabled")) == {
        "audit": False,
        "bi": True,
        "crm": True,
        "mail": False,
        "wms": False,
    }
