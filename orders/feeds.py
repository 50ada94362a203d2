"""The order update feed (SPEC section 7): delivery events from the API and KS_SHIPMENTS files, applied once."""

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from impex.choices import ProblemKind
from impex.services.backoff import backoff
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.problems import problem_raise, problem_resolve
from impex.services.queue import (
    WorkQueue,
    queue_claim,
    queue_finish,
    queue_finish_each,
    queue_pass,
    queue_release,
    retry_plan,
    worker_name,
)
from impex.services.sql import rows_update
from orders.choices import FeedSource, FeedStatus, OrderEventKind, OrderState, OrderTransition
from orders.models import FeedEvent, Order, OrderEvent, OrderLine, Shipment
from orders.services import orders_transition

# Events per batch: a batch is applied in one transaction, in a few dozen statements whatever its size, well within
# one lease (IMPEX_LEASE_SECONDS).
CLAIM_BATCH = 200
# A feed event's claim leaves its status as it is (pending, or failed and due again); it ends applied, ignored or
# failed.
FEED = WorkQueue(
    FeedEvent,
    moves={
        FeedStatus.PENDING: (FeedStatus.APPLIED, FeedStatus.IGNORED, FeedStatus.FAILED),
        FeedStatus.FAILED: (FeedStatus.APPLIED, FeedStatus.IGNORED, FeedStatus.FAILED),
    },
    running=None,
)
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


