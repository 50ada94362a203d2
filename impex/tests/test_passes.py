"""The cluster's passes over leased work are bounded (issue 16 M2): one task waits in the queue at most, however
many events ask for a pass, and a pass takes no new batch (no new item, where items go one at a time) after
IMPEX_PASS_SECONDS, queueing one follow-up."""

import pytest
from django_q.models import OrmQ

from impex.models import WebhookDelivery, WebhookSubscription
from impex.services.webhooks import webhook_emit
from impex.tasks import webhooks_deliver
from impex.tests.helpers import customer_row
from orders.models import Exporter, OrderExportRun
from orders.tasks import orders_export
from orders.tests.helpers import configure, import_catalogue, import_orders, import_rows, line_row, order_row
from syncapp.models import RecordEvent

CUSTOMERS = "/api/events/customers/"


def queued(func: str) -> int:
    return sum(1 for q in OrmQ.objects.all() if q.task["func"] == func)


def run_waiting(func: str) -> str:
    """Run the pass's waiting task as the cluster does: taken off the queue, called with its ticket."""
    from django.utils.module_loading import import_string

    (waiting,) = [q for q in OrmQ.objects.order_by("id") if q.task["func"] == func]
    args = waiting.task["args"]
    waiting.delete()
    return import_string(func)(*args)


@pytest.fixture
def subscription(db, webhook_receiver):
    WebhookSubscription.objects.create(code="crm", url=webhook_receiver.url, events=["customer.updated"], secret="k")
    return webhook_receiver


def emit(capture, n: int) -> None:
    """Emit a customer.updated event in a transaction of its own (its delivery task is asked for on commit)."""
    with capture(execute=True):
        webhook_emit("customer.updated", data={"customer_ids": [f"C-{n}"], "count": 1})


def test_many_events_queue_one_delivery_task_and_a_pass_lets_the_next_event_queue_another(
    django_capture_on_commit_callbacks, subscription
):
    for n in range(5):
        emit(django_capture_on_commit_callbacks, n)

    assert queued("impex.tasks.webhooks_deliver") == 1

    with django_capture_on_commit_callbacks(execute=True):
        assert run_waiting("impex.tasks.webhooks_deliver") == "5 webhook delivery attempt(s)"
    emit(django_capture_on_commit_callbacks, 5)

    assert queued("impex.tasks.webhooks_deliver") == 1  # its waiting task ran: the next event queues another
    assert len(subscription.received) == 5


def test_a_delivery_pass_out_of_time_stops_after_one_batch_and_queues_one_follow_up(
    django_capture_on_commit_callbacks, subscription, settings
):
    for n in range(3):
        emit(django_capture_on_commit_callbacks, n)
    settings.IMPEX_PASS_SECONDS = 0
    # A batch is no larger than one lease covers at the slowest timeout, POSTs going so many at once: here, one.
    settings.IMPEX_LEASE_SECONDS = WebhookSubscription.objects.get().timeout_seconds
    settings.IMPEX_WEBHOOK_CONCURRENCY = 1

    with django_capture_on_commit_callbacks(execute=True):
        summary = run_waiting("impex.tasks.webhooks_deliver")

    assert summary == "1 webhook delivery attempt(s); more are due: a follow-up is queued"
    assert len(subscription.received) == 1
    assert queued("impex.tasks.webhooks_deliver") == 1
    # What the pass did not reach is due at once for any worker.
    assert sorted(WebhookDelivery.objects.values_list("status", "claimed_by")) == [
        ("delivered", ""),
        ("pending", ""),
        ("pending", ""),
    ]


def test_an_order_export_pass_out_of_time_stops_after_one_batch_and_queues_one_follow_up(
    django_capture_on_commit_callbacks, tmp_path, kore_connection, settings, webhook_receiver
):
    configure("erp", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url)
    import_catalogue(tmp_path)
    ids = ["O1", "O2", "O3"]
    import_orders(tmp_path, [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
    OrmQ.objects.all().delete()
    settings.IMPEX_PASS_SECONDS = 0
    # A batch is no larger than one lease covers at the slowest webhook's timeout, one POST at a time: here, one.
    settings.IMPEX_LEASE_SECONDS = Exporter.objects.get().timeout_seconds
    settings.IMPEX_WEBHOOK_CONCURRENCY = 1

    with django_capture_on_commit_callbacks(execute=True):
        summary = orders_export()

    assert summary == "1 exporter run(s); more are due: a follow-up is queued"
    assert OrderExportRun.objects.count() == 1
    assert queued("orders.tasks.orders_export") == 1


def test_a_record_event_pass_out_of_time_stops_after_one_batch_and_queues_one_follow_up(
    django_capture_on_commit_callbacks, tmp_path, api, settings
):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row("C-1")])
    # Three updates of one customer: a batch holds the earliest only, so the first batch is one update.
    for n in (1, 2, 3):
        with django_capture_on_commit_callbacks(execute=True):
            assert api.post(CUSTOMERS, {"customer_id": "C-1", "last_name": f"New {n}"}).status_code == 202
    assert queued("syncapp.tasks.record_events") == 1
    settings.IMPEX_PASS_SECONDS = 0

    with django_capture_on_commit_callbacks(execute=True):
        summary = run_waiting("syncapp.tasks.record_events")

    assert summary == "1 single-record update(s); more are due: a follow-up is queued"
    assert sorted(RecordEvent.objects.values_list("status", flat=True)) == ["applied", "pending", "pending"]
    assert queued("syncapp.tasks.record_events") == 1


