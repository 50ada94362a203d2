"""The order export task (SPEC section 7): claim flagged orders, run their exporters, hand on or back off."""

import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from impex.services.backoff import backoff
from impex.services.heartbeat import Heartbeat
from impex.services.passes import pass_run
from impex.services.queue import (
    claim_size,
    queue_claim,
    queue_finish,
    queue_hold,
    queue_pass,
    queue_release,
    queue_renew,
    worker_name,
)
from orders import events
from orders.choices import ExporterKind, ExportRunStatus, FlagStatus, OrderEventKind, OrderState
from orders.exceptions import ExporterFailed
from orders.exporters.base import Outcome
from orders.exporters.registry import exporter_kind
from orders.models import Exporter, Order, OrderEvent, OrderExportRun, OrderFlag
from orders.problems import exporter_delivered, exporter_gave_up, exporters_delivered
from orders.services import (
    EXPORT_PASS,
    FLAGS,
    deliveries_done,
    deliveries_sweep,
    delivery_done,
    order_resend,
    orders_chains_start,
)

log = logging.getLogger(__name__)

CLAIM_BATCH = 100
# What an exporter run that is not a POST (a file, a gate) takes at most, for the size of a batch.
FILE_SECONDS = 0.5


@dataclass(frozen=True)
class RunReport:
    """One exporter run as `orders_export` reports it."""

    order: str
    exporter: str
    status: str
    message: str

    def as_json(self) -> dict:
        return asdict(self)


def _lease_seconds(exporter: Exporter) -> int:
    return max(settings.IMPEX_LEASE_SECONDS, exporter.timeout_seconds + 30)


def _gate_flags():
    """The flags an enabled approval gate acts on."""
    return Exporter.objects.filter(enabled=True, kind=ExporterKind.APPROVAL).values("flag")


def _due(now):
    """Deliveries an exporter can take now: waiting and due, or running under a lease that ran out (a worker died).

    Each enabled exporter of a flag has its own delivery, tried and backed off on its own. A held order exports
    nothing until staff decide, whatever chain the flag is on; and while an order carries a gate's flag, only the
    gate acts on it: the gate decides before any other chain sends the order anywhere (a re-send of what had been
    sent already does not wait).
    """
    gates = _gate_flags()
    gate_waiting = Exists(OrderFlag.objects.filter(order=OuterRef("order"), flag__in=gates))
    return (
        OrderFlag.objects.filter(exporter__enabled=True)
        .filter(
            Q(status=FlagStatus.PENDING, next_attempt_at__lte=now) | Q(status=FlagStatus.RUNNING, lease_until__lt=now)
        )
        .exclude(order__state=OrderState.ON_HOLD)
        .exclude(~Q(flag__in=gates) & Q(resend=False) & Q(gate_waiting))
    )


def _claim(*, worker: str, size: int) -> list[OrderFlag]:
    """Take up to size due flags for this worker; two workers never take the same flag."""
    now = timezone.now()
    # The claim moves pending (or abandoned running) flags to running, as FLAG_TRANSITIONS allows; each run's
    # outcome then goes through flag_transition.
    ids = queue_claim(FLAGS, _due(now), worker=worker, size=size, now=now)
    return list(
        OrderFlag.objects.filter(pk__in=ids, claimed_by=worker, status=FlagStatus.RUNNING).order_by(
            "next_attempt_at", "pk"
        )
    )


def orders_export_pass(
    *, by: str, limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[RunReport]:
    """Run the exporters of every due flag until none is due (or limit runs, or about so many seconds); return
    what each run did.

    A chain whose exporters all succeed finishes in one pass: the flag a success sets is due at once. Deliveries
    are claimed in batches no larger than one lease covers at the slowest exporter's timeout (webhooks going
    IMPEX_WEBHOOK_CONCURRENCY at once); a batch's claim is renewed, and checked, under its orders' locks just
    before its exporters run, and kept renewed while they run.
    """
    worker = worker or worker_name()
    orders_chains_start(by=by)
    deliveries_sweep(by=by)
    # Only a webhook waits on its timeout; a file is written in well under a second.
    webhooks = Exporter.objects.filter(enabled=True, kind=ExporterKind.WEBHOOK)
    slowest = webhooks.aggregate(t=Max("timeout_seconds"))["t"] or FILE_SECONDS * settings.IMPEX_WEBHOOK_CONCURRENCY
    return queue_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        apply=lambda batch: _run_batch(batch, worker=worker, by=by),
        release=lambda rest: queue_release(FLAGS, [f.pk for f in rest], worker=worker),
        size=claim_size(item_seconds=slowest / settings.IMPEX_WEBHOOK_CONCURRENCY, limit=CLAIM_BATCH),
        limit=limit,
        seconds=seconds,
    )


