"""The order update feed (SPEC section 7): delivery events from the API and KS_SHIPMENTS files, applied once."""

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from impex.choices import ProblemKind
from impex.services.backoff import backoff
from impex.services.lifecycle import claim_size, claimed_pass, worker_name
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.problems import problem_raise, problem_resolve
from orders import events
from orders.choices import FeedSource, FeedStatus, OrderEventKind, OrderState, OrderTransition
from orders.models import FeedEvent, Order, OrderLine, Shipment
from orders.services import order_transition

CLAIM_BATCH = 100
# What one event may take (a few database writes): batches are sized so that one lease covers them.
EVENT_SECONDS = 1
FEED_PASS = Pass("order feed", "orders.tasks.orders_feed", "orders feed pass", "feed event(s)")
SHIPPABLE = {OrderState.CONFIRMED, OrderState.EXPORTED, OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED}


@dataclass(frozen=True)
class FeedResult:
    """One event as `orders_feed` reports it."""

    event_id: str
    status: str
    message: str

    def as_json(self) -> dict:
        return asdict(self)


class _Refused(Exception):
    """The event cannot be applied now; retry says whether a later pass may succeed, wait_for_order how soon."""

    def __init__(self, message: str, *, retry: bool = True, wait_for_order: bool = False):
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.wait_for_order = wait_for_order


def feed_pass_enqueue() -> None:
    """Have a worker apply the feed once the current transaction commits (one task waits at most)."""
    pass_enqueue(FEED_PASS)


