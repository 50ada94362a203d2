"""One work queue: every leased, retried piece of work is claimed, held, finished, retried and given back here.

Order deliveries (orders.OrderFlag), shipment feed events (orders.FeedEvent), single-record updates
(syncapp.RecordEvent) and webhook deliveries (impex.WebhookDelivery) are rows of a LeasedWork model: a worker
claims a batch of due rows under a lease (SKIP LOCKED on PostgreSQL, and a conditional UPDATE that re-checks each
row, so two workers never hold one row), holds them while it works (the lease renewed, and the claim checked, in one
statement for the batch), and ends each with one of its queue's statuses. These functions are the only writers of
claimed_by, lease_until, attempts and next_attempt_at, and every status they write is checked against the queue's
table of moves (WorkQueue.moves): a move the table does not name raises IllegalTransition and writes nothing.

django-q2 stays the transport: a queue's pass runs as one cluster task (impex.services.passes), never one task per
item. NetBox's JobRunner and Saleor's webhook delivery/attempt models are the models followed.
"""

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from impex.exceptions import IllegalTransition
from impex.services.backoff import backoff
from impex.services.sql import rows_update

log = logging.getLogger(__name__)


def worker_name() -> str:
    """Name this process as a worker: host, process id and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class WorkQueue:
    """A queue of leased work: its model, and the moves its statuses may make.

    moves maps a status to the statuses it may go to. running is the status of claimed work (None for a queue
    whose claim alone marks work in hand, its status unchanged: feed events are claimed as pending or failed).
    """

    model: type
    moves: Mapping[str, Iterable[str]]
    pending: str = "pending"
    running: str | None = "running"

    @property
    def label(self) -> str:
        return str(self.model._meta.verbose_name)

    def check(self, old: Iterable[str], new: str) -> None:
        """Raise IllegalTransition unless every status in old may move to new."""
        for before in old:
            if before != new and new not in self.moves.get(before, ()):
                raise IllegalTransition(f"a {self.label} cannot go from {before} to {new}")

    def held(self, pks: Iterable[int], worker: str) -> QuerySet:
        """The rows of pks that worker still holds."""
        rows = self.model.objects.filter(pk__in=list(pks), claimed_by=worker)
        return rows.filter(status=self.running) if self.running else rows.exclude(lease_until=None)

    def claimable(self, now: datetime) -> Q:
        """What any due row must also be: not claimed, or claimed under a lease that ran out."""
        if self.running:
            return Q(status=self.pending) | Q(status=self.running, lease_until__lt=now)
        return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def claim_size(*, item_seconds: float, limit: int) -> int:
    """Return how many items one claim may take: no more than one lease covers at item_seconds each (at least 1).

    Items claimed but not yet started keep the claim's lease only; past it, another worker may take them.
    """
    return max(1, min(limit, int(settings.IMPEX_LEASE_SECONDS // max(item_seconds, 0.01))))


def queue_claim(
    queue: WorkQueue,
    due: QuerySet,
    *,
    worker: str,
    size: int,
    now: datetime | None = None,
    lease_seconds: float | None = None,
    order_by: Sequence[str] = ("next_attempt_at", "pk"),
    **fields,
) -> list[int]:
    """Claim up to size rows of a due queryset for worker, under a lease; return their primary keys in order.

    PostgreSQL skips rows another worker is claiming (SKIP LOCKED); the conditional UPDATE re-checks each row
    (SQLite: no row locks, one writer), so two workers never hold one row. Three statements, whatever the size.
    fields: set on the claimed rows too (when it was claimed, say).
    """
    now = now or timezone.now()
    until = now + timedelta(seconds=lease_seconds or settings.IMPEX_LEASE_SECONDS)
    changes = {**fields, "claimed_by": worker, "lease_until": until}
    if queue.running:
        queue.check([queue.pending], queue.running)
        changes["status"] = queue.running
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by(*order_by)
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return []
        queue.model.objects.filter(pk__in=ids).filter(queue.claimable(now)).update(**changes)
        claimed = set(
            queue.model.objects.filter(pk__in=ids, claimed_by=worker, lease_until=until).values_list("pk", flat=True)
        )
    return [pk for pk in ids if pk in claimed]


def queue_hold(
    queue: WorkQueue, pks: Iterable[int], *, worker: str, seconds: float | None = None, renew: bool = True
) -> list[int]:
    """Renew this worker's claim on rows for seconds (a lease by default); return those it still holds, in order.

    Call it inside the transaction that does the work: the rows stay locked until it commits, so a worker that
    claims meanwhile skips them, and one that took a row over after a lost lease holds it and this finds it gone.
    renew False only locks and checks (the rows end when the transaction commits: no lease to extend).
    """
    pks = list(pks)
    if not pks:
        return []
    until = timezone.now() + timedelta(seconds=seconds or settings.IMPEX_LEASE_SECONDS)
    rows = queue.held(pks, worker)
    if transaction.get_connection().in_atomic_block:
        held = set(rows.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
        if held and renew:
            queue.model.objects.filter(pk__in=held).update(lease_until=until)
    else:
        rows.update(lease_until=until)
        held = set(queue.held(pks, worker).values_list("pk", flat=True))
    return [pk for pk in pks if pk in held]


def queue_renew(queue: WorkQueue, pk: int, *, worker: str, seconds: float | None = None) -> bool:
    """Extend this worker's claim on one row; False when it lost the claim (the row was taken over)."""
    until = timezone.now() + timedelta(seconds=seconds or settings.IMPEX_LEASE_SECONDS)
    return queue.held([pk], worker).update(lease_until=until) == 1