def orders_feed_task(*, ticket: str | None = None) -> str:
    """Run one bounded pass of the feed as a cluster task (impex.services.passes); say what it did."""
    return pass_run(
        FEED_PASS,
        run=lambda worker, seconds: len(orders_feed_pass(by="task: orders_feed", worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
        ticket=ticket,
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
    _statistics_after(len(events))
    feed_pass_enqueue()
    return len(events)


# Events stored at once from which the table's statistics are brought up to date.
ANALYZE_AFTER = 1000


def _statistics_after(made: int) -> None:
    """After a burst of events, have PostgreSQL look at the table again once they are committed: its planner would
    otherwise take it for nearly empty and check each due event against every other (seconds per claim) until
    autovacuum gets to it."""
    if made >= ANALYZE_AFTER and connection.vendor == "postgresql":
        table = FeedEvent._meta.db_table

        def analyze() -> None:
            with connection.cursor() as cursor:
                cursor.execute(f'ANALYZE "{table}"')

        transaction.on_commit(analyze)


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
        _statistics_after(made)
        feed_pass_enqueue()
    return made


def _due(now):
    """Events to apply now: new ones, and failed ones whose retry time has come and whose order exists.

    An event acts only on an order of its own connection: another connection's order is as unknown to it.
    """
    order_exists = Exists(Order.objects.filter(order_id=OuterRef("order_ref"), connection=OuterRef("connection")))
    # An order's events apply in the order received: one waits while an earlier event of its order is not tried yet
    # (in another worker's batch, or held by a worker that was killed). An earlier event that failed and waits for
    # its retry holds nothing back.
    earlier_untried = Exists(
        FeedEvent.objects.filter(
            connection=OuterRef("connection"),
            order_ref=OuterRef("order_ref"),
            pk__lt=OuterRef("pk"),
            status=FeedStatus.PENDING,
        )
    )
    return FeedEvent.objects.exclude(earlier_untried).filter(
        Q(status=FeedStatus.PENDING, lease_until__isnull=True)
        | Q(status=FeedStatus.PENDING, lease_until__lt=now)
        | Q(status=FeedStatus.FAILED, retry=True, next_attempt_at__lte=now, lease_until__isnull=True) & Q(order_exists)
        | Q(status=FeedStatus.FAILED, retry=True, next_attempt_at__lte=now, lease_until__lt=now) & Q(order_exists)
    )


def _claim(*, worker: str, size: int) -> list[int]:
    """Take up to size due events for this worker, oldest first; two workers never take the same event."""
    # Those another worker took meanwhile are left out when the batch is applied (its claim is checked again).
    return queue_claim(FEED, _due(timezone.now()), worker=worker, size=size, order_by=("pk",))


def _release(ids: list[int], *, worker: str) -> None:
    """Give back claimed events this worker did not apply: due again at once."""
    queue_release(FEED, ids, worker=worker)


def orders_feed_pass(
    *, by: str, limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[FeedResult]:
    """Apply every due feed event, in the order received, a batch per transaction (or limit of them, or no new batch
    after so many seconds). An event that breaks its batch's apply is set aside alone (_failed_unexpectedly)."""
    worker = worker or worker_name()
    return queue_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        apply=lambda ids: feed_events_apply(ids=ids, by=by, worker=worker),
        release=lambda ids: _release(ids, worker=worker),
        size=CLAIM_BATCH,
        limit=limit,
        seconds=seconds,
        on_error=lambda pk, exc: _failed_unexpectedly(pk, exc, worker=worker),
    )


def _failed_unexpectedly(pk: int, exc: Exception, *, worker: str) -> None:
    """Record that applying an event raised something unexpected (a bug, a surprise of the data): failed, tried
    again with the back-off, and a problem once IMPEX_EVENT_MAX_ATTEMPTS tries are used up."""
    with transaction.atomic():
        event = FeedEvent.objects.select_for_update(of=("self",)).filter(pk=pk, claimed_by=worker).first()
        if event is None:
            return
        plan = retry_plan(
            attempt=event.attempts + 1,
            limit=settings.IMPEX_EVENT_MAX_ATTEMPTS,
            message=f"unexpected error: {exc.__class__.__name__}: {exc}",
        )
        ended = queue_finish(
            FEED,
            [pk],
            worker=worker,
            status=FeedStatus.FAILED,
            message=plan.message,
            retry=not plan.final,
            next_attempt_at=plan.next_at,
        )
        if ended and plan.final:
            event.refresh_from_db()
            _gave_up(event)


def feed_events_apply(*, ids: list[int], by: str, worker: str) -> list[FeedResult]:
    """Apply a batch of events this worker claimed, set-based and in one transaction; return their results in the
    order received.

    The claim is checked again in one statement first: only the events still claimed by this worker are applied
    (locked until the commit), those another worker took over are left alone. An order takes one event per batch:
    its later events are given back for the next batch, so that an order's events apply in the order received.
    """
    with transaction.atomic():
        held = list(
            FeedEvent.objects.select_for_update(of=("self",)).filter(pk__in=ids, claimed_by=worker).order_by("pk")
        )
        if not held:
            return []
        batch = _Batch(held, by=by, now=timezone.now())
        batch.decide()
        batch.write()
        _release([event.pk for event in batch.later], worker=worker)
    return [FeedResult(event_id=e.event_id, status=e.status, message=e.message) for e in batch.decided]


class _Batch:
    """A batch of events: what they read (one query per table), what applying them in order changes (worked out in
    memory, as one event at a time would), and the writes (a statement or two per table)."""

    def __init__(self, events: list[FeedEvent], *, by: str, now):
        self.events = events
        self.by = by
        self.now = now
        self.decided: list[FeedEvent] = []
        self.later: list[FeedEvent] = []
        # (sender, order_ref) of each order an event of this batch moves: the order and the event's message.
        self.moved: dict[tuple[int | None, str], tuple[Order, str]] = {}
        self.new_shipments: list[Shipment] = []
        self.changed_shipments: dict[str, Shipment] = {}
        self.line_shipment: dict[int, tuple[OrderLine, Shipment]] = {}
        self.moves: dict[int, list[tuple[str, str]]] = {}
        self.rows: dict[int, list] = {}
        self.earlier = self._earlier()
        # Orders are locked in one order (by id) by every batch, so two workers never wait on each other in a circle.
        # Their lines come with them: applying the events changes them in memory, where the state machine's guards
        # read them as the orders move (orders_transition).
        lines = Prefetch("lines", queryset=OrderLine.objects.only("pk", "order_id", "line_no", "shipped_at"))
        self.orders = {
            o.order_id: o
            for o in Order.objects.select_for_update(of=("self",))
            .filter(order_id__in={e.order_ref for e in events})
            .only("pk", "order_id", "connection_id", "state")
            .prefetch_related(lines)
            .order_by("pk")
        }
        order_ids = [o.pk for o in self.orders.values()]
        self.lines: dict[int, dict[int, OrderLine]] = defaultdict(dict)
        for order in self.orders.values():
            for line in order.lines.all():
                self.lines[order.pk][line.line_no] = line
        # The shipments the events name, and every shipment of their orders (their tracking numbers).
        named = Q(shipment_id__in={e.shipment_id for e in events}) | Q(order_id__in=order_ids)
        locked = Shipment.objects.select_for_update(of=("self",)).filter(named).order_by("pk")
        self.shipments = {s.shipment_id: s for s in locked}

    def _earlier(self) -> dict[tuple, list[list]]:
        """Earlier events of the same senders with the batch's event ids or shipments, oldest first, by what they
        share: [pk, status] (the status as this batch changes it)."""
        senders = {e.connection_id for e in self.events}
        same_sender = Q(connection_id__in=senders - {None})
        if None in senders:
            same_sender |= Q(connection__isnull=True)
        rows = (
            FeedEvent.objects.filter(same_sender, pk__lt=self.events[-1].pk)
            .filter(
                Q(event_id__in={e.event_id for e in self.events})
                | Q(shipment_id__in={e.shipment_id for e in self.events})
            )
            .exclude(status=FeedStatus.IGNORED)
            .order_by("received_at", "pk")
            .values_list("pk", "connection_id", "event_id", "shipment_id", "status")
        )
        found: dict[tuple, list[list]] = defaultdict(list)
        for pk, connection_id, event_id, shipment_id, status in rows:
            row = self.rows[pk] = [pk, status]
            found[(connection_id, "event", event_id)].append(row)
            found[(connection_id, "shipment", shipment_id)].append(row)
        return found

    def _came_before(self, event: FeedEvent) -> str:
        """Say which earlier event of the sender had this event's id or shipment ("" if none): it is applied once."""
        for what, value in (("event", event.event_id), ("shipment", event.shipment_id)):
            for pk, status in self.earlier[(event.connection_id, what, value)]:
                if pk < event.pk and status != FeedStatus.IGNORED:
                    return f"{what} {value} came before (event #{pk}, {status}): applied once"
        return ""

    def decide(self) -> None:
        """Work out each event's outcome in the order received, as if they were applied one at a time."""
        for event in self.events:
            first = self._came_before(event)
            if first:
                self._end(event, FeedStatus.IGNORED, first)
            elif (event.connection_id, event.order_ref) in self.moved:
                self.later.append(event)
            else:
                try:
                    message = self._apply(event)
                except _Refused as exc:
                    event.attempts += 1
                    event.retry = exc.retry
                    # Waiting for its order: due as soon as the order exists (no back-off); else 1, 2, 4 ... 60 min.
                    wait = timedelta(0) if exc.wait_for_order else backoff(event.attempts)
                    event.next_attempt_at = self.now + wait
                    self._end(event, FeedStatus.FAILED, exc.message)
                else:
                    self._end(event, FeedStatus.APPLIED, message)

    def _end(self, event: FeedEvent, status: str, message: str) -> None:
        event.status = status
        event.message = message
        if event.pk in self.rows:
            self.rows[event.pk][1] = status
        self.decided.append(event)

    def _apply(self, event: FeedEvent) -> str:
        """Check the event against its order (refused: _Refused, nothing changed) and apply it in memory."""
        order = self.orders.get(event.order_ref)
        # Another connection's order is unknown to this one, and said so in the same words (no way to probe for it).
        if order is None or order.connection_id != event.connection_id:
            raise _Refused(f"order {event.order_ref} is not known yet: applied when it arrives", wait_for_order=True)
        if order.state == OrderState.CANCELLED:
            raise _Refused(f"order {order.order_id} is cancelled: a delivery cannot be applied to it", retry=False)
        if order.state == OrderState.COMPLETED:
            raise _Refused(f"order {order.order_id} is completed: every line has shipped already", retry=False)
        if order.state not in SHIPPABLE:
            why = "its lines are not in yet" if order.state == OrderState.NEW else "it waits for approval"
            raise _Refused(f"order {order.order_id} is {order.state} ({why}): the delivery is applied later")
        known = self.lines[order.pk]
        wanted = event.line_nos or sorted(known)
        if not known:
            raise _Refused(f"order {order.order_id} has no lines yet: the delivery is applied later")
        missing = sorted(set(wanted) - set(known))
        if missing:
            raise _Refused(
                f"order {order.order_id} has no line {', '.join(map(str, missing))} "
                f"(its lines: {', '.join(map(str, sorted(known))) or 'none'})"
            )
        shipment = self.shipments.get(event.shipment_id)
        if shipment is not None and shipment.order_id != order.pk:
            raise _Refused(f"shipment {event.shipment_id} belongs to another order", retry=False)
        values = {
            "order_id": order.pk,
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
            "shipped_at": event.shipped_at,
            "line_nos": ";".join(map(str, event.line_nos)),
        }
        if shipment is None:
            shipment = Shipment(shipment_id=event.shipment_id, connection_id=event.connection_id, **values)
            self.shipments[shipment.shipment_id] = shipment
            self.new_shipments.append(shipment)
        elif any(getattr(shipment, k) != v for k, v in values.items()):
            for name, value in values.items():
                setattr(shipment, name, value)
            self.changed_shipments[shipment.shipment_id] = shipment
        newly = [known[n] for n in wanted if known[n].shipped_at is None]
        for line in newly:
            line.shipped_at = event.shipped_at
            self.line_shipment[line.pk] = (line, shipment)
        carrier = " ".join(x for x in (event.carrier, event.tracking_number) if x)
        message = (
            f"shipment {event.shipment_id}{f' ({carrier})' if carrier else ''}: lines {';'.join(map(str, wanted))}"
        )
        if not newly:
            message += " (had shipped already)"
        self.moved[(event.connection_id, event.order_ref)] = (order, message)
        # Move the order as its lines now stand: partially shipped, or shipped and then completed.
        why = f"shipment {event.shipment_id}"
        if not all(line.shipped_at is not None for line in known.values()):
            if order.state != OrderState.PARTIALLY_SHIPPED:
                self.moves[order.pk] = [(OrderTransition.SHIP_PARTIALLY, why)]
        else:
            ship = [(OrderTransition.SHIP, why)] if order.state != OrderState.SHIPPED else []
            self.moves[order.pk] = [*ship, (OrderTransition.COMPLETE, "every line has shipped")]
        return message

    def write(self) -> None:
        """Write what the batch changed: a statement or two per table, whatever the batch's size."""
        now = self.now
        Shipment.objects.bulk_create(self.new_shipments)
        for shipment in self.changed_shipments.values():
            shipment.updated_at = now
        Shipment.objects.bulk_update(
            self.changed_shipments.values(),
            ["order", "carrier", "tracking_number", "shipped_at", "line_nos", "updated_at"],
        )
        rows_update(
            OrderLine,
            values={pk: (line.shipped_at, shipment.pk) for pk, (line, shipment) in self.line_shipment.items()},
            fields=["shipped_at", "shipment"],
            same={"updated_at": now},
        )
        if self.moved:
            self._orders_write()
        orders_transition(moves=self.moves, by=self.by, locked={o.pk: o for o in self.orders.values()})
        self._events_write()

    def _orders_write(self) -> None:
        """The orders' shipped lines and tracking numbers (for the ORDER-STATUS export), and their timeline rows."""
        tracking: dict[int, list[Shipment]] = defaultdict(list)
        for shipment in self.shipments.values():
            tracking[shipment.order_id].append(shipment)
        shipped_lines, numbers = {}, {}
        for order, _ in self.moved.values():
            lines = self.lines[order.pk]
            shipped_lines[order.pk] = ";".join(str(n) for n in sorted(lines) if lines[n].shipped_at is not None)
            ordered = sorted(tracking[order.pk], key=lambda s: (s.shipped_at, s.pk))
            numbers[order.pk] = ";".join(dict.fromkeys(s.tracking_number for s in ordered if s.tracking_number))
        rows_update(
            Order,
            values={pk: (shipped_lines[pk], numbers[pk]) for pk in shipped_lines},
            fields=["shipped_lines", "tracking_numbers"],
            same={"updated_at": self.now},
        )
        OrderEvent.objects.bulk_create(
            OrderEvent(order_id=order.pk, at=self.now, kind=OrderEventKind.SHIPMENT, by=self.by, message=message)
            for order, message in self.moved.values()
        )

    def _events_write(self) -> None:
        """Each event's outcome: one UPDATE per outcome; the problems of events applied now resolved, those of events
        that failed for good raised."""
        by_status = defaultdict(list)
        for event in self.decided:
            by_status[event.status].append(event)
        applied = by_status[FeedStatus.APPLIED]
        queue_finish_each(
            FEED,
            {e.pk: (e.message,) for e in applied},
            fields=["message"],
            status=FeedStatus.APPLIED,
            applied_at=self.now,
        )
        queue_finish_each(
            FEED,
            {e.pk: (e.message,) for e in by_status[FeedStatus.IGNORED]},
            fields=["message"],
            status=FeedStatus.IGNORED,
        )
        queue_finish_each(
            FEED,
            {e.pk: (e.message, e.attempts, e.retry, e.next_attempt_at) for e in by_status[FeedStatus.FAILED]},
            fields=["message", "attempts", "retry", "next_attempt_at"],
            status=FeedStatus.FAILED,
        )
        if applied:
            problem_resolve(keys=[f"feed-event:{e.pk}" for e in applied])
        for event in by_status[FeedStatus.FAILED]:
            if not event.retry:
                _gave_up(event)


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
