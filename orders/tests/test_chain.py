"""The order export chain of SPEC section 7: approval, webhook and file exporters driven by flags."""

import csv
import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError
from django.utils import timezone

from orders.models import Order, OrderEvent, OrderExportRun, OrderFlag
from orders.services import flag_retry, order_approve, order_reject
from orders.tests.helpers import (
    configure,
    export_pass,
    import_catalogue,
    import_orders,
    line_row,
    order_row,
)

SECRET = "s3cr3t-key"


def outbox() -> Path:
    return Path(settings.IMPEX_ROOT) / "kore-erp" / "outbox"


def states() -> dict[str, str]:
    return dict(Order.objects.values_list("order_id", "state"))


def make_due(order_id: str) -> None:
    """Bring a backed-off flag's next try to now (the test does not wait minutes)."""
    OrderFlag.objects.filter(order__order_id=order_id).update(next_attempt_at=timezone.now())


@pytest.fixture
def three_exporters(webhook_receiver):
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "500", "--next-flag", "crm")
    configure(
        "crm",
        "--flag",
        "crm",
        "--kind",
        "webhook",
        "--url",
        webhook_receiver.url,
        "--secret",
        SECRET,
        "--next-flag",
        "erp",
        "--timeout",
        "2",
    )
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    return webhook_receiver


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("ana", "ana@example.com", "pw")


def test_the_whole_chain_approval_webhook_file_end_to_end(tmp_path, kore_connection, three_exporters, admin_user):
    receiver = three_exporters
    import_catalogue(tmp_path, inactive=("CU9",))
    import_orders(
        tmp_path,
        [order_row("O1", total="120"), order_row("O2", total="900"), order_row("O3", "CU9", total="10")],
        [line_row("O1", 1), line_row("O1", 2, "SKU2", quantity=3), line_row("O2", 1), line_row("O3", 1)],
    )
    assert set(OrderFlag.objects.values_list("flag", flat=True)) == {"approval"}

    runs = export_pass()

    by_order = {}
    for run in runs:
        by_order.setdefault(run["order"], []).append((run["exporter"], run["status"]))
    assert by_order == {
        "O1": [("gate", "done"), ("crm", "done"), ("erp", "done")],
        "O2": [("gate", "held")],
        "O3": [("gate", "held")],
    }
    assert set(runs[0]) == {"order", "exporter", "status", "message"}
    assert states() == {"O1": "exported", "O2": "on_hold", "O3": "on_hold"}
    held = {r["order"]: r["message"] for r in runs if r["status"] == "held"}
    assert "its total 900.00 EUR is at least 500.00 EUR" in held["O2"]
    assert "customer CU9 is inactive" in held["O3"]
    # The webhook: one POST, signed with the secret over the exact body, with the flag's event id.
    (post,) = receiver.received
    expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert post.headers["X-Signature"] == expected
    assert post.headers["Content-Type"] == "application/json"
    assert post.json["order"]["order_id"] == "O1"
    assert [line["sku"] for line in post.json["order"]["lines"]] == ["SKU1", "SKU2"]
    assert post.headers["X-Event-Id"] == post.json["event_id"]
    # The file: header and lines with the descriptors' layouts, in the connection's outbox.
    header = list(csv.DictReader((outbox() / "erp_O1.tsv").open(encoding="utf-8"), delimiter="\t"))
    lines = list(csv.DictReader((outbox() / "erp_O1_lines.tsv").open(encoding="utf-8"), delimiter="\t"))
    assert [(h["order_id"], h["total"], h["customer_id"]) for h in header] == [("O1", "120", "CU1")]
    assert [(x["line_no"], x["sku"], x["quantity"]) for x in lines] == [("1", "SKU1", "1"), ("2", "SKU2", "3")]
    assert sorted(p.name for p in outbox().iterdir()) == ["erp_O1.tsv", "erp_O1_lines.tsv"]
    assert not OrderFlag.objects.filter(order__order_id="O1").exists()

    # Staff approve O2: it goes on along the chain in the next pass; rejecting O3 cancels it.
    order_approve(order=Order.objects.get(order_id="O2"), user=admin_user, reason="known customer")
    order_reject(order=Order.objects.get(order_id="O3"), user=admin_user, reason="customer closed")
    assert list(OrderFlag.objects.values_list("order__order_id", "flag", "status")) == [("O2", "crm", "pending")]

    runs = export_pass()

    assert [(r["order"], r["exporter"], r["status"]) for r in runs] == [("O2", "crm", "done"), ("O2", "erp", "done")]
    assert states() == {"O1": "exported", "O2": "exported", "O3": "cancelled"}
    assert [p.json["order"]["order_id"] for p in receiver.received] == ["O1", "O2"]
    assert export_pass() == []  # nothing is exported twice
    timeline = list(OrderEvent.objects.filter(order__order_id="O2").values_list("kind", "transition", "flag", "by"))
    assert ("transition", "approve", "", "ana") in timeline
    assert ("transition", "mark_exported", "", "exporter erp") in timeline
    reject = OrderEvent.objects.get(order__order_id="O3", transition="reject")
    assert (reject.user, reject.message, reject.to_state) == (admin_user, "customer closed", "cancelled")


