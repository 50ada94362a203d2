"""The scan loop: the inboxes of connections scanned every few seconds (Connection.scan_seconds), by one task.

django-q2's scheduler looks at its schedules every ~15 s and a task per scan would flood the queue, so a schedule
a minute starts this loop instead: it runs about a minute in one cluster worker, scans each due connection through
inbox_scan (the connection's own scan lease, so a "Sync now" or a second loop never scans it twice at once), and
sleeps until the next one is due. A scan that finds files makes a job and queues it for the cluster, as every scan
does: the loop never imports. Local inboxes are also watched (watchdog) so that a file landing wakes the loop at
once; polling stays the fallback, and the quiet rule of the scan still holds.

One loop runs hub-wide, whatever the number of clusters: it holds the ScanLoop row under a lease taken with one
conditional UPDATE. The loop of the next minute takes over from one that has run TAKEOVER_SECONDS (the older one
stops at its next tick), so a schedule that fires late leaves no gap; a loop that was killed is replaced by the
next minute's, and a second one started in the same minute (two clusters, a backlog) gives way at once.
"""

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from impex.models import ClusterBeat, Connection, ScanLoop
from impex.services.heartbeat import Heartbeat
from impex.services.inbox import inbox_scan
from impex.services.jobs import connection_folder
from impex.services.queue import worker_name

log = logging.getLogger(__name__)

# A loop runs this long at most: past the next minute's start even when the scheduler (which looks every ~15 s)
# fires it late, so that the next one takes over before this one ends.
LOOP_SECONDS = 80
# A loop that has run this long gives way to a newer one; a newer one started sooner gives way to it.
TAKEOVER_SECONDS = 30
# The loop's hold on the ScanLoop row lasts this long unless renewed (each tick, and every third of it meanwhile).
LEASE_SECONDS = 30
# The loop task's django-q2 timeout: its longest run and a last scan, well below Q_CLUSTER's retry (LIBNOTES).
LOOP_TIMEOUT = LOOP_SECONDS + 40
# A watched inbox that keeps changing (a large file being written) is scanned at most this often for its events.
WAKE_GAP_SECONDS = 1.0
LOOP_ROW = 1
# While it sleeps, a loop looks this often whether its cluster is stopping (one indexed query).
STOP_CHECK_SECONDS = 1.0
# The statuses django-q2's sentinel says while it stops (impex.brokers records them in ClusterBeat at once).
CLUSTER_STOPPING = ("Stopping", "Stopped")


def fast_connections():
    """Return the connections scanned every few seconds by the scan loop instead of a schedule of their own."""
    return Connection.objects.filter(active=True, scan_enabled=True, scan_seconds__isnull=False).order_by("code")


@dataclass
class LoopResult:
    """What one run of the loop did."""

    worker: str
    scans: int = 0
    jobs: list[int] = field(default_factory=list)
    ended: str = ""

    @property
    def summary(self) -> str:
        jobs = f", job(s) {', '.join(f'#{pk}' for pk in self.jobs)} queued" if self.jobs else ""
        return f"{self.scans} scan(s){jobs}; {self.ended}"


# -- the hub-wide lease ----------------------------------------------------------------------------------------


def scan_loop_take(*, worker: str) -> bool:
    """Hold the hub's scan loop for worker, unless a live loop started less than TAKEOVER_SECONDS ago holds it."""
    ScanLoop.objects.get_or_create(pk=LOOP_ROW)
    now = timezone.now()
    free = (
        Q(holder="")
        | Q(lease_until__isnull=True)
        | Q(lease_until__lt=now)
        | Q(started_at__lte=now - timedelta(seconds=TAKEOVER_SECONDS))
    )
    return bool(
        ScanLoop.objects.filter(free, pk=LOOP_ROW).update(
            holder=worker, started_at=now, lease_until=now + timedelta(seconds=LEASE_SECONDS)
        )
    )


def scan_loop_hold(*, worker: str) -> bool:
    """Renew worker's hold on the scan loop; return False when another loop has taken it over."""
    until = timezone.now() + timedelta(seconds=LEASE_SECONDS)
    return bool(ScanLoop.objects.filter(pk=LOOP_ROW, holder=worker).update(lease_until=until))


