"""Issue 16 M1 for webhook exporters: the URL must name a public host unless IMPEX_ALLOWED_HOSTS_OUTBOUND lists it
(refused when saved, by orders_exporter and the admin alike, and again when sending, without a connection); a
receiver's answer is kept with the run and shown only to who may change exporters, never in the messages and
timeline rows everyone sees."""

import importlib
import socket

import pytest
from django.apps import apps
from django.core.management import CommandError

from orders.models import Exporter, Order, OrderEvent, OrderExportRun, OrderFlag
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row
from tests.admin_helpers import admin_url, staff_user

MIGRATION = importlib.import_module("orders.migrations.0004_export_run_answers")
PUBLIC_URL = "https://93.184.216.34/orders"
# What a receiver's answer may give away about the system behind it.
ANSWER = "Traceback: db=postgres://erp:hunter2@10.0.0.7/erp"


def webhook(url: str, *extra: str) -> dict:
    return configure("crm", "--flag", "crm", "--kind", "webhook", "--url", url, *extra)


def import_order(tmp_path) -> Order:
    """Import order O1 with its line: confirmed, it carries the flag crm."""
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    return Order.objects.get(order_id="O1")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000/orders", "loopback"),
        ("http://localhost/orders", "loopback"),
        ("http://10.1.2.3/orders", "private"),
        ("http://172.16.0.9/orders", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fe80::1]/orders", "link-local"),
    ],
)
def test_orders_exporter_refuses_a_host_that_is_not_public(db, nothing_listed, url, why):
    with pytest.raises(CommandError) as refused:
        webhook(url)

    assert "--url" in str(refused.value)
    assert why in str(refused.value) and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in str(refused.value)
    assert not Exporter.objects.exists()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000\\@93.184.216.34/orders", "backslash"),
        ("https://u:pw@93.184.216.34/orders?key=SECRETQ", "user names and passwords"),
    ],
)
def test_orders_exporter_refuses_a_url_parsers_read_differently_or_holding_a_login(db, nothing_listed, url, why):
    with pytest.raises(CommandError, match=why):
        webhook(url)

    assert not Exporter.objects.exists()


def test_a_refused_url_leaves_the_exporter_as_it_was(db, nothing_listed):
    webhook(PUBLIC_URL)

    with pytest.raises(CommandError, match="private"):
        configure("crm", "--url", "http://192.168.0.1/orders")

    assert Exporter.objects.get().url == PUBLIC_URL


def test_a_file_exporter_turned_into_a_webhook_has_its_url_checked(db, nothing_listed):
    Exporter.objects.create(code="crm", flag="crm", kind="file", url="http://127.0.0.1:8000/orders")

    with pytest.raises(CommandError, match="loopback"):
        configure("crm", "--kind", "webhook")

    assert Exporter.objects.get().kind == "file"


def test_a_saved_url_no_longer_listed_still_lets_the_exporter_be_switched_off(db, settings):
    webhook("http://127.0.0.1:9/orders")  # loopback is listed in the tests
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []

    configure("crm", "--off")

    assert Exporter.objects.get().enabled is False


def test_the_admin_refuses_a_host_that_is_not_public(admin_client, nothing_listed):
    data = {"code": "crm", "name": "", "kind": "webhook", "flag": "crm", "enabled": "on", "max_attempts": "10"}
    data.update({"timeout_seconds": "10", "destination": "", "secret": ""})

    add = admin_client.post(admin_url(Exporter, "add"), {**data, "url": "http://169.254.169.254/latest/"})
    hook = Exporter.objects.create(code="crm", kind="webhook", flag="crm", url=PUBLIC_URL)
    change = admin_client.post(admin_url(Exporter, "change", hook.pk), {**data, "url": "http://10.0.0.1/orders"})

    assert (add.status_code, change.status_code) == (200, 200)
    (on_add,) = add.context["adminform"].form.errors["url"]
    (on_change,) = change.context["adminform"].form.errors["url"]
    assert "metadata" in on_add and "private" in on_change
    assert "IMPEX_ALLOWED_HOSTS_OUTBOUND" in on_add and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in on_change
    assert list(Exporter.objects.values_list("code", "url")) == [("crm", PUBLIC_URL)]