def running_elsewhere(pass_name: str, *, host: str) -> None:
    """Record a pass of another kind running now on host, as its task's own place does while it runs."""
    from datetime import timedelta

    from django.utils import timezone

    from impex.models import WorkPass

    until = (timezone.now() + timedelta(seconds=60)).isoformat()
    WorkPass.objects.update_or_create(name=pass_name, defaults={"runners": {f"{host}:4242:abcdef": until}})


def test_passes_of_all_kinds_leave_one_worker_of_the_machine_free_for_scans_and_imports(
    django_capture_on_commit_callbacks, subscription, settings
):
    """Two workers: while an order export pass runs on this machine, a delivery pass waits for its schedule."""
    import socket

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    for n in range(2):
        emit(django_capture_on_commit_callbacks, n)
    running_elsewhere("order export", host=socket.gethostname())

    held = webhooks_deliver()

    assert held.startswith("0 webhook delivery attempt(s): left for later") and "1 pass(es) of any kind" in held
    assert not subscription.received

    running_elsewhere("order export", host="another-machine")  # another machine's cluster has its own workers
    assert webhooks_deliver() == "2 webhook delivery attempt(s)"
    assert len(subscription.received) == 2


def test_the_scan_loop_on_the_machine_takes_a_place_so_a_worker_stays_free_for_imports(
    django_capture_on_commit_callbacks, subscription, settings
):
    """Three workers: the scan loop holds one, an order export pass another; a delivery pass waits."""
    import socket

    from impex.services.scan_loop import scan_loop_take

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 3}
    emit(django_capture_on_commit_callbacks, 0)
    running_elsewhere("order export", host=socket.gethostname())
    assert scan_loop_take(worker=f"{socket.gethostname()}:99:loop")

    held = webhooks_deliver()

    assert held.startswith("0 webhook delivery attempt(s): left for later")
    assert not subscription.received

    assert scan_loop_take(worker="another-machine:99:loop") is False  # the loop stays; it moves only on a takeover
    from impex.models import ScanLoop

    ScanLoop.objects.update(holder="another-machine:99:loop")
    assert webhooks_deliver() == "1 webhook delivery attempt(s)"


def test_a_pass_refused_for_want_of_a_place_ends_the_running_pass_early_and_is_queued_when_it_leaves(
    django_capture_on_commit_callbacks, subscription, tmp_path, api, settings
):
    """Two workers, one place for passes: single-record updates refused while another pass runs do not wait for
    their schedule (the 4-client bench saw 900 updates wait two minutes behind order exports)."""
    import socket

    from impex.models import WorkPass

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row("C-1")])
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(CUSTOMERS, {"customer_id": "C-1", "last_name": "New"}).status_code == 202
    running_elsewhere("order export", host=socket.gethostname())

    held = run_waiting("syncapp.tasks.record_events")

    assert held.startswith("0 single-record update(s): left for later") and "queued again" in held
    assert WorkPass.objects.filter(refused__isnull=False).count() == 1
    WorkPass.objects.filter(name="order export").update(runners={})  # that pass has ended meanwhile
    # A delivery pass with time for all three of its deliveries, one a batch: it ends after the first to make room.
    for n in range(3):
        emit(django_capture_on_commit_callbacks, n)
    settings.IMPEX_LEASE_SECONDS = WebhookSubscription.objects.get().timeout_seconds
    settings.IMPEX_WEBHOOK_CONCURRENCY = 1

    with django_capture_on_commit_callbacks(execute=True):
        summary = run_waiting("impex.tasks.webhooks_deliver")

    assert summary == "1 webhook delivery attempt(s); more are due: a follow-up is queued"
    # The refused pass is queued first, then the delivery pass's follow-up.
    assert [q.task["func"] for q in OrmQ.objects.order_by("id")] == [
        "syncapp.tasks.record_events",
        "impex.tasks.webhooks_deliver",
    ]
    assert not WorkPass.objects.filter(refused__isnull=False).exists()
    assert run_waiting("syncapp.tasks.record_events") == "1 single-record update(s)"
    assert RecordEvent.objects.get().status == "applied"


def test_a_task_taken_earlier_that_starts_late_leaves_the_waiting_ticket_in_place(
    django_capture_on_commit_callbacks, subscription
):
    """One task of a pass waits in the queue at most: a task the cluster took before the waiting one was queued,
    and that starts only now (or the schedule's), does not let a new event queue a second one."""
    emit(django_capture_on_commit_callbacks, 0)
    assert queued("impex.tasks.webhooks_deliver") == 1

    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks_deliver() == "1 webhook delivery attempt(s)"  # started without the ticket
    emit(django_capture_on_commit_callbacks, 1)

    assert queued("impex.tasks.webhooks_deliver") == 1
    assert run_waiting("impex.tasks.webhooks_deliver") == "1 webhook delivery attempt(s)"
    emit(django_capture_on_commit_callbacks, 2)
    assert queued("impex.tasks.webhooks_deliver") == 1  # the ticket's own task let the next event queue one
