"""The order export task (SPEC section 7): claim flagged orders, run their exporters, hand on or back off."""

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from impex.services.backoff import backoff
from impex.services.heartbeat import Heartbeat
from impex.services.lifecycle import claim_due, worker_name
from orders import events
from orders.choices import ExportRunStatus, FlagStatus, OrderEventKind, OrderState
from orders.exceptions import ExporterFailed
from orders.exporters.registry import exporter_kind
from orders.models import Exporter, OrderExportRun, OrderFlag
from orders.services import flag_done, flag_transition, orders_chains_start

log = logging.getLogger(__name__)

CLAIM_BATCH = 50


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


def _due(now):
    """Flags an exporter can take now: waiting and due, or running under a lease that ran out (a worker died)."""
    return (
        OrderFlag.objects.filter(Exists(Exporter.objects.filter(enabled=True, flag=OuterRef("flag"))))
        .filter(
            Q(status=FlagStatus.PENDING, next_attempt_at__lte=now) | Q(status=FlagStatus.RUNNING, lease_until__lt=now)
        )
        # A held order exports nothing until staff decide, whatever chain the flag is on.
        .exclude(order__state=OrderState.ON_HOLD)
    )


def _claim(*, worker: str, size: int) -> list[OrderFlag]:
    """Take up to size due flags for this worker; two workers never take the same flag."""
    now = timezone.now()
    # The claim moves pending (or abandoned running) flags to running, as FLAG_TRANSITIONS allows; each run's
    # outcome then goes through flag_transition.
    ids = claim_due(_due(now), worker=worker, size=size, lease_seconds=settings.IMPEX_LEASE_SECONDS, now=now)
    return list(
        OrderFlag.objects.filter(pk__in=ids, claimed_by=worker, status=FlagStatus.RUNNING)
        .select_related("order", "order__customer", "order__connection")
        .order_by("next_attempt_at", "pk")
    )


def orders_export_pass(*, by: str, limit: int | None = None, worker: str | None = None) -> list[RunReport]:
    """Run the exporters of every due flag until none is due (or limit runs); return what each run did.

    A chain whose exporters all succeed finishes in one pass: the flag a success sets is due at once.
    """
    worker = worker or worker_name()
    orders_chains_start(by=by)
    reports: list[RunReport] = []
    while limit is None or len(reports) < limit:
        size = CLAIM_BATCH if limit is None else min(CLAIM_BATCH, limit - len(reports))
        claimed = _claim(worker=worker, size=size)
        if not claimed:
            break
        for flag in claimed:
            report = _run(flag=flag, worker=worker, by=by)
            if report is not None:
                reports.append(report)
    return reports


def _renewer(flag: OrderFlag, worker: str, seconds: int):
    def renew() -> None:
        OrderFlag.objects.filter(pk=flag.pk, claimed_by=worker, status=FlagStatus.RUNNING).update(
            lease_until=timezone.now() + timedelta(seconds=seconds)
        )

    return renew


def _run(*, flag: OrderFlag, worker: str, by: str) -> RunReport | None:
    """Run the flag's exporter on its order and record the outcome; None if the exporter went away meanwhile."""
    exporter = Exporter.objects.filter(flag=flag.flag, enabled=True).select_related("descriptor").first()
    if exporter is None:  # switched off since the claim: the flag waits for an exporter again
        OrderFlag.objects.filter(pk=flag.pk, claimed_by=worker).update(
            status=FlagStatus.PENDING, claimed_by="", lease_until=None
        )
        return None
    kind = exporter_kind(exporter.kind)
    order = flag.order
    attempt = flag.attempts + 1
    started = timezone.now()
    seconds = _lease_seconds(exporter)
    _renewer(flag, worker, seconds)()
    try:
        if kind.in_transaction:
            # A gate only writes to the database: its decision and the flag's new status commit together.
            with transaction.atomic():
                outcome = kind.run(order=order, exporter=exporter, flag=flag)
                return _succeeded(
                    flag=flag,
                    exporter=exporter,
                    outcome=outcome,
                    attempt=attempt,
                    started=started,
                    worker=worker,
                    by=by,
                )
        with Heartbeat(_renewer(flag, worker, seconds), every=seconds / 3, name=f"order flag {flag.pk}"):
            outcome = kind.run(order=order, exporter=exporter, flag=flag)
    except ExporterFailed as exc:
        return _failed(flag=flag, exporter=exporter, error=exc, attempt=attempt, started=started, worker=worker, by=by)
    except Exception as exc:  # a bug or an unexpected library error: recorded and retried, never swallowed silently
        log.exception("exporter %s failed on order %s", exporter.code, order.order_id)
        error = ExporterFailed(f"unexpected error: {exc.__class__.__name__}: {exc}")
        return _failed(
            flag=flag, exporter=exporter, error=error, attempt=attempt, started=started, worker=worker, by=by
        )
    return _succeeded(
        flag=flag, exporter=exporter, outcome=outcome, attempt=attempt, started=started, worker=worker, by=by
    )


