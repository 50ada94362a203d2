"""Order state changes and export flags: each change in one transaction, with its timeline row (SPEC section 7)."""

import uuid
from collections import defaultdict

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.utils import timezone
from django_fsm import can_proceed

from impex.services.passes import Pass, pass_enqueue
from impex.services.queue import WorkQueue, queue_finish, queue_reset
from orders import events
from orders.choices import (
    FLAG_TRANSITIONS,
    ExporterKind,
    ExportRunStatus,
    FlagStatus,
    OrderEventKind,
    OrderState,
    OrderStatus,
    OrderTransition,
)
from orders.exceptions import AMEND_REFUSED, CANCEL_REFUSED, IllegalTransition, OrderError, OrderShipped
from orders.exporters.registry import KINDS
from orders.models import Exporter, Order, OrderEvent, OrderExportRun, OrderFlag, OrderLine, TransitionFlag
from orders.problems import exporters_stopped
from orders.state import AMENDABLE, GUARD_MESSAGES, HAS_SHIPPED, has_guards, orders_move

# Transitions after which the order's waiting flags are dropped: nothing is exported for a cancelled order
# (except what a flag configured for the cancel itself asks, e.g. telling the ERP, and the re-sends that tell the
# exporters which had sent the order its new state: orders.services.order_resend).
ENDING = {OrderTransition.CANCEL, OrderTransition.REJECT}
BATCH = 1000
# The longest reason of a rejection or a cancellation (kept on the order's timeline).
REASON_MAX_LENGTH = 2000
# An exporter's delivery of an order: claimed, then done, held, tried again later or failed (orders.chain).
FLAGS = WorkQueue(OrderFlag, moves=FLAG_TRANSITIONS)
EXPORT_PASS = Pass("order export", "orders.tasks.orders_export", "orders export pass", "exporter run(s)")


def flags_for(*, transition: str) -> list[str]:
    """Return the flags a transition sets: those configured for it; for confirm, if none is, every chain's first."""
    flags = sorted(TransitionFlag.objects.filter(transition=transition).values_list("flag", flat=True))
    if flags or transition != OrderTransition.CONFIRM:
        return flags
    # No rule for confirm: it starts every chain, i.e. sets each enabled exporter's flag that no exporter sets next.
    exporters = Exporter.objects.filter(enabled=True)
    followers = set(exporters.exclude(next_flag="").values_list("next_flag", flat=True))
    return sorted(set(exporters.values_list("flag", flat=True)) - followers)


def transition_refusal(*, order: Order, transition: str) -> str:
    """Return why the order cannot take the transition now, or "" if it can."""
    method = getattr(order, transition, None)
    if transition not in OrderTransition.values or method is None:
        return f"'{transition}' is not a transition of an order (they are: {', '.join(OrderTransition.values)})"
    meta = method._django_fsm
    if not can_proceed(method, check_conditions=False):
        sources = sorted({str(s) for s in meta.transitions})
        return (
            f"order {order.order_id} can't {transition}: it is {order.state} "
            f"({transition} is allowed from {', '.join(sources)})"
        )
    for condition in meta.get_transition(order.state).conditions:
        if not condition(order):
            return f"order {order.order_id} can't {transition}: {GUARD_MESSAGES.get(condition, condition.__name__)}"
    return ""