def queue_release(queue: WorkQueue, pks: Iterable[int], *, worker: str) -> int:
    """Give back claimed rows this worker did not start (a pass out of time): due again at once for any worker."""
    changes = {"claimed_by": "", "lease_until": None}
    if queue.running:
        queue.check([queue.running], queue.pending)
        changes["status"] = queue.pending
    return queue.held(pks, worker).update(**changes)


def queue_finish(
    queue: WorkQueue,
    pks: Iterable[int],
    *,
    worker: str,
    status: str,
    count_attempt: bool = True,
    keep_worker: bool = False,
    **fields,
) -> int:
    """End this worker's claim on rows with status (and fields); return how many it still held and ended.

    count_attempt adds one to each row's attempts (an item tried); fields may set attempts outright. A queue
    whose claimed rows keep their status ends only the rows whose status may move to the new one. keep_worker
    leaves claimed_by naming the worker that did it (the lease ends all the same).
    """
    rows = queue.held(pks, worker)
    if queue.running:
        queue.check([queue.running], status)
    else:
        rows = rows.filter(status__in=[old for old in queue.moves if old == status or status in queue.moves[old]])
    changes = {"status": status, "lease_until": None, **fields}
    if not keep_worker:
        changes["claimed_by"] = ""
    if count_attempt and "attempts" not in fields:
        changes["attempts"] = F("attempts") + 1
    return rows.update(**changes)


def queue_done_at_once(queue: WorkQueue, obj, *, worker: str, status: str, **fields) -> None:
    """Make a new, unsaved row a piece of work this worker claimed and finished with status in one go (a small
    file's only chunk, applied in the transaction that records it); the caller inserts it."""
    queue.check([queue.pending], queue.running)
    queue.check([queue.running], status)
    for name, value in {**fields, "status": status, "claimed_by": worker, "lease_until": None, "attempts": 1}.items():
        setattr(obj, name, value)


def queue_finish_each(queue: WorkQueue, values: dict, *, fields: Sequence[str], status: str, **same) -> int:
    """End claimed rows with status, each with its own values of fields (values: {pk: (value, ...)}) and all with the
    same values of same, in one statement; return how many it wrote.

    The caller holds the rows, locked in its transaction since it checked its claim (queue_hold, or a
    select_for_update of the rows it holds).
    """
    queue.check([queue.running] if queue.running else [s for s in queue.moves if status in queue.moves[s]], status)
    return rows_update(
        queue.model,
        values=values,
        fields=fields,
        same={"status": status, "claimed_by": "", "lease_until": None, **same},
    )


