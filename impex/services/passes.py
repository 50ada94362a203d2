"""The cluster's passes over leased work, bounded so that slow receivers never hold every worker.

Order exports, the order feed, single-record updates and webhook deliveries each run as a pass task: it claims due
items, acts on each, and stops. Every new item asks for a pass, so without a bound a slow receiver would fill
the queue with passes and every worker would sit in one while scans and imports wait. Here a pass has at most
one task waiting in the queue (the ticket, queued_at), at most IMPEX_PASS_WORKERS tasks running (each under a
lease, renewed while it runs), passes of all kinds together hold at most all but one of a machine's cluster
workers, and a pass takes no new item after IMPEX_PASS_SECONDS: what is left gets one follow-up task, queued
behind whatever else waits.

A pass that finds no place free is not dropped: it is marked refused, a pass running meanwhile ends at its next
batch to make room (so that 2,000 single-record updates never wait behind a minute of order exports), and the
pass that leaves its place queues the refused ones ahead of its own follow-up.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from impex.models import ScanLoop, WorkPass
from impex.services.heartbeat import Heartbeat
from impex.services.queue import queue_yields, worker_name


@dataclass(frozen=True)
class Pass:
    """A pass: its name (a WorkPass row), the django-q2 task that runs it, the task's title, what it counts."""

    name: str
    func: str
    title: str
    unit: str


def pass_enqueue(work: Pass) -> None:
    """Queue the pass's task once the current transaction commits, unless one is waiting in the queue already."""
    transaction.on_commit(lambda: _enqueue(work))


def _enqueue(work: Pass) -> None:
    WorkPass.objects.get_or_create(name=work.name)
    _ticket(work.name, func=work.func, title=work.title)


def _ticket(name: str, *, func: str, title: str) -> bool:
    """Queue the pass's task unless one waits already; the task carries its ticket (the time it was queued at)."""
    now = timezone.now()
    # One conditional UPDATE decides: of many events at once, one queues the task, the others find it queued.
    if WorkPass.objects.filter(name=name, queued_at__isnull=True).update(queued_at=now) != 1:
        return False
    async_task(func, now.isoformat(), task_name=title)
    return True


def pass_run(
    work: Pass, *, run: Callable[[str, float], int], due: Callable[[], bool], ticket: str | None = None
) -> str:
    """Run one bounded pass as a cluster task (run(worker, seconds) returns how many items it did); say what it did.

    A task that finds IMPEX_PASS_WORKERS passes running leaves the work to them: each looks for due work once it
    has let go of its place, and queues a follow-up if there is any. ticket: the time the task was queued at, when
    it was queued as the pass's one waiting task (not by its schedule).
    """
    WorkPass.objects.get_or_create(name=work.name)
    if ticket is not None:
        # The waiting task is running: from here on a new item queues another (this one may have started after
        # the item was claimed). Only the waiting task's own: a task taken earlier starting late leaves it waiting.
        WorkPass.objects.filter(name=work.name, queued_at=datetime.fromisoformat(ticket)).update(queued_at=None)
    else:
        # Run by its schedule: a ticket waiting longer than a lease was lost with its worker (or its broker):
        # let new items queue another.
        stale = timezone.now() - timedelta(seconds=settings.IMPEX_LEASE_SECONDS)
        WorkPass.objects.filter(name=work.name, queued_at__lt=stale).update(queued_at=None)
    worker = worker_name()
    if not _take(work.name, worker):
        if due():
            # Queued again by the pass that leaves its place (passes running meanwhile end early to make room).
            refused = {"func": work.func, "title": work.title, "machine": _machine(worker)}
            WorkPass.objects.filter(name=work.name).update(refused=refused)
        return (
            f"0 {work.unit}: left for later: {settings.IMPEX_PASS_WORKERS} {work.title} pass(es) at once at most, and "
            f"{machine_places()} pass(es) of any kind per machine, so that a worker stays free for scans and imports; "
            "it is queued again when a place is left"
        )
    lease = settings.IMPEX_LEASE_SECONDS
    try:
        with (
            Heartbeat(lambda: _hold(work.name, worker), every=lease / 3, name=f"{work.title} pass"),
            queue_yields(lambda: _others_refused(work.name, machine=_machine(worker))),
        ):
            done = run(worker, settings.IMPEX_PASS_SECONDS)
    finally:
        _leave(work.name, worker)
        _wake_refused()
    more = due()
    if more:
        pass_enqueue(work)
    return f"{done} {work.unit}{'; more are due: a follow-up is queued' if more else ''}"