def order_transition(
    *, order: Order | int, transition: str, by: str, user=None, reason: str = "", lock: bool = True
) -> Order:
    """Move an order by one transition: check it, save it, record it, set its flags; refuse it whole if illegal."""
    with transaction.atomic():
        pk = order.pk if isinstance(order, Order) else order
        order = (Order.objects.select_for_update() if lock else Order.objects).get(pk=pk)
        refusal = transition_refusal(order=order, transition=transition)
        if refusal:
            raise IllegalTransition(refusal)
        before = order.state
        getattr(order, transition)()
        order.state_changed_at = timezone.now()
        if order.state == OrderState.CANCELLED:
            order.status = OrderStatus.CANCELLED  # what KS_ORDERS exports say of it
        order.save(update_fields=["state", "state_changed_at", "status", "updated_at"])
        events.transition_event(
            order=order,
            transition=transition,
            from_state=before,
            to_state=order.state,
            by=by,
            user=user,
            message=reason,
        )
        if transition in ENDING:
            chain = order.flags.filter(resend=False)
            dropped = sorted(set(chain.values_list("flag", flat=True)))
            if dropped:
                chain.delete()
                events.note_event(
                    order=order, kind=OrderEventKind.NOTE, by=by, message=f"flags dropped: {', '.join(dropped)}"
                )
                # Nothing is left to retry: the exporters' problems with this order are over.
                exporters_stopped(order=order)
            # However it was cancelled (a file, staff, HTTP, a rejection), the exporters that had sent the order
            # learn its new state.
            order_resend(order, by=by)
        for flag in flags_for(transition=transition):
            flag_set(order=order, flag=flag, by=by)
    return order


def exporters_by_flag(flags=None) -> dict[str, list[int]]:
    """Return the enabled exporters (their ids) acting on each flag, of the flags given or of all."""
    found = defaultdict(list)
    exporters = Exporter.objects.filter(enabled=True).order_by("code")
    if flags is not None:
        exporters = exporters.filter(flag__in=list(flags))
    for pk, flag in exporters.values_list("pk", "flag"):
        found[flag].append(pk)
    return found


def _deliveries(*, order_id: int, flag: str, exporters: list[int], by: str, at=None) -> list[OrderFlag]:
    """Return the rows that put a flag on an order: one delivery per exporter, or one waiting row if none acts."""
    at = at or timezone.now()
    return [
        OrderFlag(order_id=order_id, flag=flag, exporter_id=pk, set_at=at, next_attempt_at=at, set_by=by)
        for pk in exporters or [None]
    ]


def flag_set(*, order: Order, flag: str, by: str) -> OrderFlag:
    """Put an export flag on the order, a delivery for each of its enabled exporters, and record it (once: a flag
    already there stays as it is); return its first delivery."""
    rows = OrderFlag.objects.filter(order=order, flag=flag, resend=False).order_by("pk")
    if not rows.exists():
        new = _deliveries(order_id=order.pk, flag=flag, exporters=exporters_by_flag([flag])[flag], by=by)
        OrderFlag.objects.bulk_create(new, ignore_conflicts=True)
        events.flag_event(order=order, flag=flag, by=by)
    return rows.first()


@transaction.atomic
def orders_confirm_ready(*, by: str = "import") -> int:
    """Confirm every new order whose lines are in, set-based; return how many (runs as a lines file finishes)."""
    ready = Order.objects.filter(state=OrderState.NEW).filter(Exists(OrderLine.objects.filter(order=OuterRef("pk"))))
    flags = flags_for(transition=OrderTransition.CONFIRM)
    done = last = 0
    while ids := _lock_batch(ready.filter(pk__gt=last)):
        last = ids[-1]
        # The state machine's own method and guard for each order (its lines, prefetched), one UPDATE for all.
        lines = Prefetch("lines", queryset=OrderLine.objects.only("pk", "order_id"))
        moved = Order.objects.filter(pk__in=ids).prefetch_related(lines).transition(OrderTransition.CONFIRM)
        if not moved:
            continue
        now = moved[0][0].state_changed_at
        OrderEvent.objects.bulk_create(
            [
                OrderEvent(
                    order_id=order.pk,
                    at=now,
                    kind=OrderEventKind.TRANSITION,
                    transition=OrderTransition.CONFIRM,
                    from_state=before,
                    to_state=order.state,
                    by=by,
                    message="its lines are in",
                )
                for order, before in moved
            ],
            batch_size=BATCH,
        )
        _flags_bulk_set([order.pk for order, _ in moved], flags=flags, by=by, at=now)
        done += len(moved)
    return done