def test_a_receiver_on_loopback_that_is_not_listed_gets_no_connection(tmp_path, kore_connection, settings):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        webhook(f"http://127.0.0.1:{listener.getsockname()[1]}/orders")  # saved while loopback was listed
        import_order(tmp_path)
        settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []

        (run,) = export_pass()

        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was ever made to the receiver's port

    recorded = OrderExportRun.objects.get()
    flag = OrderFlag.objects.get(flag="crm")
    assert (run["status"], recorded.status, flag.status) == ("failed", "failed", "failed")  # not tried again
    for text in (run["message"], recorded.message, flag.last_error):
        assert "refused" in text and "loopback" in text and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in text
    assert "not retried" in recorded.message and recorded.http_status is None


@pytest.fixture
def answered(tmp_path, kore_connection, webhook_receiver):
    """Order O1 whose webhook exporter got a 500 with an answer that gives away too much."""
    webhook_receiver.body = ANSWER.encode()
    webhook_receiver.answer_next(500)
    webhook(webhook_receiver.url, "--secret", "k", "--max-attempts", "1")
    order = import_order(tmp_path)
    (run,) = export_pass()
    return order, run


def test_an_answer_is_kept_with_the_run_and_out_of_every_message(answered):
    order, run = answered

    recorded = OrderExportRun.objects.get()
    assert recorded.response == ANSWER
    assert recorded.http_status == 500 and "500 Internal Server Error" in recorded.message
    texts = [run["message"], recorded.message, OrderFlag.objects.get(order=order).last_error]
    texts += list(OrderEvent.objects.values_list("message", flat=True))
    assert [text for text in texts if "hunter2" in text] == []


def test_an_answer_is_shown_only_to_who_may_change_exporters(answered, client, django_user_model):
    order, _ = answered
    run = OrderExportRun.objects.get()
    pages = {
        "order": admin_url(Order, "change", order.pk),
        "run": admin_url(OrderExportRun, "change", run.pk),
        "runs": admin_url(OrderExportRun, "changelist"),
    }
    views = ("orders.view_order", "orders.view_orderexportrun", "orders.view_exporter")
    viewer = staff_user(django_user_model, "vic", *views, "orders.change_order")
    editor = staff_user(django_user_model, "eve", *views, "orders.change_exporter")

    client.force_login(viewer)
    retried = client.post(admin_url(Order, "retry_flag", order.pk, OrderFlag.objects.get(order=order).pk))
    seen_by_viewer = {name: client.get(url) for name, url in pages.items()}
    client.force_login(editor)
    seen_by_editor = {name: client.get(pages[name]) for name in ("order", "run")}

    assert retried.status_code == 302
    retry = OrderEvent.objects.get(kind="retry")
    assert "500 Internal Server Error" in retry.message and "hunter2" not in retry.message
    assert {name: page.status_code for name, page in seen_by_viewer.items()} == dict.fromkeys(pages, 200)
    assert [name for name, page in seen_by_viewer.items() if "hunter2" in page.text] == []
    assert "HTTP 500" in seen_by_viewer["order"].text
    assert [name for name, page in seen_by_editor.items() if "hunter2" not in page.text] == []


def test_the_migration_moves_answers_out_of_earlier_messages(tmp_path, kore_connection):
    order = import_order(tmp_path)
    url = "https://erp.example/in"
    said = f"POST {url}: 500: {ANSWER}"
    run = OrderExportRun.objects.create(
        order=order,
        exporter_code="crm",
        flag="crm",
        status="failed",
        http_status=500,
        message=f"{said}; try 1 of 4, next at 2026-12-01 10:00:00 UTC",
    )
    refused = OrderExportRun.objects.create(
        order=order,
        exporter_code="crm",
        flag="crm",
        status="failed",
        message=f"POST {url}: [Errno 111] Connection refused; try 2 of 4, next at 2026-12-01 10:02:00 UTC",
    )
    OrderFlag.objects.create(order=order, flag="crm", status="failed", last_error=said)
    failed = OrderEvent.objects.create(
        order=order, kind="export_failed", flag="crm", message=f"{said}; not retried: retry it in the admin once mended"
    )
    retry = OrderEvent.objects.create(
        order=order, kind="retry", flag="crm", message=f"retry of crm asked (last error: {said})"
    )

    MIGRATION.move_answers(apps, None)

    for row in (run, refused, failed, retry):
        row.refresh_from_db()
    assert (run.message, run.response) == (f"POST {url}: 500; try 1 of 4, next at 2026-12-01 10:00:00 UTC", ANSWER)
    assert refused.message.endswith("Connection refused; try 2 of 4, next at 2026-12-01 10:02:00 UTC")
    assert OrderFlag.objects.get(order=order).last_error == f"POST {url}: 500"
    assert failed.message == f"POST {url}: 500; not retried: retry it in the admin once mended"
    assert retry.message == f"retry of crm asked (last error: POST {url}: 500)"