def _locked_own(flag: OrderFlag, worker: str) -> OrderFlag | None:
    """Return the flag locked, if this worker still holds it (another may have taken it over after a lost lease)."""
    return (
        OrderFlag.objects.select_for_update().filter(pk=flag.pk, claimed_by=worker, status=FlagStatus.RUNNING).first()
    )


def _record_run(*, flag, exporter, attempt, started, worker, **outcome) -> OrderExportRun:
    """Write the run's row: which exporter, which try, by which worker, from when to now, and its outcome."""
    return OrderExportRun.objects.create(
        order=flag.order,
        exporter=exporter,
        exporter_code=exporter.code,
        flag=flag.flag,
        attempt=attempt,
        event_id=flag.event_id,
        worker=worker,
        started_at=started,
        finished_at=timezone.now(),
        **outcome,
    )


@transaction.atomic
def _succeeded(*, flag, exporter, outcome, attempt, started, worker, by) -> RunReport:
    order = flag.order
    _record_run(
        flag=flag,
        exporter=exporter,
        attempt=attempt,
        started=started,
        worker=worker,
        status=outcome.status,
        message=outcome.message,
        http_status=outcome.http_status,
        location=outcome.location,
        response=outcome.response,
    )
    own = _locked_own(flag, worker)
    if own is None:
        message = f"{outcome.message} (the flag had been taken over by another worker meanwhile)"
        return RunReport(order=order.order_id, exporter=exporter.code, status=outcome.status, message=message)
    by_exporter = f"exporter {exporter.code}"
    if outcome.status == ExportRunStatus.HELD:
        flag_transition(flag=own, to=FlagStatus.HELD, attempts=attempt, claimed_by="", lease_until=None, last_error="")
        events.note_event(
            order=order, kind=OrderEventKind.HELD, flag=flag.flag, by=by_exporter, message=outcome.message
        )
    else:
        events.note_event(
            order=order, kind=OrderEventKind.EXPORTED, flag=flag.flag, by=by_exporter, message=outcome.message
        )
        flag_done(flag=own, next_flag=exporter.next_flag, by=by_exporter)
    return RunReport(order=order.order_id, exporter=exporter.code, status=outcome.status, message=outcome.message)


@transaction.atomic
def _failed(*, flag, exporter, error: ExporterFailed, attempt, started, worker, by) -> RunReport:
    order = flag.order
    now = timezone.now()
    again = error.retry and attempt < exporter.max_attempts
    retry_at = now + backoff(attempt) if again else None
    if again:
        message = f"{error.message}; try {attempt} of {exporter.max_attempts}, next at {retry_at:%Y-%m-%d %H:%M:%S %Z}"
    elif error.retry:
        message = f"{error.message}; gave up after {attempt} tries: retry it in the admin"
    else:
        message = f"{error.message}; not retried: retry it in the admin once mended"
    _record_run(
        flag=flag,
        exporter=exporter,
        attempt=attempt,
        started=started,
        worker=worker,
        status=ExportRunStatus.FAILED,
        message=message,
        http_status=error.http_status,
        response=error.response,
        retry_at=retry_at,
    )
    own = _locked_own(flag, worker)
    if own is not None:
        flag_transition(
            flag=own,
            to=FlagStatus.PENDING if again else FlagStatus.FAILED,
            attempts=attempt,
            next_attempt_at=retry_at or now,
            last_error=error.message,
            claimed_by="",
            lease_until=None,
        )
    events.note_event(
        order=order, kind=OrderEventKind.EXPORT_FAILED, flag=flag.flag, by=f"exporter {exporter.code}", message=message
    )
    return RunReport(order=order.order_id, exporter=exporter.code, status=ExportRunStatus.FAILED, message=message)