def _others_refused(name: str, *, machine: str) -> bool:
    """Tell whether a task of another pass found no place free on this machine since (this one then ends at its
    next batch)."""
    refused = WorkPass.objects.exclude(name=name).filter(refused__isnull=False).values_list("refused", flat=True)
    return any(wanted.get("machine") == machine for wanted in refused)


def _wake_refused() -> None:
    """Queue the task of each pass that found no place free (one task each, unless one waits already)."""
    for row in WorkPass.objects.filter(refused__isnull=False).order_by("pk"):
        wanted = row.refused
        # Conditional: of two passes leaving at once, one queues it.
        if WorkPass.objects.filter(pk=row.pk, refused__isnull=False).update(refused=None) != 1:
            continue
        _ticket(row.name, func=wanted["func"], title=wanted["title"])


def _live(runners: dict, now) -> dict:
    return {w: until for w, until in runners.items() if datetime.fromisoformat(until) > now}


def machine_places(machine: str = "") -> int:
    """Return how many pass tasks, of all passes together, may run at once on one machine: one worker of its cluster
    is always left for scans, imports and exports, besides the one the scan loop holds when it runs there (at least
    one place, so that passes never stop)."""
    return max(1, settings.Q_CLUSTER.get("workers", 1) - 1 - _scan_loop_on(machine))


def _scan_loop_on(machine: str) -> int:
    """Return 1 if the hub's scan loop (impex.services.scan_loop) runs on machine now, else 0."""
    if not machine:
        return 0
    live = ScanLoop.objects.filter(lease_until__gte=timezone.now()).exclude(holder="")
    return int(any(_machine(holder) == machine for holder in live.values_list("holder", flat=True)))


def _machine(worker: str) -> str:
    return worker.split(":", 1)[0]


def _take(name: str, worker: str) -> bool:
    """Take a place among the pass's runners if one is free (a runner whose lease ended holds none), and if this
    machine's passes leave a worker free for other work."""
    with transaction.atomic():
        # Every pass's row, locked in one order: two passes starting at once on a machine count each other.
        rows = {row.name: row for row in WorkPass.objects.select_for_update().order_by("pk")}
        row = rows[name]
        now = timezone.now()
        live = _live(row.runners, now)
        if len(live) >= settings.IMPEX_PASS_WORKERS:
            return False
        here = _machine(worker)
        on_machine = sum(_machine(w) == here for other in rows.values() for w in _live(other.runners, now))
        if on_machine >= machine_places(here):
            return False
        live[worker] = (now + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)).isoformat()
        WorkPass.objects.filter(pk=row.pk).update(runners=live, refused=None)
    return True


def _hold(name: str, worker: str) -> None:
    """Renew this runner's lease on its place."""
    with transaction.atomic():
        row = WorkPass.objects.select_for_update().get(name=name)
        now = timezone.now()
        live = _live(row.runners, now)
        live[worker] = (now + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)).isoformat()
        WorkPass.objects.filter(pk=row.pk).update(runners=live)


def _leave(name: str, worker: str) -> None:
    with transaction.atomic():
        row = WorkPass.objects.select_for_update().get(name=name)
        live = _live(row.runners, timezone.now())
        live.pop(worker, None)
        WorkPass.objects.filter(pk=row.pk).update(runners=live)