def test_a_server_error_is_retried_with_back_off_and_a_refusal_is_not(tmp_path, kore_connection, webhook_receiver):
    configure(
        "crm",
        "--flag",
        "crm",
        "--kind",
        "webhook",
        "--url",
        webhook_receiver.url,
        "--secret",
        SECRET,
        "--max-attempts",
        "4",
    )
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O2", 1)])
    webhook_receiver.answer_next(500, 422)  # O1 gets a server error, O2 is refused

    runs = export_pass()

    assert [(r["order"], r["status"]) for r in runs] == [("O1", "failed"), ("O2", "failed")]
    assert "POST " in runs[0]["message"] and ": 500" in runs[0]["message"] and "try 1 of 4" in runs[0]["message"]
    assert "not retried" in runs[1]["message"]
    o1 = OrderFlag.objects.get(order__order_id="O1")
    o2 = OrderFlag.objects.get(order__order_id="O2")
    assert (o1.status, o1.attempts) == ("pending", 1)
    assert timedelta(seconds=50) < o1.next_attempt_at - timezone.now() <= timedelta(minutes=1)
    assert (o2.status, o2.attempts, o2.last_error.split(": ", 1)[1]) == ("failed", 1, "422 Unprocessable Entity")
    # The receiver's answer is kept with the run only (shown to who may change exporters), not in the messages.
    assert OrderExportRun.objects.get(order__order_id="O2").response == "answer 422"
    assert export_pass() == []  # not due yet: backing off

    webhook_receiver.answer_next(503, 503)
    waits = []
    for _ in range(2):
        make_due("O1")
        (run,) = export_pass()
        assert run["status"] == "failed"
        flag = OrderFlag.objects.get(order__order_id="O1")
        waits.append(round((flag.next_attempt_at - timezone.now()).total_seconds() / 60))
    assert waits == [2, 4]
    webhook_receiver.answer_next(500)
    make_due("O1")
    (run,) = export_pass()
    assert "gave up after 4 tries" in run["message"]
    assert OrderFlag.objects.get(order__order_id="O1").status == "failed"
    assert OrderExportRun.objects.filter(order__order_id="O1", status="failed").count() == 4

    # Staff retry: the flag is tried again at once, and the receiver takes it this time.
    flag_retry(flag=OrderFlag.objects.get(order__order_id="O1"), user=_user())
    (run,) = [r for r in export_pass() if r["order"] == "O1"]
    assert run["status"] == "done"
    assert states()["O1"] == "exported"
    event_ids = {p.headers["X-Event-Id"] for p in webhook_receiver.received if p.json["order"]["order_id"] == "O1"}
    assert len(event_ids) == 1  # every retry of one flag carries the same event id
    assert OrderEvent.objects.filter(order__order_id="O1", kind="retry", by="retrier").exists()


def _user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("retrier")


def test_no_answer_within_the_timeout_is_a_failure_retried_later(tmp_path, kore_connection, webhook_receiver):
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url, "--timeout", "1")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    webhook_receiver.answer_next(200, delay=3)

    (run,) = export_pass()

    assert run["status"] == "failed"
    assert "no answer within 1 s" in run["message"]
    assert OrderFlag.objects.get().status == "pending"


def test_an_unreachable_receiver_is_retried(tmp_path, kore_connection):
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", "http://127.0.0.1:9/nothing-listens")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])

    (run,) = export_pass()

    assert run["status"] == "failed" and "try 1 of 10" in run["message"]
    assert OrderFlag.objects.get().status == "pending"