def orders_export_task(*, ticket: str | None = None) -> str:
    """Run one bounded pass of the order export as a cluster task (impex.services.passes); say what it did."""
    return pass_run(
        EXPORT_PASS,
        run=lambda worker, seconds: len(orders_export_pass(by="task: orders_export", worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
        ticket=ticket,
    )


def _run_batch(flags: list[OrderFlag], *, worker: str, by: str) -> list[RunReport]:
    """Run a claimed batch: each exporter on its deliveries together (a gate on each alone); return the reports in
    the batch's order."""
    exporters = {
        e.pk: e
        for e in Exporter.objects.filter(pk__in={f.exporter_id for f in flags}, enabled=True).select_related(
            "descriptor"
        )
    }
    off = [f.pk for f in flags if f.exporter_id not in exporters]
    if off:  # switched off since the claim: the deliveries wait for their exporter to be on again
        queue_release(FLAGS, off, worker=worker)
    groups: dict[int, list[OrderFlag]] = {}
    for flag in flags:
        if flag.exporter_id in exporters:
            groups.setdefault(flag.exporter_id, []).append(flag)
    reports: dict[int, RunReport] = {}
    for exporter_id, group in groups.items():
        exporter = exporters[exporter_id]
        kind = exporter_kind(exporter.kind)
        if kind.in_transaction:
            for flag in group:
                report = _run(flag=flag, worker=worker, by=by)
                if report is not None:
                    reports[flag.pk] = report
        else:
            reports.update(_run_group(group, exporter=exporter, kind=kind, worker=worker, by=by))
    return [reports[f.pk] for f in flags if f.pk in reports]


def _orders_locked(ids, *, related: bool = True) -> dict[int, Order]:
    """Return orders locked until the caller's transaction ends, locked in key order (two batches never wait on
    each other in a circle); related: with their customer and connection (what exporters read)."""
    rows = Order.objects.select_for_update(of=("self",))
    if related:
        rows = rows.select_related("customer", "connection")
    return {order.pk: order for order in rows.filter(pk__in=set(ids)).order_by("pk")}


def _run_group(group: list[OrderFlag], *, exporter: Exporter, kind, worker: str, by: str) -> dict[int, RunReport]:
    """Run one exporter (not a gate) on a batch of its deliveries; return each one's report by the flag's key.

    Under the orders' locks the batch's claim is renewed and checked, and the deliveries of held orders, or of
    orders waiting for a gate, are given back; the exporter then runs on the rest while a heartbeat keeps the claim
    (a delivery it finds taken over is not started), and the outcomes are recorded.
    """
    seconds = _lease_seconds(exporter)
    started = timezone.now()
    with transaction.atomic():
        orders = _orders_locked(f.order_id for f in group)
        held = set(queue_hold(FLAGS, [f.pk for f in group], worker=worker, seconds=seconds))
        group = [f for f in group if f.pk in held and f.order_id in orders]
        gated = set()
        if any(not f.resend for f in group):
            gated = set(
                OrderFlag.objects.filter(order_id__in={f.order_id for f in group}, flag__in=_gate_flags())
                .exclude(pk__in=[f.pk for f in group])
                .values_list("order_id", flat=True)
            )
        waiting = [
            f for f in group if orders[f.order_id].state == OrderState.ON_HOLD or (not f.resend and f.order_id in gated)
        ]
        if waiting:
            queue_finish(FLAGS, [f.pk for f in waiting], worker=worker, status=FlagStatus.PENDING, count_attempt=False)
            group = [f for f in group if f not in waiting]
    if not group:
        return {}
    sent = {}  # the order's version and state as the exporter sends them, recorded with the run
    for flag in group:
        flag.order = orders[flag.order_id]
        sent[flag.pk] = {"version": flag.order.version, "state": flag.order.state}
    pks = [f.pk for f in group]
    lost: set[int] = set()

    def renew() -> None:
        lost.update(set(pks) - set(queue_hold(FLAGS, pks, worker=worker, seconds=seconds)))

    with Heartbeat(renew, every=seconds / 3, name=f"exporter {exporter.code}"):
        try:
            outcomes = kind.run_many(items=[(f.order, f) for f in group], exporter=exporter, lost=lost)
        except Exception as exc:  # a bug or a library's surprise: every delivery of the batch fails and is retried
            log.exception("exporter %s failed on a batch", exporter.code)
            error = ExporterFailed(f"unexpected error: {exc.__class__.__name__}: {exc}")
            outcomes = [None if f.pk in lost else error for f in group]
    done = [
        (f, o)
        for f, o in zip(group, outcomes, strict=True)
        if isinstance(o, Outcome) and o.status == ExportRunStatus.DONE
    ]
    reports = _record_done(done, exporter=exporter, started=started, worker=worker, by=by, sent=sent) if done else {}
    for flag, outcome in zip(group, outcomes, strict=True):
        attempt = flag.attempts + 1
        if isinstance(outcome, ExporterFailed):
            reports[flag.pk] = _failed(
                flag=flag,
                exporter=exporter,
                error=outcome,
                attempt=attempt,
                started=started,
                worker=worker,
                by=by,
                sent=sent[flag.pk],
            )
        elif isinstance(outcome, Outcome) and outcome.status != ExportRunStatus.DONE:
            reports[flag.pk] = _succeeded(
                flag=flag,
                exporter=exporter,
                outcome=outcome,
                attempt=attempt,
                started=started,
                worker=worker,
                by=by,
                sent=sent[flag.pk],
            )
    return reports


def _record_done(done: list, *, exporter: Exporter, started, worker: str, by: str, sent: dict) -> dict:
    """Record the runs that ended well together; if that fails, each alone, and one that cannot be recorded as sent
    is recorded as failed (tried again), so that the others are never sent again for it."""
    try:
        return _succeeded_many(done, exporter=exporter, started=started, worker=worker, by=by, sent=sent)
    except Exception:
        if len(done) == 1:
            (flag, outcome) = done[0]
            log.exception("recording exporter %s's run on order %s failed", exporter.code, flag.order_id)
            error = ExporterFailed("the run could not be recorded (see the worker's log): it is sent again")
            attempt = flag.attempts + 1
            return {
                flag.pk: _failed(
                    flag=flag,
                    exporter=exporter,
                    error=error,
                    attempt=attempt,
                    started=started,
                    worker=worker,
                    by=by,
                    sent=sent[flag.pk],
                )
            }
    reports = {}
    for item in done:
        reports.update(_record_done([item], exporter=exporter, started=started, worker=worker, by=by, sent=sent))
    return reports


@transaction.atomic
def _succeeded_many(done: list, *, exporter: Exporter, started, worker: str, by: str, sent: dict) -> dict:
    """Record a batch of runs of one exporter that ended well, in statements that do not grow with the batch (an
    order amended or cancelled while it was sent is re-sent, one at a time)."""
    orders = _orders_locked((f.order_id for f, _ in done), related=False)
    now = timezone.now()
    OrderExportRun.objects.bulk_create(
        [
            OrderExportRun(
                order=orders[f.order_id],
                exporter=exporter,
                exporter_code=exporter.code,
                flag=f.flag,
                attempt=f.attempts + 1,
                event_id=f.event_id,
                resend=f.resend,
                version=sent[f.pk]["version"],
                state=sent[f.pk]["state"],
                worker=worker,
                started_at=started,
                finished_at=now,
                status=o.status,
                message=_what(f, sent[f.pk]) + o.message,
                http_status=o.http_status,
                location=o.location,
                response=o.response,
            )
            for f, o in done
        ]
    )
    exporters_delivered(exporter=exporter, orders=[orders[f.order_id] for f, _ in done])
    by_exporter = f"exporter {exporter.code}"
    for f, _ in done:
        if not f.resend and _stale(sent[f.pk], orders[f.order_id]):
            # The order was amended or cancelled while this exporter sent it: the re-sends queued then did not know
            # it had sent it. It gets the order again now, as the others do.
            order_resend(orders[f.order_id], by=by_exporter, only=exporter)
    held = set(queue_hold(FLAGS, [f.pk for f, _ in done], worker=worker))
    reports, mine = {}, []
    for f, o in done:
        order_id = orders[f.order_id].order_id
        if f.pk in held:
            mine.append((f, o))
            reports[f.pk] = RunReport(order=order_id, exporter=exporter.code, status=o.status, message=o.message)
        else:
            message = f"{o.message} (the flag had been taken over by another worker meanwhile)"
            reports[f.pk] = RunReport(order=order_id, exporter=exporter.code, status=o.status, message=message)
    OrderEvent.objects.bulk_create(
        [
            OrderEvent(
                order_id=f.order_id,
                at=now,
                kind=OrderEventKind.EXPORTED,
                flag=f.flag,
                by=by_exporter,
                message=_what(f, sent[f.pk]) + o.message,
            )
            for f, o in mine
        ]
    )
    for f, _ in mine:
        f.order = orders[f.order_id]
    deliveries_done(deliveries=[f for f, _ in mine], worker=worker, by=by_exporter)
    return reports


def _order_for(order_id: int):
    """Return the order locked until the caller's transaction ends (a chain acts on one order at a time)."""
    return Order.objects.select_for_update(of=("self",)).select_related("customer", "connection").get(pk=order_id)


def _start(*, flag: OrderFlag, exporter: Exporter, worker: str, kind) -> Order | None:
    """Check, under the order's lock, that this worker may run the exporter on the flag's order now; renew its claim.

    None, with the flag given back, if the order is held or waits for a gate (it changed since the claim); None
    if another worker took the flag over.
    """
    order = _order_for(flag.order_id)
    if not queue_renew(FLAGS, flag.pk, worker=worker, seconds=_lease_seconds(exporter)):
        return None
    waits = order.state == OrderState.ON_HOLD
    if not waits and kind.name != ExporterKind.APPROVAL and not flag.resend:
        waits = OrderFlag.objects.filter(order=order, flag__in=_gate_flags()).exclude(pk=flag.pk).exists()
    if waits:
        queue_release(FLAGS, [flag.pk], worker=worker)
        return None
    return order


def _run(*, flag: OrderFlag, worker: str, by: str) -> RunReport | None:
    """Run a delivery's exporter on its order and record the outcome; None if the exporter was switched off
    meanwhile, the order is held or waits for a gate, or another worker took the delivery over."""
    exporter = Exporter.objects.filter(pk=flag.exporter_id, enabled=True).select_related("descriptor").first()
    if exporter is None:  # switched off since the claim: the delivery waits for it to be on again
        queue_release(FLAGS, [flag.pk], worker=worker)
        return None
    kind = exporter_kind(exporter.kind)
    attempt = flag.attempts + 1
    started = timezone.now()
    seconds = _lease_seconds(exporter)
    sent = {}  # the order's version and state as the exporter sends them, recorded with the run
    try:
        if kind.in_transaction:
            # A gate only writes to the database: its decision and the flag's new status commit together, under
            # the order's lock.
            with transaction.atomic():
                order = _start(flag=flag, exporter=exporter, worker=worker, kind=kind)
                if order is None:
                    return None
                sent = {"version": order.version, "state": order.state}
                outcome = kind.run(order=order, exporter=exporter, flag=flag)
                return _succeeded(
                    flag=flag,
                    exporter=exporter,
                    outcome=outcome,
                    attempt=attempt,
                    started=started,
                    worker=worker,
                    by=by,
                    sent=sent,
                )
        with transaction.atomic():
            order = _start(flag=flag, exporter=exporter, worker=worker, kind=kind)
        if order is None:
            return None
        flag.order = order
        sent = {"version": order.version, "state": order.state}
        renew = lambda: queue_renew(FLAGS, flag.pk, worker=worker, seconds=seconds)  # noqa: E731
        with Heartbeat(renew, every=seconds / 3, name=f"order flag {flag.pk}"):
            outcome = kind.run(order=order, exporter=exporter, flag=flag)
    except ExporterFailed as exc:
        return _failed(
            flag=flag, exporter=exporter, error=exc, attempt=attempt, started=started, worker=worker, by=by, sent=sent
        )
    except Exception as exc:  # a bug or an unexpected library error: recorded and retried, never swallowed silently
        log.exception("exporter %s failed on order %s", exporter.code, flag.order_id)
        error = ExporterFailed(f"unexpected error: {exc.__class__.__name__}: {exc}")
        return _failed(
            flag=flag, exporter=exporter, error=error, attempt=attempt, started=started, worker=worker, by=by, sent=sent
        )
    return _succeeded(
        flag=flag, exporter=exporter, outcome=outcome, attempt=attempt, started=started, worker=worker, by=by, sent=sent
    )


def _locked_own(flag: OrderFlag, worker: str) -> OrderFlag | None:
    """Return the flag locked, if this worker still holds it (another may have taken it over after a lost lease)."""
    return (
        OrderFlag.objects.select_for_update().filter(pk=flag.pk, claimed_by=worker, status=FlagStatus.RUNNING).first()
    )


def _record_run(*, flag, exporter, attempt, started, worker, sent, **outcome) -> OrderExportRun:
    """Write the run's row: which exporter, which try, what it sent, by which worker, from when to now, and its
    outcome."""
    return OrderExportRun.objects.create(
        order=flag.order,
        exporter=exporter,
        exporter_code=exporter.code,
        flag=flag.flag,
        attempt=attempt,
        event_id=flag.event_id,
        resend=flag.resend,
        version=sent.get("version"),
        state=sent.get("state", ""),
        worker=worker,
        started_at=started,
        finished_at=timezone.now(),
        **outcome,
    )


def _what(flag: OrderFlag, sent: dict) -> str:
    """Say what a re-send sent, to prefix its messages ("" for a delivery of the chain)."""
    return f"re-sent version {sent.get('version')} ({sent.get('state')}): " if flag.resend else ""


def _stale(sent: dict, order: Order) -> bool:
    """Say if what an exporter sent is older than the order now: another version, or cancelled meanwhile."""
    if not sent:
        return False
    cancelled = order.state == OrderState.CANCELLED and sent.get("state") != OrderState.CANCELLED
    return cancelled or sent.get("version") != order.version


@transaction.atomic
def _succeeded(*, flag, exporter, outcome, attempt, started, worker, by, sent) -> RunReport:
    """Record a run that ended well: the one place an exporter's delivery succeeds (or holds the order)."""
    # Locks are taken order first, then flag, everywhere: two workers never wait on each other in a circle.
    order = flag.order = _order_for(flag.order_id)
    _record_run(
        flag=flag,
        exporter=exporter,
        attempt=attempt,
        started=started,
        worker=worker,
        sent=sent,
        status=outcome.status,
        message=_what(flag, sent) + outcome.message,
        http_status=outcome.http_status,
        location=outcome.location,
        response=outcome.response,
    )
    exporter_delivered(exporter=exporter, order=order)
    if outcome.status == ExportRunStatus.DONE and not flag.resend and _stale(sent, order):
        # The order was amended or cancelled while this exporter sent it: the re-sends queued then did not know it
        # had sent it. It gets the order again now, as the others do.
        order_resend(order, by=f"exporter {exporter.code}", only=exporter)
    own = _locked_own(flag, worker)
    if own is None:
        message = f"{outcome.message} (the flag had been taken over by another worker meanwhile)"
        return RunReport(order=order.order_id, exporter=exporter.code, status=outcome.status, message=message)
    by_exporter = f"exporter {exporter.code}"
    if outcome.status == ExportRunStatus.HELD:
        queue_finish(
            FLAGS, [own.pk], worker=worker, status=FlagStatus.HELD, count_attempt=False, attempts=attempt, last_error=""
        )
        events.note_event(
            order=order, kind=OrderEventKind.HELD, flag=flag.flag, by=by_exporter, message=outcome.message
        )
    else:
        events.note_event(
            order=order,
            kind=OrderEventKind.EXPORTED,
            flag=flag.flag,
            by=by_exporter,
            message=_what(flag, sent) + outcome.message,
        )
        own.order = order
        delivery_done(delivery=own, by=by_exporter, worker=worker)
    return RunReport(order=order.order_id, exporter=exporter.code, status=outcome.status, message=outcome.message)


@transaction.atomic
def _failed(*, flag, exporter, error: ExporterFailed, attempt, started, worker, by, sent) -> RunReport:
    """Record a run that failed: the one place a delivery backs off, or gives up for good (not again)."""
    order = flag.order = _order_for(flag.order_id)
    now = timezone.now()
    again = error.retry and attempt < exporter.max_attempts
    retry_at = now + backoff(attempt) if again else None
    if again:
        message = f"{error.message}; try {attempt} of {exporter.max_attempts}, next at {retry_at:%Y-%m-%d %H:%M:%S %Z}"
    elif error.retry:
        message = f"{error.message}; gave up after {attempt} tries: retry it in the admin"
    else:
        message = f"{error.message}; not retried: retry it in the admin once mended"
    message = _what(flag, sent) + message
    _record_run(
        flag=flag,
        exporter=exporter,
        attempt=attempt,
        started=started,
        worker=worker,
        sent=sent,
        status=ExportRunStatus.FAILED,
        message=message,
        http_status=error.http_status,
        response=error.response,
        retry_at=retry_at,
    )
    own = _locked_own(flag, worker)
    if own is not None:
        queue_finish(
            FLAGS,
            [own.pk],
            worker=worker,
            status=FlagStatus.PENDING if again else FlagStatus.FAILED,
            count_attempt=False,
            attempts=attempt,
            next_attempt_at=retry_at or now,
            last_error=error.message,
        )
    events.note_event(
        order=order, kind=OrderEventKind.EXPORT_FAILED, flag=flag.flag, by=f"exporter {exporter.code}", message=message
    )
    if not again:
        exporter_gave_up(exporter=exporter, order=order, message=message)
    return RunReport(order=order.order_id, exporter=exporter.code, status=ExportRunStatus.FAILED, message=message)