def orders_feed_task() -> str:
    """Run one bounded pass of the feed as a cluster task (impex.services.passes); say what it did."""
    return pass_run(
        FEED_PASS,
        run=lambda worker, seconds: len(orders_feed_pass(by="task: orders_feed", worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
    )


def line_numbers(text: str) -> list[int]:
    """Read a KS_SHIPMENTS line_nos cell ("1;2"; empty: every line); ValueError names a bad one."""
    numbers = []
    for part in (p.strip() for p in text.replace(",", ";").split(";")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"'{part}' in line_nos is not a line number")
        numbers.append(int(part))
    return sorted(set(numbers))


@transaction.atomic
def feed_events_receive(*, connection, events: list[dict]) -> int:
    """Store delivery events as they came (all or none) and have the feed task apply them; return how many."""
    FeedEvent.objects.bulk_create(
        FeedEvent(
            connection=connection,
            source=FeedSource.API,
            event_id=e["event_id"],
            shipment_id=e["shipment_id"],
            order_ref=e["order_id"],
            carrier=e.get("carrier") or "",
            tracking_number=e.get("tracking_number") or "",
            shipped_at=e["shipped_at"],
            line_nos=sorted(e.get("line_nos") or []),
        )
        for e in events
    )
    feed_pass_enqueue()
    return len(events)


def feed_events_from_shipments() -> int:
    """Make a feed event of every imported shipment that has none yet, set-based (as a KS_SHIPMENTS file finishes)."""
    fresh = Shipment.objects.filter(~Exists(FeedEvent.objects.filter(shipment_id=OuterRef("shipment_id"))))
    made = 0
    last = 0
    while True:
        batch = list(
            fresh.filter(pk__gt=last)
            .order_by("pk")
            .values(
                "pk",
                "shipment_id",
                "order__order_id",
                "carrier",
                "tracking_number",
                "shipped_at",
                "line_nos",
                "connection_id",
            )[:1000]
        )
        if not batch:
            break
        rows = []
        for s in batch:
            try:
                numbers, message = line_numbers(s["line_nos"]), ""
            except ValueError as exc:
                numbers, message = [], str(exc)
            rows.append(
                FeedEvent(
                    connection_id=s["connection_id"],
                    source=FeedSource.FILE,
                    event_id=f"file:{s['shipment_id']}",
                    shipment_id=s["shipment_id"],
                    order_ref=s["order__order_id"],
                    carrier=s["carrier"],
                    tracking_number=s["tracking_number"],
                    shipped_at=s["shipped_at"],
                    line_nos=numbers,
                    status=FeedStatus.FAILED if message else FeedStatus.PENDING,
                    retry=not message,
                    message=message,
                )
            )
        FeedEvent.objects.bulk_create(rows)
        for row in rows:
            if row.status == FeedStatus.FAILED and row.pk is not None:
                _gave_up(row)
        made += len(rows)
        last = batch[-1]["pk"]
    if made:
        feed_pass_enqueue()
    return made


def _due(now):
    """Events to apply now: new ones, and failed ones whose retry time has come and whose order exists.

    An event acts only on an order of its own connection: another connection's order is as unknown to it.
    """
    order_exists = Exists(Order.objects.filter(order_id=OuterRef("order_ref"), connection=OuterRef("connection")))
    return FeedEvent.objects.filter(
        Q(status=FeedStatus.PENDING, lease_until__isnull=True)
        | Q(status=FeedStatus.PENDING, lease_until__lt=now)
        | Q(status=FeedStatus.FAILED, retry=True, next_attempt_at__lte=now, lease_until__isnull=True) & Q(order_exists)
        | Q(status=FeedStatus.FAILED, retry=True, next_attempt_at__lte=now, lease_until__lt=now) & Q(order_exists)
    )


def _claim(*, worker: str, size: int) -> list[FeedEvent]:
    """Take up to size due events for this worker, oldest first; two workers never take the same event."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(
            _due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return []
        _due(now).filter(pk__in=ids).update(claimed_by=worker, lease_until=until)
    return list(FeedEvent.objects.filter(pk__in=ids, claimed_by=worker, lease_until=until).order_by("pk"))


def _release(events: list[FeedEvent], *, worker: str) -> None:
    """Give back claimed events this worker did not reach (a pass out of time): due again at once."""
    FeedEvent.objects.filter(pk__in=[e.pk for e in events], claimed_by=worker).update(claimed_by="", lease_until=None)


def orders_feed_pass(
    *, by: str, limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[FeedResult]:
    """Apply every due feed event, in the order received (or limit of them, or for about so many seconds)."""
    worker = worker or worker_name()
    return claimed_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        act=lambda event: feed_event_apply(event=event, by=by, worker=worker),
        release=lambda rest: _release(rest, worker=worker),
        size=claim_size(item_seconds=EVENT_SECONDS, limit=CLAIM_BATCH),
        limit=limit,
        seconds=seconds,
    )


@transaction.atomic
def feed_event_apply(*, event: FeedEvent, by: str, worker: str) -> FeedResult | None:
    """Apply one delivery event this worker holds: its shipment recorded, its lines shipped, the order moved; or say
    why not. None if the worker lost its claim (another took the event over)."""
    now = timezone.now()
    # The claim is renewed, and so checked, under the event's lock, which the apply keeps until it commits.
    renewed = FeedEvent.objects.filter(pk=event.pk, claimed_by=worker).update(
        lease_until=now + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)
    )
    if not renewed:
        return None
    event = FeedEvent.objects.select_for_update().get(pk=event.pk)
    # Event ids and shipments are the sender's: one connection's cannot shadow another's.
    earlier = FeedEvent.objects.filter(pk__lt=event.pk, connection=event.connection_id).exclude(
        status=FeedStatus.IGNORED
    )
    same_id = earlier.filter(event_id=event.event_id).first()
    same_shipment = earlier.filter(shipment_id=event.shipment_id).first()
    if same_id is not None or same_shipment is not None:
        first = same_id or same_shipment
        what = f"event {event.event_id}" if same_id is not None else f"shipment {event.shipment_id}"
        message = f"{what} came before (event #{first.pk}, {first.status}): applied once"
        return _end(event, status=FeedStatus.IGNORED, message=message, now=now)
    try:
        message = _apply(event=event, by=by, now=now)
    except _Refused as exc:
        event.attempts += 1
        event.retry = exc.retry
        # Waiting for its order: due as soon as the order exists (no back-off); else 1, 2, 4 ... 60 minutes.
        wait = timedelta(0) if exc.wait_for_order else backoff(event.attempts)
        event.next_attempt_at = now + wait
        result = _end(event, status=FeedStatus.FAILED, message=exc.message, now=now)
        if not exc.retry:
            _gave_up(event)
        return result
    problem_resolve(key=f"feed-event:{event.pk}")
    return _end(event, status=FeedStatus.APPLIED, message=message, now=now)


def _gave_up(event: FeedEvent) -> None:
    """A shipment event that failed for good is a problem of its connection."""
    problem_raise(
        kind=ProblemKind.FEED_EVENT,
        key=f"feed-event:{event.pk}",
        connection=event.connection_id,
        message=f"shipment event {event.event_id} (shipment {event.shipment_id}, order {event.order_ref}) "
        f"failed for good: {event.message}",
        url=reverse("admin:orders_feedevent_change", args=[event.pk]),
    )


def _end(event: FeedEvent, *, status: str, message: str, now) -> FeedResult:
    event.status = status
    event.message = message
    event.claimed_by = ""
    event.lease_until = None
    if status == FeedStatus.APPLIED:
        event.applied_at = now
    event.save()
    return FeedResult(event_id=event.event_id, status=status, message=message)


def _apply(*, event: FeedEvent, by: str, now) -> str:
    # Another connection's order is unknown to this one, and said so in the same words (no way to probe for it).
    order = Order.objects.select_for_update().filter(order_id=event.order_ref, connection=event.connection_id).first()
    if order is None:
        raise _Refused(f"order {event.order_ref} is not known yet: applied when it arrives", wait_for_order=True)
    if order.state == OrderState.CANCELLED:
        raise _Refused(f"order {order.order_id} is cancelled: a delivery cannot be applied to it", retry=False)
    if order.state == OrderState.COMPLETED:
        raise _Refused(f"order {order.order_id} is completed: every line has shipped already", retry=False)
    if order.state not in SHIPPABLE:
        why = "its lines are not in yet" if order.state == OrderState.NEW else "it waits for approval"
        raise _Refused(f"order {order.order_id} is {order.state} ({why}): the delivery is applied later")
    known = dict(order.lines.values_list("line_no", "pk"))
    wanted = event.line_nos or sorted(known)
    missing = sorted(set(wanted) - set(known))
    if missing:
        raise _Refused(
            f"order {order.order_id} has no line {', '.join(map(str, missing))} "
            f"(its lines: {', '.join(map(str, sorted(known))) or 'none'})"
        )
    shipment = Shipment.objects.select_for_update().filter(shipment_id=event.shipment_id).first()
    if shipment is not None and shipment.order_id != order.pk:
        raise _Refused(f"shipment {event.shipment_id} belongs to another order", retry=False)
    values = {
        "order": order,
        "carrier": event.carrier,
        "tracking_number": event.tracking_number,
        "shipped_at": event.shipped_at,
        "line_nos": ";".join(map(str, event.line_nos)),
    }
    if shipment is None:
        shipment = Shipment.objects.create(shipment_id=event.shipment_id, connection=event.connection, **values)
    elif any(getattr(shipment, k) != v for k, v in values.items()):
        for name, value in values.items():
            setattr(shipment, name, value)
        shipment.save()
    newly = OrderLine.objects.filter(order=order, line_no__in=wanted, shipped_at__isnull=True).update(
        shipped_at=event.shipped_at, shipment=shipment, updated_at=now
    )
    shipped = sorted(order.lines.filter(shipped_at__isnull=False).values_list("line_no", flat=True))
    tracking = list(
        dict.fromkeys(
            t for t in order.shipments.order_by("shipped_at", "pk").values_list("tracking_number", flat=True) if t
        )
    )
    Order.objects.filter(pk=order.pk).update(
        shipped_lines=";".join(map(str, shipped)), tracking_numbers=";".join(tracking), updated_at=now
    )
    lines = ";".join(map(str, wanted))
    carrier = " ".join(x for x in (event.carrier, event.tracking_number) if x)
    message = f"shipment {event.shipment_id}{f' ({carrier})' if carrier else ''}: lines {lines}"
    if not newly:
        message += " (had shipped already)"
    events.note_event(order=order, kind=OrderEventKind.SHIPMENT, by=by, message=message)
    _move(order=order, every_line=len(shipped) == len(known), by=by, why=f"shipment {event.shipment_id}")
    return message


def _move(*, order: Order, every_line: bool, by: str, why: str) -> None:
    """Move the order as its lines now stand: partially shipped, or shipped and then completed."""
    state = Order.objects.values_list("state", flat=True).get(pk=order.pk)
    if not every_line:
        if state != OrderState.PARTIALLY_SHIPPED:
            order_transition(order=order, transition=OrderTransition.SHIP_PARTIALLY, by=by, reason=why)
        return
    if state != OrderState.SHIPPED:
        order_transition(order=order, transition=OrderTransition.SHIP, by=by, reason=why)
    order_transition(order=order, transition=OrderTransition.COMPLETE, by=by, reason="every line has shipped")