def test_a_file_exporter_writes_to_its_destination_and_a_retry_overwrites(tmp_path, kore_connection):
    target = tmp_path / "erp-drop"
    configure("erp", "--flag", "erp", "--kind", "file", "--destination", str(target))
    # A second exporter of the flag that cannot deliver keeps the order confirmed, so its state stays the same.
    configure("crm", "--flag", "erp", "--kind", "webhook", "--url", "http://127.0.0.1:9/nothing-listens")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O/1 x")], [line_row("O/1 x", 1)])

    runs = {run["exporter"]: run for run in export_pass()}

    assert runs["erp"]["status"] == "done" and runs["crm"]["status"] == "failed"
    names = ["erp_O_1_x.tsv", "erp_O_1_x_lines.tsv"]
    assert sorted(p.name for p in target.iterdir()) == names
    # Sent again (a worker that died after writing, before recording it): the same names, no second copy.
    OrderFlag.objects.filter(exporter__code="erp").update(status="pending")
    assert [run["exporter"] for run in export_pass()] == ["erp"]
    assert sorted(p.name for p in target.iterdir()) == names


def test_a_flag_with_no_exporter_waits_and_an_exporter_switched_off_stops_taking_orders(tmp_path, kore_connection):
    configure("erp", "--flag", "erp", "--kind", "file")
    configure("erp", "--off")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])

    assert export_pass() == []
    configure("erp", "--on")
    (run,) = export_pass()
    assert run["status"] == "done"


def test_a_lost_worker_s_flag_is_taken_over_when_its_lease_runs_out(tmp_path, kore_connection):
    configure("erp", "--flag", "erp", "--kind", "file")
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    OrderFlag.objects.update(
        status="running", claimed_by="dead-worker", lease_until=timezone.now() + timedelta(minutes=1)
    )

    assert export_pass() == []
    OrderFlag.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    (run,) = export_pass()
    assert run["status"] == "done"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--kind", "file"], "--flag"),
        (["x", "--flag", "a", "--kind", "webhook"], "--url: a webhook exporter needs an http:// or https:// URL"),
        (["x", "--flag", "a", "--kind", "webhook", "--url", "ftp://h/"], "--url"),
        (["x", "--flag", "a", "--kind", "file", "--descriptor", "NOPE"], "no descriptor or export group is called"),
        (["x", "--flag", "a", "--kind", "file", "--descriptor", "KS_CUSTOMERS"], "not of orders"),
        (["x", "--flag", "a", "--kind", "approval", "--min-total", "lots"], "is not an amount"),
        (["x", "--flag", "a b", "--kind", "approval"], "--flag"),
        (["x", "--flag", "a", "--kind", "file", "--next-flag", "a"], "its own flag"),
        (["x", "--flag", "a", "--kind", "file", "--destination", "ftp://h/x"], "--destination"),
    ],
)
@pytest.mark.django_db
def test_orders_exporter_refuses_what_cannot_work_with_the_option_to_change(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        configure(*args)
    from orders.models import Exporter

    assert not Exporter.objects.exists()


@pytest.mark.django_db
def test_exporters_may_share_a_flag_but_not_with_a_gate_and_only_with_one_next_flag():
    configure("a", "--flag", "erp", "--kind", "file", "--next-flag", "crm")
    assert configure("b", "--flag", "erp", "--kind", "file", "--next-flag", "crm")["created"] is True
    # One of them naming the next flag is enough.
    assert configure("e", "--flag", "erp", "--kind", "file")["created"] is True

    with pytest.raises(CommandError, match="--next-flag: the exporter a of the flag erp hands orders on to crm"):
        configure("c", "--flag", "erp", "--kind", "file", "--next-flag", "wms")
    gate_alone = "--flag: an approval gate must be the only exporter of its flag, and a, b, e"
    with pytest.raises(CommandError, match=gate_alone):
        configure("gate", "--flag", "erp", "--kind", "approval", "--next-flag", "crm")
    configure("gate", "--flag", "approval", "--kind", "approval", "--next-flag", "erp")
    with pytest.raises(CommandError, match="--flag: the approval gate gate acts on the flag approval"):
        configure("d", "--flag", "approval", "--kind", "file", "--next-flag", "erp")
    configure("a", "--off")
    configure("b", "--off")
    assert configure("c", "--flag", "erp", "--kind", "file", "--next-flag", "wms")["created"] is True