def orders_transition(*, moves: dict[int, list[tuple[str, str]]], by: str, locked: dict | None = None) -> None:
    """Move many orders (locked by the caller), each along its transitions in turn, set-based; refuse them all if one
    cannot take one.

    moves maps an order's id to its transitions, each with the reason its timeline row gives (ship, then complete).
    Orders that take the same transitions are read once (their lines prefetched for the guards), unless the caller
    has them (locked: by id, their lines prefetched), and go through the state machine's methods and guards, one
    UPDATE per state left and state reached; the timeline rows and the flags each transition sets (where the order
    does not carry them yet, as flag_set) are written in bulk, in that order. Cancel and reject drop flags and
    re-send the order: they go through order_transition, one order at a time.
    """
    paths: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for pk, steps in moves.items():
        paths[tuple(transition for transition, _ in steps)].append(pk)
    with transaction.atomic():
        for path, ids in paths.items():
            ending = [transition for transition in path if transition in ENDING]
            if ending:
                raise IllegalTransition(f"{ending[0]} moves one order at a time (orders.services.order_transition)")
            if locked is not None:
                orders = [locked[pk] for pk in sorted(ids)]
            else:
                orders = Order.objects.filter(pk__in=ids).only("pk", "order_id", "state").order_by("pk")
                if any(has_guards(transition) for transition in path):
                    lines = Prefetch("lines", queryset=OrderLine.objects.only("pk", "order_id", "shipped_at"))
                    orders = orders.prefetch_related(lines)
            # Each transition after the first moves the orders as the one before left them.
            steps = orders_move(orders, list(path))
            rows = []
            for step, (transition, moved) in enumerate(zip(path, steps, strict=True)):
                if len(moved) != len(ids):
                    taken = {order.pk for order, _, _ in moved}
                    refused = next((order for order in orders if order.pk not in taken), None)
                    raise IllegalTransition(
                        transition_refusal(order=refused, transition=transition) if refused else "an order is gone"
                    )
                rows += [
                    OrderEvent(
                        order_id=order.pk,
                        at=order.state_changed_at,
                        kind=OrderEventKind.TRANSITION,
                        transition=transition,
                        from_state=before,
                        to_state=after,
                        by=by,
                        message=moves[order.pk][step][1],
                    )
                    for order, before, after in moved
                ]
                flags = flags_for(transition=transition)
                if flags or step == len(path) - 1:
                    # The timeline rows so far, before the rows of the flags this transition sets.
                    OrderEvent.objects.bulk_create(rows, batch_size=BATCH)
                    rows = []
                    _flags_bulk_set_once(ids, flags=flags, by=by, at=moved[0][0].state_changed_at)


def _flags_bulk_set_once(ids: list[int], *, flags: list[str], by: str, at) -> None:
    """Put flags on many orders at once, each with its timeline row, where the order does not carry it yet."""
    if not flags:
        return
    carried = set(
        OrderFlag.objects.filter(order_id__in=ids, flag__in=flags, resend=False).values_list("order_id", "flag")
    )
    for flag in flags:
        _flags_bulk_set([pk for pk in ids if (pk, flag) not in carried], flags=[flag], by=by, at=at)


@transaction.atomic
def orders_chains_start(*, by: str) -> int:
    """Start the chains of confirmed orders that never carried a flag (confirmed before any exporter existed)."""
    flags = flags_for(transition=OrderTransition.CONFIRM)
    if not flags:
        return 0
    never = (
        Order.objects.filter(state=OrderState.CONFIRMED)
        .filter(~Exists(OrderFlag.objects.filter(order=OuterRef("pk"))))
        .filter(~Exists(OrderExportRun.objects.filter(order=OuterRef("pk"))))
        .filter(~Exists(OrderEvent.objects.filter(order=OuterRef("pk"), kind=OrderEventKind.FLAG_SET)))
    )
    done = 0
    while ids := _lock_batch(never):
        _flags_bulk_set(ids, flags=flags, by=by, at=timezone.now())
        done += len(ids)
    return done


def _lock_batch(orders) -> list[int]:
    """Return the ids of a batch of the orders, locked until the caller's transaction ends; others' are skipped."""
    return list(orders.select_for_update(skip_locked=True).order_by("pk").values_list("pk", flat=True)[:BATCH])