def scan_loop_leave(*, worker: str) -> None:
    """Let the scan loop go, if worker still holds it."""
    ScanLoop.objects.filter(pk=LOOP_ROW, holder=worker).update(holder="", lease_until=None)


def scan_loop_running() -> bool:
    """Tell whether a scan loop holds a live lease now (the connection pages say when the next scan comes)."""
    return ScanLoop.objects.filter(pk=LOOP_ROW, lease_until__gte=timezone.now()).exclude(holder="").exists()


# -- the loop --------------------------------------------------------------------------------------------------


def scan_loop_run(*, seconds: float = LOOP_SECONDS, worker: str | None = None) -> LoopResult:
    """Scan the fast connections' inboxes as each is due for about `seconds`, while this loop holds the hub's lease."""
    result = LoopResult(worker=worker or worker_name())
    if not scan_loop_take(worker=result.worker):
        result.ended = "another scan loop runs"
        return result
    wake = threading.Event()
    watch = InboxWatch(wake) if settings.IMPEX_SCAN_WATCH else None
    stopping = ClusterStop()
    try:
        with Heartbeat(lambda: _renew(result.worker, wake), every=LEASE_SECONDS / 3, name="scan loop"):
            _loop(result=result, seconds=seconds, wake=wake, watch=watch, stopping=stopping)
    finally:
        if watch is not None:
            watch.stop()
        scan_loop_leave(worker=result.worker)
    log.info("scan loop %s: %s", result.worker, result.summary)
    return result


def _renew(worker: str, wake: threading.Event) -> None:
    # A loop sleeps up to a connection's scan_seconds between ticks: when a newer loop has taken over, wake it so
    # that it ends now rather than hold its cluster worker for nothing until its next tick.
    if not scan_loop_hold(worker=worker):
        wake.set()


class ClusterStop:
    """Tell whether the django-q2 cluster running this loop is stopping (Ctrl-C, SIGTERM from a service manager).

    django-q2 gives a running task no stop signal: its cluster waits for the task to end, so a loop asleep until its
    next tick held a stopping cluster up to LOOP_SECONDS (make run and make serve kill what is left after 10 s). The
    cluster's sentinel records "Stopping" in ClusterBeat as it starts to stop (impex.brokers); the cluster's main
    process is this worker's grandparent (worker, sentinel, cluster). Outside a cluster, or off Linux, it never says
    so.
    """

    def __init__(self):
        self.cluster_pid = _grandparent_pid()
        self.host = socket.gethostname()
        self.since = timezone.now()  # an older cluster stopped with the same pid is not this one

    def __call__(self) -> bool:
        if self.cluster_pid is None:
            return False
        beats = ClusterBeat.objects.filter(host=self.host, pid=self.cluster_pid, seen_at__gte=self.since)
        return beats.filter(status__in=CLUSTER_STOPPING).exists()


def _grandparent_pid() -> int | None:
    """Return the parent of this process's parent (Linux: /proc), None when it cannot be read."""
    try:
        with open(f"/proc/{os.getppid()}/stat") as stat:
            # "pid (command) state ppid ...": the command may hold spaces and parentheses, so split after the last ")".
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _loop(
    *,
    result: LoopResult,
    seconds: float,
    wake: threading.Event,
    watch: "InboxWatch | None",
    stopping: ClusterStop,
) -> None:
    end = time.monotonic() + seconds
    due: dict[int, float] = {}  # connection pk -> when it is scanned next (monotonic)
    last: dict[int, float] = {}  # connection pk -> when its last scan started
    while True:
        if not scan_loop_hold(worker=result.worker):
            result.ended = "a newer scan loop took over"
            return
        fast = list(fast_connections())  # each tick: a connection changed or switched off counts at once
        if not fast:
            result.ended = "no connection is scanned every few seconds"
            return
        if watch is not None:
            watch.follow(fast)
            for pk in watch.take():
                # At once, but not more often than the gap: a file being written sends an event per write.
                due[pk] = min(due.get(pk, 0.0), last.get(pk, -WAKE_GAP_SECONDS) + WAKE_GAP_SECONDS)
        for conn in fast:
            now = time.monotonic()
            if due.get(conn.pk, 0.0) > now:
                continue
            last[conn.pk] = now
            # Never a busy loop, whatever a raw UPDATE wrote (the model's clean() is what refuses under 5 s).
            due[conn.pk] = now + max(Connection.SCAN_SECONDS[0], conn.scan_seconds)
            _scan_one(conn, result=result)
        now = time.monotonic()
        if now >= end:
            result.ended = f"ran {seconds:g} s"
            return
        next_due = min((due[c.pk] for c in fast), default=end)
        if _sleep(until=min(next_due, end), wake=wake, stopping=stopping):
            result.ended = "its cluster is stopping"
            return
        wake.clear()  # what woke it is in watch.take() of the next tick