def queue_reset(queue: WorkQueue, rows: QuerySet, *, old: str, **fields) -> int:
    """Start the rows of status old again from their first try (staff's "retry"): pending, due now; say how many."""
    queue.check([old], queue.pending)
    return rows.filter(status=old).update(
        status=queue.pending, attempts=0, next_attempt_at=timezone.now(), claimed_by="", lease_until=None, **fields
    )


@dataclass(frozen=True)
class Retry:
    """What a failed try leads to: again at next_at (final False), or given up (final True); and the message."""

    final: bool
    message: str
    next_at: datetime


def retry_plan(*, attempt: int, limit: int, message: str, retry: bool = True, now: datetime | None = None) -> Retry:
    """Decide, with the shared back-off, whether the attempt-th failed try is tried again, and say so.

    "... (try 2 of 5; next in 0:02:00)" while tries are left, "... (5 tries used up)" once they are not;
    a failure that no retry can mend (retry False) is final at once, its message as is.
    """
    now = now or timezone.now()
    wait = backoff(attempt)
    if not retry:
        return Retry(True, message, now + wait)
    if attempt >= limit:
        return Retry(True, f"{message} ({attempt} tries used up)", now + wait)
    return Retry(False, f"{message} (try {attempt} of {limit}; next in {wait})", now + wait)


def queue_pass(
    *,
    claim: Callable[[int], list],
    apply: Callable[[list], list],
    release: Callable[[list], object],
    size: int,
    limit: int | None = None,
    seconds: float | None = None,
    batch: bool = True,
    on_error: Callable[[object, Exception], object] | None = None,
) -> list:
    """Claim batches of up to size items and apply them until none is due, limit results or seconds are up.

    apply takes a list of claimed items and returns the results of those it did (items it skipped, their claim
    lost, have none). With batch False each item is applied alone, and once seconds are up (after one item at
    least, so that every pass moves on) the items claimed but not reached are released; with batch True a whole
    batch is applied at once and the time is checked between batches.

    on_error, for an apply that is one transaction with no effect outside the database: a batch that raises
    something unexpected is applied again an item at a time, and an item that raises alone is handed to
    on_error (which records it as failed, backed off), so that one bad item never stops the queue behind it.
    """
    results: list = []
    stop = time.monotonic() + seconds if seconds is not None else None
    acted = 0
    while limit is None or len(results) < limit:
        if stop is not None and acted and (time.monotonic() >= stop or _yielding()):
            break
        claimed = claim(size if limit is None else min(size, limit - len(results)))
        if not claimed:
            break
        if batch:
            results.extend(_isolated(apply, claimed, on_error))
            acted += len(claimed)
            continue
        for index, item in enumerate(claimed):
            if stop is not None and acted and time.monotonic() >= stop:
                release(claimed[index:])
                return results
            results.extend(apply([item]))
            acted += 1
    return results


# Set by a cluster pass (impex.services.passes) while it runs: asked between batches, at most once a second,
# whether another pass waits for its place; a timed pass then ends as if its time were up.
_yield_check: ContextVar = ContextVar("queue_yield_check", default=None)
YIELD_CHECK_SECONDS = 1.0


@contextmanager
def queue_yields(check: Callable[[], bool]):
    """Make the timed passes run inside end early (between batches) once check() says another pass waits."""
    state = {"check": check, "at": None, "yes": False}  # asked at the first batch's end, then once a second
    token = _yield_check.set(state)
    try:
        yield
    finally:
        _yield_check.reset(token)


def _yielding() -> bool:
    state = _yield_check.get()
    if state is None:
        return False
    if not state["yes"] and (state["at"] is None or time.monotonic() - state["at"] >= YIELD_CHECK_SECONDS):
        state["at"] = time.monotonic()
        state["yes"] = bool(state["check"]())
    return state["yes"]


def _isolated(apply: Callable[[list], list], items: list, on_error) -> list:
    """Apply items together; if that raises and on_error is given, each alone, on_error taking those that fail."""
    try:
        return apply(items)
    except Exception as exc:
        if on_error is None:
            raise
        if len(items) == 1:
            log.exception("an item of a work queue failed: it is recorded and tried again later")
            on_error(items[0], exc)
            return []
    return [result for item in items for result in _isolated(apply, [item], on_error)]