def _flags_bulk_set(ids: list[int], *, flags: list[str], by: str, at) -> None:
    """Put flags on many orders at once, each with its timeline row."""
    acting = exporters_by_flag(flags)
    OrderFlag.objects.bulk_create(
        [
            row
            for pk in ids
            for flag in flags
            for row in _deliveries(order_id=pk, flag=flag, exporters=acting[flag], by=by, at=at)
        ],
        batch_size=BATCH,
        ignore_conflicts=True,
    )
    OrderEvent.objects.bulk_create(
        [
            OrderEvent(order_id=pk, at=at, kind=OrderEventKind.FLAG_SET, flag=flag, by=by)
            for pk in ids
            for flag in flags
        ],
        batch_size=BATCH,
    )


def order_cancel(*, order: Order | int, reason: str, by: str, user=None) -> Order:
    """Cancel an order with a reason (a file's row, staff or HTTP); exporters that had sent it get it again.

    An order already cancelled stays as it is; one that has shipped raises OrderShipped and nothing changes.
    """
    with transaction.atomic():
        pk = order.pk if isinstance(order, Order) else order
        order = Order.objects.select_for_update().get(pk=pk)
        if order.state == OrderState.CANCELLED:
            return order
        if order.state in HAS_SHIPPED:
            raise OrderShipped(CANCEL_REFUSED.format(order.order_id))
        # The transition drops the flags still waiting and queues the re-sends (new ones, after the drop).
        order = order_transition(
            order=order, transition=OrderTransition.CANCEL, by=by, user=user, reason=reason, lock=False
        )
    return order


def order_amend(*, order: Order, changes: list[str], by: str, resend: bool = True, job: int | None = None) -> Order:
    """Record a change of an order (locked by the caller); a confirmed, unshipped one gets a new version.

    The files of one import job are one amendment (a KS_ORDERS file with the new total, a KS_ORDER_LINES file with
    the lines): one version, one timeline row ("amended: total 10.00 -> 12.00; line 2 removed"). Exporters that had
    sent the order get it again (unless resend is off: a cancellation that follows does it).
    """
    if order.state in HAS_SHIPPED:
        raise OrderShipped(AMEND_REFUSED.format(order.order_id))
    if order.state not in AMENDABLE:
        return order
    earlier = None
    if job is not None:
        earlier = order.events.filter(kind=OrderEventKind.AMENDED, job=job).order_by("pk").last()
    if earlier is not None:
        earlier.message = "; ".join([earlier.message, *changes])
        earlier.save(update_fields=["message"])
        order.save(update_fields=["updated_at"])
    else:
        order.version += 1
        order.save(update_fields=["version", "updated_at"])
        OrderEvent.objects.create(
            order=order, kind=OrderEventKind.AMENDED, by=by, job=job, message="amended: " + "; ".join(changes)
        )
    # A delivery not yet made sends the new version: a new event, so a receiver that took the old one in (and timed
    # out answering) does not drop it as a repeat. One under way is sent again when it ends (orders.chain).
    for delivery in order.flags.filter(resend=False).exclude(status__in=(FlagStatus.DONE, FlagStatus.RUNNING)):
        delivery.event_id = uuid.uuid4()
        delivery.save(update_fields=["event_id"])
    if resend:
        order_resend(order, by=by)
    return order


def delivery_done(*, delivery: OrderFlag, by: str, worker: str) -> None:
    """Record that a delivery's exporter sent the order (the order and the delivery, which worker holds, locked by
    the caller); a re-send is then over, and a flag whose every enabled exporter has sent the order goes on
    (flag_finish)."""
    if delivery.resend:
        delivery.delete()
        return
    queue_finish(FLAGS, [delivery.pk], worker=worker, status=FlagStatus.DONE, count_attempt=False, last_error="")
    delivery.status, delivery.claimed_by, delivery.lease_until, delivery.last_error = FlagStatus.DONE, "", None, ""
    flag_finish(order=delivery.order, flag=delivery.flag, by=by)


