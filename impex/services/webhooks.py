"""Outbound webhooks (SPEC section 10): subscriptions, events recorded with the change that caused them,
delivered after commit, signed, retried with back-off, every attempt logged.

An event is written in the same transaction as its cause (a file's chunk, a file's finish, a single-record
update), so it exists exactly when the change does; a worker that dies half-way leaves neither. A file of many
records sends one event per batch of up to IMPEX_WEBHOOK_BATCH_IDS ids, never one per record.
"""

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from impex.choices import DeliveryStatus, ProblemKind, WebhookEvent
from impex.exceptions import ConfigurationError
from impex.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.outbound import url_refusal
from impex.services.heartbeat import Heartbeat
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.problems import problem_raise, problem_resolve
from impex.services.queue import (
    WorkQueue,
    claim_size,
    queue_claim,
    queue_finish,
    queue_hold,
    queue_pass,
    queue_release,
    queue_reset,
    retry_plan,
    worker_name,
)
from impex.services.signed_post import PostFailed, json_body, signed_post

log = logging.getLogger(__name__)

USER_AGENT = "impex-hub webhook"
CLAIM_BATCH = 100
DELIVERY_PASS = Pass(
    "webhook deliveries", "impex.tasks.webhooks_deliver", "webhook deliveries", "webhook delivery attempt(s)"
)
EVENT_NAMES = tuple(WebhookEvent.values)
# A delivery's moves: claimed, then delivered, tried again later or given up; staff's retry starts a failed one again.
DELIVERIES = WorkQueue(
    WebhookDelivery,
    moves={
        DeliveryStatus.PENDING: (DeliveryStatus.RUNNING,),
        DeliveryStatus.RUNNING: (DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED),
        DeliveryStatus.FAILED: (DeliveryStatus.PENDING,),
    },
)
# Entities whose records are announced: entity -> (event of records created, event of records updated).
RECORD_EVENTS = {"customer": (WebhookEvent.CUSTOMER_CREATED, WebhookEvent.CUSTOMER_UPDATED)}


@dataclass(frozen=True)
class DeliveryReport:
    event_id: str
    subscription: str
    event: str
    status: str
    message: str

    def as_json(self) -> dict:
        return asdict(self)


# -- subscriptions -------------------------------------------------------------------------------------


def subscription_problems(
    *, url: str, events: list[str], timeout_seconds: int = 10, max_attempts: int = 10, saved_url: str | None = None
) -> list[tuple[str, str]]:
    """Return (field, message) for each setting of a subscription that cannot work.

    A URL other than saved_url (the one stored, if any) must name a host the hub may call (impex.outbound).
    """
    problems = []
    if not url.startswith(("http://", "https://")):
        problems.append(("url", "a webhook needs an http:// or https:// URL"))
    elif url != saved_url:
        refusal = url_refusal(url)
        if refusal:
            problems.append(("url", refusal))
    unknown = [e for e in events if e not in EVENT_NAMES]
    if unknown:
        problems.append(("events", f"unknown event {', '.join(unknown)} (known: {', '.join(EVENT_NAMES)})"))
    elif not events:
        problems.append(("events", f"name at least one event ({', '.join(EVENT_NAMES)})"))
    if not 1 <= timeout_seconds <= 300:
        problems.append(("timeout_seconds", "the timeout is 1 to 300 seconds"))
    if not 1 <= max_attempts <= 100:
        problems.append(("max_attempts", "tries are 1 to 100"))
    return problems


def subscription_save(*, code: str, url: str | None, events: list[str] | None, secret: str | None, enabled=None):
    """Create or update a subscription (impex_webhook and the admin); return it and whether it is new."""
    current = WebhookSubscription.objects.filter(code=code).first()
    saved_url = current.url if current else None
    sub = current or WebhookSubscription(code=code)
    if url is not None:
        sub.url = url
    if events is not None:
        sub.events = list(dict.fromkeys(events))
    if secret is not None:
        sub.secret = secret
    if enabled is not None:
        sub.enabled = enabled
    problems = subscription_problems(
        url=sub.url,
        events=sub.events,
        timeout_seconds=sub.timeout_seconds,
        max_attempts=sub.max_attempts,
        saved_url=saved_url,
    )
    if problems:
        raise ConfigurationError("; ".join(f"{field}: {message}" for field, message in problems))
    sub.full_clean()
    sub.save()
    return sub, current is None