def _sleep(*, until: float, wake: threading.Event, stopping: ClusterStop) -> bool:
    """Wait until then (monotonic) or a wake; return True when the loop's cluster is stopping meanwhile."""
    while True:
        left = until - time.monotonic()
        if left <= 0 or wake.wait(min(left, STOP_CHECK_SECONDS)):
            return False
        if stopping():
            return True


def _scan_one(conn: Connection, *, result: LoopResult) -> None:
    """Scan one connection's inbox (a scan it cannot do is the connection's problem, never the loop's end)."""
    try:
        scan = inbox_scan(connection=conn, worker=result.worker)
    except Exception:
        log.exception("the scan loop could not scan %s", conn.code)
        return
    result.scans += 1
    if scan.job is not None:
        result.jobs.append(scan.job.pk)


# -- waking the loop when a file lands in a local inbox ----------------------------------------------------------


class InboxWatch:
    """Wake the loop when a file is created, moved in or written in a watched local inbox (watchdog, inotify).

    Only the connections whose inbox is a local folder are watched; the others, and any folder the watch cannot
    follow, are polled as before.
    """

    EVENTS = ("created", "moved", "modified", "closed")

    def __init__(self, wake: threading.Event):
        self.wake = wake
        self.lock = threading.Lock()
        self.woken: set[int] = set()
        self.folders: dict[str, set[int]] = {}  # watched folder -> the connections whose inbox it is
        self.watches: dict[str, object] = {}
        self.seen: tuple = ()
        self.observer = None

    def follow(self, connections: list[Connection]) -> None:
        """Watch the local inboxes of these connections (and no others); cheap when they have not changed."""
        key = tuple((c.pk, c.code, c.inbox) for c in connections)
        if key == self.seen:
            return
        self.seen = key
        wanted: dict[str, set[int]] = {}
        for conn in connections:
            path = _local_inbox(conn)
            if path is not None:
                wanted.setdefault(path, set()).add(conn.pk)
        with self.lock:
            self.folders = wanted
        self._schedule(set(wanted))

    def _schedule(self, paths: set[str]) -> None:
        if self.observer is None and paths:
            self.observer = Observer()
            self.observer.daemon = True
            self.observer.start()
        for path in set(self.watches) - paths:
            self.observer.unschedule(self.watches.pop(path))
        for path in paths - set(self.watches):
            try:
                self.watches[path] = self.observer.schedule(_Handler(self), path, recursive=False)
            except OSError as exc:  # not there yet, or too many watches: polled like a remote inbox
                log.warning("the scan loop cannot watch %s (%s); it polls it", path, exc)

    def landed(self, path: str) -> None:
        """Note that a file changed at path: wake the loop for the connections whose inbox holds it."""
        with self.lock:
            pks = self.folders.get(os.path.dirname(path), set())
            self.woken |= pks
        if pks:
            self.wake.set()

    def take(self) -> set[int]:
        """Return the connections woken since the last call, and forget them."""
        with self.lock:
            woken, self.woken = self.woken, set()
        return woken

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None


def _local_inbox(conn: Connection) -> str | None:
    """Return the local folder of a connection's inbox; None for a remote one, or one the scan will refuse."""
    try:
        folder = connection_folder(conn, "inbox")
        path = folder.storage.local_file(folder.prefix)
    except Exception:  # the scan itself says what is wrong with it
        return None
    if path is None:
        return None
    if folder.in_hub:
        os.makedirs(path, exist_ok=True)  # the scan makes a default inbox too: watch it from the first tick
    return os.path.realpath(path) if os.path.isdir(path) else None


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: InboxWatch):
        super().__init__()
        self.watch = watch

    def on_any_event(self, event) -> None:
        if event.is_directory or event.event_type not in InboxWatch.EVENTS:
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        self.watch.landed(os.fsdecode(path))