def flag_finish(*, order: Order, flag: str, by: str) -> bool:
    """Once every enabled exporter of a flag has sent the order, clear the flag and set its next flag; say if so.

    Deliveries of exporters switched off meanwhile are dropped with it. The order is locked by the caller.
    """
    rows = list(OrderFlag.objects.filter(order=order, flag=flag, resend=False))
    acting = set(Exporter.objects.filter(flag=flag, enabled=True).values_list("pk", flat=True))
    sent = {row.exporter_id for row in rows if row.status == FlagStatus.DONE}
    if not rows or not acting or not acting <= sent:
        return False
    next_flags = Exporter.objects.filter(pk__in=acting).exclude(next_flag="").values_list("next_flag", flat=True)
    _flag_close(order=order, flag=flag, next_flags=set(next_flags), by=by)
    return True


def _flag_close(*, order: Order, flag: str, next_flags: set[str], by: str) -> None:
    """Clear a flag's deliveries, set the next flags; with no flag left, the confirmed order is exported."""
    OrderFlag.objects.filter(order=order, flag=flag, resend=False).delete()
    for next_flag in sorted(next_flags):
        flag_set(order=order, flag=next_flag, by=by)
    if not next_flags and order.state == OrderState.CONFIRMED and not order.flags.filter(resend=False).exists():
        order_transition(order=order, transition=OrderTransition.MARK_EXPORTED, by=by, reason="every exporter is done")


def deliveries_done(*, deliveries: list[OrderFlag], worker: str, by: str) -> None:
    """delivery_done for a batch (the orders locked by the caller, each delivery's order on it), in statements that
    do not grow with the batch: re-sends are over, the others done, and each flag whose every enabled exporter has
    sent its order goes on."""
    resends = [d.pk for d in deliveries if d.resend]
    if resends:
        OrderFlag.objects.filter(pk__in=resends).delete()
    chain = [d for d in deliveries if not d.resend]
    if chain:
        queue_finish(
            FLAGS, [d.pk for d in chain], worker=worker, status=FlagStatus.DONE, count_attempt=False, last_error=""
        )
        flags_finish(orders={d.order_id: d.order for d in chain}, pairs={(d.order_id, d.flag) for d in chain}, by=by)


def flags_finish(*, orders: dict[int, Order], pairs: set[tuple[int, str]], by: str) -> None:
    """flag_finish for many (order, flag) pairs (the orders locked by the caller), a few statements for all."""
    flags = {flag for _, flag in pairs}
    acting = exporters_by_flag(flags)
    present, sent = set(), defaultdict(set)
    rows = OrderFlag.objects.filter(order_id__in={o for o, _ in pairs}, flag__in=flags, resend=False)
    for order_id, flag, exporter_id, status in rows.values_list("order_id", "flag", "exporter_id", "status"):
        present.add((order_id, flag))
        if status == FlagStatus.DONE:
            sent[order_id, flag].add(exporter_id)
    finished = sorted(p for p in pairs if p in present and acting[p[1]] and set(acting[p[1]]) <= sent[p])
    if not finished:
        return
    nexts = defaultdict(set)
    every = [pk for flag in {f for _, f in finished} for pk in acting[flag]]
    for flag, next_flag in Exporter.objects.filter(pk__in=every).exclude(next_flag="").values_list("flag", "next_flag"):
        nexts[flag].add(next_flag)
    closing = Q()
    for flag in {f for _, f in finished}:
        closing |= Q(flag=flag, order_id__in=[o for o, f in finished if f == flag])
    OrderFlag.objects.filter(closing, resend=False).delete()
    now = timezone.now()
    for next_flag in sorted({n for f in nexts.values() for n in f}):
        # A flag already on an order stays as it is (flag_set): only the others are set, with their timeline rows.
        ids = sorted({o for o, f in finished if next_flag in nexts[f]})
        _flags_bulk_set_once(ids, flags=[next_flag], by=by, at=now)
    ended = [o for o, f in finished if not nexts[f] and orders[o].state == OrderState.CONFIRMED]
    if ended:
        left = set(OrderFlag.objects.filter(order_id__in=ended, resend=False).values_list("order_id", flat=True))
        orders_mark_exported([o for o in sorted(set(ended)) if o not in left], by=by)