def subscriptions_enabled() -> list[WebhookSubscription]:
    """Return the enabled subscriptions (a job reads them once and passes them on as subscriptions=)."""
    return list(WebhookSubscription.objects.filter(enabled=True))


def _subscribers(event: str, subscriptions: list[WebhookSubscription] | None = None) -> list[WebhookSubscription]:
    # events is a JSON list: filtered here, portably (a handful of subscriptions at most).
    subscriptions = subscriptions_enabled() if subscriptions is None else subscriptions
    return [s for s in subscriptions if event in (s.events or [])]


def webhooks_wanted(*events: str, subscriptions: list[WebhookSubscription] | None = None) -> bool:
    """Tell whether any enabled subscription takes one of these events (so callers can skip the work)."""
    subscriptions = subscriptions_enabled() if subscriptions is None else subscriptions
    return any(_subscribers(event, subscriptions) for event in events)


# -- events --------------------------------------------------------------------------------------------


def webhook_emit(event: str, *, data: dict, connection=None, subscriptions=None) -> int:
    """Record an event for every subscriber, in the caller's transaction; deliver after commit. Return how many.

    subscriptions: the enabled subscriptions, if the caller has read them already.
    """
    subscribers = _subscribers(event, subscriptions)
    if not subscribers:
        return 0
    event_id = uuid.uuid4()
    now = timezone.now()
    payload = {
        "id": str(event_id),
        "event": event,
        "created_at": now.isoformat(),
        "connection": connection.code if connection is not None else None,
        "data": data,
    }
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(subscription=s, event=event, event_id=event_id, payload=payload, created_at=now)
            for s in subscribers
        ]
    )
    deliver_soon()
    return len(subscribers)


def webhook_records_changed(
    *, entity: str, model, key_field: str, keys: list[str], since, connection, source: dict, subscriptions=None
):
    """Emit customer.created / customer.updated for the records of keys written since a time (a batch's start).

    Records found equal were not written (their updated_at is older) and send nothing.
    """
    events = RECORD_EVENTS.get(entity)
    if not events or not keys or not webhooks_wanted(*events, subscriptions=subscriptions):
        return
    created, updated = [], []
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        for key, created_at in model.objects.filter(**{f"{key_field}__in": part}, updated_at__gte=since).values_list(
            key_field, "created_at"
        ):
            (created if created_at >= since else updated).append(key)
    size = settings.IMPEX_WEBHOOK_BATCH_IDS
    for event, ids in zip(events, (created, updated), strict=True):
        for start in range(0, len(ids), size):
            part = sorted(ids[start : start + size])
            webhook_emit(
                event,
                data={"customer_ids": part, "count": len(part), **source},
                connection=connection,
                subscriptions=subscriptions,
            )


def webhooks_deliver_now() -> list[DeliveryReport]:
    """Deliver what is due from this process for a short while (commands that import: a cluster may not run).

    What is not delivered within IMPEX_WEBHOOK_INLINE_SECONDS is left to the every-minute schedule.
    """
    if not _due(timezone.now()).exists():
        return []
    return webhooks_deliver_pass(seconds=settings.IMPEX_WEBHOOK_INLINE_SECONDS)


def deliver_soon() -> None:
    """Have a worker run a delivery pass once the current transaction commits (one task waits at most)."""
    pass_enqueue(DELIVERY_PASS)


