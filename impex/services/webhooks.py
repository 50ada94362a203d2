"""Outbound webhooks (SPEC section 10): subscriptions, events recorded with the change that caused them,
delivered after commit, signed, retried with back-off, every attempt logged.

An event is written in the same transaction as its cause (a file's chunk, a file's finish, a single-record
update), so it exists exactly when the change does; a worker that dies half-way leaves neither. A file of many
records sends one event per batch of up to IMPEX_WEBHOOK_BATCH_IDS ids, never one per record.
"""

import logging
import uuid
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
from impex.services.backoff import backoff
from impex.services.heartbeat import Heartbeat
from impex.services.lifecycle import claim_due, claim_release, claim_renew, claim_size, claimed_pass, worker_name
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.problems import problem_raise, problem_resolve
from impex.services.signed_post import PostFailed, json_body, signed_post

log = logging.getLogger(__name__)

USER_AGENT = "impex-hub webhook"
CLAIM_BATCH = 50
DELIVERY_PASS = Pass(
    "webhook deliveries", "impex.tasks.webhooks_deliver", "webhook deliveries", "webhook delivery attempt(s)"
)
EVENT_NAMES = tuple(WebhookEvent.values)
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


def _subscribers(event: str) -> list[WebhookSubscription]:
    # events is a JSON list: filtered here, portably (a handful of subscriptions at most).
    return [s for s in WebhookSubscription.objects.filter(enabled=True) if event in (s.events or [])]


def webhooks_wanted(*events: str) -> bool:
    """Tell whether any enabled subscription takes one of these events (so callers can skip the work)."""
    return any(_subscribers(event) for event in events)


# -- events --------------------------------------------------------------------------------------------


def webhook_emit(event: str, *, data: dict, connection=None) -> int:
    """Record an event for every subscriber, in the caller's transaction; deliver after commit. Return how many."""
    subscribers = _subscribers(event)
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


def webhook_records_changed(*, entity: str, model, key_field: str, keys: list[str], since, connection, source: dict):
    """Emit customer.created / customer.updated for the records of keys written since a time (a batch's start).

    Records found equal were not written (their updated_at is older) and send nothing.
    """
    events = RECORD_EVENTS.get(entity)
    if not events or not keys or not webhooks_wanted(*events):
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
            webhook_emit(event, data={"customer_ids": part, "count": len(part), **source}, connection=connection)


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


def webhooks_deliver_task() -> str:
    """Run one bounded delivery pass as a cluster task (impex.services.passes); say what it did."""
    return pass_run(
        DELIVERY_PASS,
        run=lambda worker, seconds: len(webhooks_deliver_pass(worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
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
    now = timezone.now()
    ids = claim_due(_due(now), worker=worker, size=size, lease_seconds=settings.IMPEX_LEASE_SECONDS, now=now)
    return list(
        WebhookDelivery.objects.filter(pk__in=ids, claimed_by=worker, status=DeliveryStatus.RUNNING)
        .select_related("subscription")
        .order_by("next_attempt_at", "pk")
    )


def webhooks_deliver_pass(
    *, limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[DeliveryReport]:
    """POST every due delivery once (or up to limit, or for about so many seconds); return what each did.

    A batch is no larger than one lease covers at the slowest subscription's timeout; each delivery's claim is
    renewed, and checked, just before its POST.
    """
    worker = worker or worker_name()
    slowest = WebhookSubscription.objects.filter(enabled=True).aggregate(t=Max("timeout_seconds"))["t"] or 1
    return claimed_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        act=lambda delivery: _deliver(delivery, worker=worker),
        release=lambda rest: claim_release(WebhookDelivery, pks=[d.pk for d in rest], worker=worker),
        size=claim_size(item_seconds=slowest, limit=CLAIM_BATCH),
        limit=limit,
        seconds=seconds,
    )


def _deliver(delivery: WebhookDelivery, *, worker: str) -> DeliveryReport | None:
    """POST one delivery if this worker still holds its claim (None if another took it over) and record it."""
    sub = delivery.subscription
    seconds = _lease_seconds(sub)
    if not claim_renew(WebhookDelivery, pk=delivery.pk, worker=worker, seconds=seconds):
        return None
    number = delivery.attempts + 1
    attempt = WebhookAttempt(delivery=delivery, number=number, worker=worker)

    def renew() -> None:
        claim_renew(WebhookDelivery, pk=delivery.pk, worker=worker, seconds=seconds)

    try:
        # The timeout bounds each wait on the socket, not the whole answer: a receiver that answers drop by drop
        # keeps the POST going, and the claim with it.
        with Heartbeat(renew, every=seconds / 3, name=f"webhook delivery {delivery.pk}"):
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
        final = not exc.retry or number >= sub.max_attempts
        status = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
        message = exc.message
        if not final:
            message += f" (try {number} of {sub.max_attempts}; next in {backoff(number)})"
        elif exc.retry:
            message += f" ({number} tries used up)"
        changes = {"last_error": message, "next_attempt_at": timezone.now() + backoff(number)}
    else:
        attempt.ok, attempt.http_status, attempt.response = True, answer.status, answer.response
        attempt.duration_ms = answer.duration_ms
        attempt.message = message = f"POST {sub.url}: {answer.status}"
        status = DeliveryStatus.DELIVERED
        changes = {"delivered_at": timezone.now(), "last_error": ""}
    with transaction.atomic():
        # Only the worker that still holds the claim records the outcome (a lease that ran out was taken over).
        done = WebhookDelivery.objects.filter(pk=delivery.pk, claimed_by=worker, status=DeliveryStatus.RUNNING).update(
            status=status, attempts=number, claimed_by="", lease_until=None, **changes
        )
        if done:
            attempt.save()
            _report(delivery, status=status, message=message)
    return DeliveryReport(str(delivery.event_id), sub.code, delivery.event, status, message)


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
    count = deliveries.filter(status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )
    if count:
        deliver_soon()
    return count