def orders_mark_exported(ids: list[int], *, by: str) -> None:
    """Mark confirmed orders (locked by the caller) exported, every exporter done (orders_transition)."""
    if ids:
        reason = "every exporter is done"
        orders_transition(moves={pk: [(OrderTransition.MARK_EXPORTED, reason)] for pk in ids}, by=by)


SWEEP_LIMIT = 1000


def deliveries_sweep(*, by: str) -> int:
    """Bring the orders' flags in line with the exporters enabled now; return how many flags were looked at.

    An exporter enabled on a flag that orders already carry gets a delivery of each of them (unless the flag is
    done); a flag whose every enabled exporter has sent the order (another was switched off meanwhile) goes on.
    Each order is locked while its flag is mended, as the chain locks it (order first, then its flags).
    """
    acting = exporters_by_flag()
    if not acting:
        return 0
    chain = OrderFlag.objects.filter(resend=False, flag__in=list(acting))
    lacking = Q(exporter=None)
    for flag, pks in acting.items():
        for pk in pks:
            own = OrderFlag.objects.filter(order=OuterRef("order"), flag=flag, exporter_id=pk, resend=False)
            lacking |= Q(flag=flag) & ~Exists(own)
    unsent = OrderFlag.objects.filter(
        order=OuterRef("order"), flag=OuterRef("flag"), resend=False, exporter__enabled=True
    ).exclude(status=FlagStatus.DONE)
    finishable = (Q(status=FlagStatus.DONE) | Q(exporter__enabled=False)) & ~Exists(unsent)
    found = list(chain.filter(lacking | finishable).order_by().values_list("order_id", "flag").distinct()[:SWEEP_LIMIT])
    for order_id, flag in found:
        with transaction.atomic():
            order = Order.objects.select_for_update(of=("self",)).get(pk=order_id)
            rows = OrderFlag.objects.filter(order=order, flag=flag, resend=False)
            if not rows.exists():  # finished meanwhile
                continue
            have = set(rows.values_list("exporter_id", flat=True))
            new = [pk for pk in acting[flag] if pk not in have]
            if new:
                OrderFlag.objects.bulk_create(
                    _deliveries(order_id=order.pk, flag=flag, exporters=new, by=by), ignore_conflicts=True
                )
                codes = ", ".join(Exporter.objects.filter(pk__in=new).order_by("code").values_list("code", flat=True))
                message = f"{flag} is now sent by {codes} too"
                events.note_event(order=order, kind=OrderEventKind.NOTE, flag=flag, by=by, message=message)
            rows.filter(exporter=None).delete()
            flag_finish(order=order, flag=flag, by=by)
    return len(found)


def export_pass_enqueue() -> None:
    """Have a worker run an order export pass once the current transaction commits (approved orders go on at once).

    One task waits at most (impex.services.passes).
    """
    pass_enqueue(EXPORT_PASS)


def order_approve(*, order: Order | int, user, reason: str = "") -> Order:
    """Approve a held order: it is confirmed again and its held flags go on along their chains."""
    with transaction.atomic():
        order = order_transition(
            order=order, transition=OrderTransition.APPROVE, by=user.get_username(), user=user, reason=reason
        )
        by = f"approved by {user.get_username()}"
        for flag in (
            order.flags.filter(status=FlagStatus.HELD).select_related("exporter").select_for_update(of=("self",))
        ):
            exporter = flag.exporter
            OrderExportRun.objects.create(
                order=order,
                exporter=exporter,
                exporter_code=exporter.code if exporter else "",
                flag=flag.flag,
                attempt=flag.attempts,
                status=ExportRunStatus.DONE,
                message=by + (f": {reason}" if reason else ""),
                event_id=flag.event_id,
                finished_at=timezone.now(),
            )
            # A gate is the only exporter of its flag (exporter_problems): its decision finishes the flag.
            next_flags = {exporter.next_flag} - {""} if exporter else set()
            _flag_close(order=order, flag=flag.flag, next_flags=next_flags, by=by)
        export_pass_enqueue()
    return order