def webhooks_deliver_task(*, ticket: str | None = None) -> str:
    """Run one bounded delivery pass as a cluster task (impex.services.passes); say what it did."""
    return pass_run(
        DELIVERY_PASS,
        run=lambda worker, seconds: len(webhooks_deliver_pass(worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
        ticket=ticket,
    )


# -- delivery ------------------------------------------------------------------------------------------


def _due(now):
    return WebhookDelivery.objects.filter(subscription__enabled=True).filter(
        Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.RUNNING, lease_until__lt=now)
    )


def _lease_seconds(sub: WebhookSubscription) -> int:
    """Return how long a delivery's claim lasts once its POST starts: the subscription's timeout and a margin."""
    return sub.timeout_seconds + 30


def _claim(*, worker: str, size: int) -> list[WebhookDelivery]:
    """Take up to size due deliveries for this worker; two workers never take the same one."""
    ids = queue_claim(DELIVERIES, _due(timezone.now()), worker=worker, size=size)
    return list(
        WebhookDelivery.objects.filter(pk__in=ids, claimed_by=worker, status=DeliveryStatus.RUNNING)
        .select_related("subscription")
        .order_by("next_attempt_at", "pk")
    )


def webhooks_deliver_pass(
    *, limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[DeliveryReport]:
    """POST every due delivery once (or up to limit, or for about so many seconds); return what each did.

    Deliveries are claimed in batches no larger than one lease covers at the slowest subscription's timeout
    (IMPEX_WEBHOOK_CONCURRENCY at a time);
    a batch's claim is renewed, and checked, in one statement just before its POSTs, which go out
    IMPEX_WEBHOOK_CONCURRENCY at a time, each its own attempt.
    """
    worker = worker or worker_name()
    slowest = WebhookSubscription.objects.filter(enabled=True).aggregate(t=Max("timeout_seconds"))["t"] or 1
    return queue_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        apply=lambda batch: _deliver(batch, worker=worker),
        release=lambda rest: queue_release(DELIVERIES, [d.pk for d in rest], worker=worker),
        # POSTs go IMPEX_WEBHOOK_CONCURRENCY at a time: so many more fit in a lease.
        # With a time budget (an import's inline delivery) a batch is one round of POSTs, so it ends within
        # one timeout of the budget.
        size=claim_size(
            item_seconds=slowest / settings.IMPEX_WEBHOOK_CONCURRENCY,
            limit=CLAIM_BATCH if seconds is None else settings.IMPEX_WEBHOOK_CONCURRENCY,
        ),
        limit=limit,
        seconds=seconds,
    )


@dataclass
class _Sent:
    """One POST's outcome, before it is recorded."""

    delivery: WebhookDelivery
    attempt: WebhookAttempt
    status: str
    message: str
    changes: dict


def _post(delivery: WebhookDelivery, *, worker: str, lost: set) -> _Sent | None:
    """POST one delivery (no database here: it runs in the pool) and say what came of it; None if its claim was lost."""
    if delivery.pk in lost:
        return None
    sub = delivery.subscription
    number = delivery.attempts + 1
    attempt = WebhookAttempt(delivery=delivery, number=number, worker=worker)
    try:
        # The timeout bounds each wait on the socket, not the whole answer: a receiver that answers drop by drop
        # keeps the POST going, and the batch's claim with it.
        answer = signed_post(
            url=sub.url,
            body=json_body(delivery.payload),
            secret=sub.secret,
            event_id=str(delivery.event_id),
            timeout=sub.timeout_seconds,
            user_agent=USER_AGENT,
        )
    except Exception as exc:  # a bug or a library's surprise: recorded on the delivery and retried, never a dead pass
        if not isinstance(exc, PostFailed):
            log.exception("webhook delivery %s to %s failed", delivery.pk, sub.code)
            exc = PostFailed(f"unexpected error: {exc.__class__.__name__}: {exc}")
        attempt.http_status, attempt.response, attempt.message = exc.http_status, exc.response, exc.message
        plan = retry_plan(attempt=number, limit=sub.max_attempts, message=exc.message, retry=exc.retry)
        status = DeliveryStatus.FAILED if plan.final else DeliveryStatus.PENDING
        return _Sent(
            delivery, attempt, status, plan.message, {"last_error": plan.message, "next_attempt_at": plan.next_at}
        )
    attempt.ok, attempt.http_status, attempt.response = True, answer.status, answer.response
    attempt.duration_ms = answer.duration_ms
    attempt.message = message = f"POST {sub.url}: {answer.status}"
    return _Sent(delivery, attempt, DeliveryStatus.DELIVERED, message, {"last_error": ""})


def _deliver(batch: list[WebhookDelivery], *, worker: str) -> list[DeliveryReport]:
    """POST a claimed batch, the deliveries this worker still holds, and record each outcome."""
    seconds = max(_lease_seconds(d.subscription) for d in batch)
    held = set(queue_hold(DELIVERIES, [d.pk for d in batch], worker=worker, seconds=seconds))
    batch = [d for d in batch if d.pk in held]
    if not batch:
        return []
    pks = [d.pk for d in batch]
    lost: set[int] = set()  # rows another worker took over: the heartbeat finds them, and their POSTs are not sent

    def renew() -> None:
        lost.update(set(pks) - set(queue_hold(DELIVERIES, pks, worker=worker, seconds=seconds)))

    with (
        Heartbeat(renew, every=seconds / 3, name="webhook deliveries"),
        ThreadPoolExecutor(max_workers=settings.IMPEX_WEBHOOK_CONCURRENCY, thread_name_prefix="webhook") as pool,
    ):
        sent = [s for s in pool.map(lambda d: _post(d, worker=worker, lost=lost), batch) if s is not None]
    return _record_all(sent, worker=worker)


def _record_all(sent: list[_Sent], *, worker: str) -> list[DeliveryReport]:
    """Record a batch's outcomes together; if that fails, each alone, and one that cannot be recorded is recorded
    as a failed try (sent again later), so that the others are never sent again for it."""
    try:
        return _record(sent, worker=worker)
    except Exception:
        if len(sent) > 1:
            return [report for one in sent for report in _record_all([one], worker=worker)]
        log.exception("recording webhook delivery %s failed", sent[0].delivery.pk)
        s = sent[0]
        plan = retry_plan(
            attempt=s.delivery.attempts + 1,
            limit=s.delivery.subscription.max_attempts,
            message="the outcome could not be recorded (see the worker's log)",
        )
        status = DeliveryStatus.FAILED if plan.final else DeliveryStatus.PENDING
        failed = WebhookAttempt(delivery=s.delivery, number=s.attempt.number, worker=worker, message=plan.message)
        return _record(
            [
                _Sent(
                    s.delivery,
                    failed,
                    status,
                    plan.message,
                    {"last_error": plan.message, "next_attempt_at": plan.next_at},
                )
            ],
            worker=worker,
        )


def _record(sent: list[_Sent], *, worker: str) -> list[DeliveryReport]:
    """Record a batch's outcomes: those delivered in one statement, each failure with its own message."""
    now = timezone.now()
    with transaction.atomic():
        # Only the worker that still holds the claim records the outcome (a lease that ran out was taken over).
        held = set(queue_hold(DELIVERIES, [s.delivery.pk for s in sent], worker=worker))
        sent = [s for s in sent if s.delivery.pk in held]
        delivered = [s for s in sent if s.status == DeliveryStatus.DELIVERED]
        if delivered:
            queue_finish(
                DELIVERIES,
                [s.delivery.pk for s in delivered],
                worker=worker,
                status=DeliveryStatus.DELIVERED,
                delivered_at=now,
                last_error="",
            )
            problem_resolve(keys=[f"webhook-delivery:{s.delivery.pk}" for s in delivered])
        for s in sent:
            if s.status != DeliveryStatus.DELIVERED:
                queue_finish(DELIVERIES, [s.delivery.pk], worker=worker, status=s.status, **s.changes)
                if s.status == DeliveryStatus.FAILED:
                    _report(s.delivery, status=s.status, message=s.message)
        WebhookAttempt.objects.bulk_create([s.attempt for s in sent])
    return [
        DeliveryReport(str(s.delivery.event_id), s.delivery.subscription.code, s.delivery.event, s.status, s.message)
        for s in sent
    ]


def _report(delivery: WebhookDelivery, *, status: str, message: str) -> None:
    """A delivery given up is a hub-wide problem until it is delivered (after a retry)."""
    key = f"webhook-delivery:{delivery.pk}"
    if status == DeliveryStatus.DELIVERED:
        problem_resolve(key=key)
    elif status == DeliveryStatus.FAILED:
        sub = delivery.subscription
        problem_raise(
            kind=ProblemKind.WEBHOOK,
            key=key,
            message=f"webhook {sub.code}: the {delivery.event} event {delivery.event_id} was given up: {message}",
            url=reverse("admin:impex_webhookdelivery_changelist") + f"?id__exact={delivery.pk}",
        )


def webhook_retry(*, deliveries) -> int:
    """Send failed deliveries again from their first try (staff's "retry"); return how many."""
    count = queue_reset(DELIVERIES, deliveries, old=DeliveryStatus.FAILED, last_error="")
    if count:
        deliver_soon()
    return count