def order_reject(*, order: Order | int, user, reason: str) -> Order:
    """Reject a held order with a reason: it is cancelled and its flags are dropped."""
    if not reason.strip():
        raise OrderError("a reason is required to reject an order")
    return order_transition(
        order=order, transition=OrderTransition.REJECT, by=user.get_username(), user=user, reason=reason.strip()
    )


def flag_retry(*, flag: OrderFlag, user) -> OrderFlag:
    """Try a failed flag's exporter again now, with its tries counted afresh."""
    with transaction.atomic():
        flag = OrderFlag.objects.select_for_update().get(pk=flag.pk)
        if FlagStatus.PENDING not in FLAG_TRANSITIONS[flag.status]:
            raise OrderError(f"flag {flag.flag} of order {flag.order_id} can't go from {flag.status} to pending")
        queue_reset(FLAGS, OrderFlag.objects.filter(pk=flag.pk), old=flag.status)
        flag.refresh_from_db(fields=["status", "attempts", "next_attempt_at", "claimed_by", "lease_until"])
        events.note_event(
            order=flag.order,
            kind=OrderEventKind.RETRY,
            flag=flag.flag,
            by=user.get_username(),
            user=user,
            message=f"retry of {flag.flag} asked (last error: {flag.last_error})",
        )
        export_pass_enqueue()
    return flag


def deliveries_due_now(*, by: str, orders=None, user=None) -> int:
    """Make every waiting retry (a delivery backed off after a failure) due now, of the orders given or all; return
    how many. Deliveries that failed for good are left to flag_retry, which counts their tries afresh."""
    now = timezone.now()
    with transaction.atomic():
        waiting = OrderFlag.objects.filter(status=FlagStatus.PENDING, attempts__gt=0, next_attempt_at__gt=now)
        if orders is not None:
            waiting = waiting.filter(order__in=orders)
        rows = list(waiting.select_for_update(of=("self",)).select_related("exporter").order_by("order_id", "pk"))
        OrderFlag.objects.filter(pk__in=[row.pk for row in rows]).update(next_attempt_at=now)
        OrderEvent.objects.bulk_create(
            [
                OrderEvent(
                    order_id=row.order_id,
                    at=now,
                    kind=OrderEventKind.RETRY,
                    flag=row.flag,
                    by=by,
                    user=user,
                    message=f"retry of {row.flag} by {row.exporter.code if row.exporter else '-'} made due now "
                    f"(last error: {row.last_error})",
                )
                for row in rows
            ],
            batch_size=BATCH,
        )
        if rows:
            export_pass_enqueue()
    return len(rows)


def order_resend(order: Order, *, by: str, only: Exporter | None = None) -> list[str]:
    """Send the order again to every exporter (not a gate) that had sent it, or only to the one given, so each
    learns its new state and version; return their codes.

    Called inside the caller's transaction, the order locked by the caller (a cancellation, an amendment; the chain
    for an exporter whose send finished after the order changed). Each re-send is a delivery of its own with a new
    event id; it moves no chain on, and a cancel does not drop it.
    """
    sent = OrderExportRun.objects.filter(order=order, exporter=OuterRef("pk"), status=ExportRunStatus.DONE)
    exporters = (
        Exporter.objects.filter(enabled=True).exclude(kind=ExporterKind.APPROVAL).filter(Exists(sent)).order_by("code")
    )
    if only is not None:
        exporters = exporters.filter(pk=only.pk)
    now = timezone.now()
    codes = []
    for exporter in exporters:
        fresh = {
            "status": FlagStatus.PENDING,
            "event_id": uuid.uuid4(),
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "set_at": now,
            "set_by": by,
        }
        # A re-send still waiting sends the newest state when it runs: it is renewed rather than doubled; one under
        # way may carry the state before this change, so another follows it.
        waiting = OrderFlag.objects.filter(order=order, exporter=exporter, resend=True).exclude(
            status=FlagStatus.RUNNING
        )
        if not waiting.update(**fresh):
            OrderFlag.objects.create(order=order, exporter=exporter, flag=exporter.flag, resend=True, **fresh)
        codes.append(exporter.code)
    if codes:
        events.note_event(
            order=order,
            kind=OrderEventKind.NOTE,
            by=by,
            message=f"version {order.version} ({order.state}) to be sent again to {', '.join(codes)}",
        )
        export_pass_enqueue()
    return codes


CHAIN_LIMIT = 100


def exporter_problems(exporter: Exporter, *, model_checks: bool = True) -> dict[str, list[str]]:
    """Return what keeps an exporter (saved or not) from working, by field; empty when it can work.

    The command and the admin's form both ask this (the form has run the model's own checks already).
    """
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    if model_checks:
        try:
            exporter.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            problems = {field: list(messages) for field, messages in exc.message_dict.items()}
    kind = KINDS.get(exporter.kind)
    if kind is not None:
        for field, message in kind.problems(exporter):
            add(field, message)
    if exporter.timeout_seconds == 0:
        add("timeout_seconds", "give the receiver at least 1 second to answer")
    if exporter.max_attempts == 0:
        add("max_attempts", "allow at least 1 try")
    if exporter.min_total is not None and exporter.min_total < 0:
        add("min_total", "give a total of 0 or more")
    others = Exporter.objects.exclude(pk=exporter.pk)
    if exporter.code and others.filter(code=exporter.code).exists():
        add("code", f"an exporter is already called {exporter.code}")
    if exporter.enabled and exporter.flag:
        # Several exporters may share a flag (SPEC 7), but a gate decides alone before anyone sends the order, and
        # the flag's next flag is set once all have sent it: there is one.
        sharing = list(others.filter(flag=exporter.flag, enabled=True).order_by("code"))
        gate = next((other for other in sharing if other.kind == ExporterKind.APPROVAL), None)
        if sharing and exporter.kind == ExporterKind.APPROVAL:
            codes = ", ".join(other.code for other in sharing)
            add(
                "flag",
                f"an approval gate must be the only exporter of its flag, and {codes} act on {exporter.flag}: "
                "give the gate a flag of its own (with theirs as its next flag)",
            )
        elif gate is not None:
            add(
                "flag",
                f"the approval gate {gate.code} acts on the flag {exporter.flag}, and a gate must be the only exporter "
                f"of its flag: give this exporter the gate's next flag instead",
            )
        # One of them naming the next flag is enough (the others may leave it empty); two different ones are not.
        other = next(
            (o for o in sharing if o.next_flag and exporter.next_flag and o.next_flag != exporter.next_flag), None
        )
        if other is not None:
            add(
                "next_flag",
                f"the exporter {other.code} of the flag {exporter.flag} hands orders on to {other.next_flag}: the "
                "exporters of one flag hand on to one next flag (set it on one of them, or the same on each)",
            )
    if exporter.next_flag and exporter.next_flag == exporter.flag:
        add("next_flag", "an exporter cannot hand an order on to its own flag")
    elif exporter.next_flag and exporter.enabled:
        # Follow the chain from the next flag through the enabled exporters: coming back to this flag is a loop.
        following = dict(others.filter(enabled=True).exclude(next_flag="").values_list("flag", "next_flag"))
        seen, current = [exporter.flag, exporter.next_flag], exporter.next_flag
        while current in following and len(seen) < CHAIN_LIMIT:
            current = following[current]
            seen.append(current)
            if current == exporter.flag:
                add("next_flag", f"the chain {' -> '.join(seen)} would go round for ever: end it with no next flag")
                break
    return problems


def exporter_save(*, code: str, values: dict) -> tuple[Exporter, bool]:
    """Create or update an exporter with the values given (the rest unchanged); refuse one that cannot work."""
    with transaction.atomic():
        exporter = Exporter.objects.select_for_update().filter(code=code).first()
        created = exporter is None
        if created:
            exporter = Exporter(code=code)
        for name, value in values.items():
            setattr(exporter, name, value)
        problems = exporter_problems(exporter)
        if problems:
            raise ValidationError(problems)
        exporter.save()
    export_pass_enqueue()
    return exporter, created
