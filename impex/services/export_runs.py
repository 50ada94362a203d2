"""Scheduled exports of export groups: runs, the watermark, and the files sent (SPEC section 1, channel 3)."""

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Generator
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from impex.choices import (
    EXPORT_RUN_TRANSITIONS,
    EventLevel,
    ExportRunStatus,
    ExportTrigger,
    GroupDirection,
    ProblemKind,
)
from impex.exceptions import ConfigurationError, IllegalTransition, LeaseLost
from impex.formats.writers import write_pieces
from impex.models import DataDescriptor, DataGroup, ExportRun, ExportRunEvent, ExportState, FullSync, SentFile
from impex.registry import sync_logs
from impex.services.cache import RUN_FOLDER_PREFIX
from impex.services.exports import EXTENSIONS, export_pieces
from impex.services.heartbeat import Heartbeat
from impex.services.problems import problem_raise, problem_resolve
from impex.services.queue import worker_name
from impex.services.schedules import EXPORT_TASK
from impex.storage import (
    CHUNK_BYTES,
    Folder,
    HashingReader,
    delete_file,
    folder_at,
    hub_storage,
    open_file,
    place_file,
    resolve_path,
    save_file,
)

logger = logging.getLogger(__name__)

# A run that writes for long renews its claim on the group this often (a third of the lease).
RENEW_FRACTION = 3
OPEN = (ExportRunStatus.QUEUED, ExportRunStatus.RUNNING)


def export_destination(*, group: DataGroup) -> Folder:
    """Return where a group's scheduled exports go: its destination, its connection's outbox, or the hub's outbox."""
    if group.destination:
        return folder_at(group.destination, default=f"outbox/{group.code}")
    if group.connection is not None:
        conn = group.connection
        return folder_at(conn.outbox, default=f"{conn.code}/outbox")
    return folder_at("", default=f"outbox/{group.code}")


def _descriptor_of(group: DataGroup) -> DataDescriptor:
    if group.direction != GroupDirection.EXPORT:
        raise ConfigurationError(f"{group.code} is an import group: only export groups export")
    descriptors = list(group.descriptors.all()[:2])
    if len(descriptors) != 1:
        raise ConfigurationError(
            f"export group {group.code} must have exactly one descriptor, the layout of its file "
            f"(it has {group.descriptors.count()})"
        )
    return descriptors[0]


# -- the run's status: one function changes it, and writes the event ---------------------------------------------


def _event(run: ExportRun, *, status: str, message: str, worker: str = "", level: str = EventLevel.INFO) -> None:
    ExportRunEvent.objects.create(run=run, status=status, message=message, worker=worker, level=level)


def export_run_set_status(
    *,
    run: ExportRun,
    status: str,
    message: str,
    worker: str = "",
    level: str = EventLevel.INFO,
    where: Q | None = None,
    **fields,
) -> ExportRun:
    """Move a run to status (with fields) if the transition table allows it from its status now; record why.

    where: a further condition the run must meet (the sweeper's: its lease ran out), else it is not moved.
    """
    old = run.status
    if status not in EXPORT_RUN_TRANSITIONS.get(old, ()):
        raise IllegalTransition(f"export run #{run.pk} cannot go from {old} to {status}")
    with transaction.atomic():
        # Conditional on the status read: of two workers changing the same run, the second one fails here.
        rows = ExportRun.objects.filter(pk=run.pk, status=old)
        if where is not None:
            rows = rows.filter(where)
        if rows.update(status=status, **fields) != 1:
            run.refresh_from_db()
            raise IllegalTransition(f"export run #{run.pk} is {run.status} now, not {old}: not moved to {status}")
        _event(run, status=status, message=message, worker=worker, level=level)
        _report(run, status=status, error=fields.get("error", ""))
    run.status = status
    for key, value in fields.items():
        setattr(run, key, value)
    return run


def _report(run: ExportRun, *, status: str, error: str) -> None:
    """A failed run of a group is a problem until a run of it completes (resends are not the group's runs)."""
    if run.resend_of_id is not None or status not in (ExportRunStatus.FAILED, ExportRunStatus.COMPLETED):
        return
    group = DataGroup.objects.select_related("connection").get(pk=run.group_id)
    key = f"export-group:{group.code}"
    if status == ExportRunStatus.COMPLETED:
        problem_resolve(key=key)
        return
    problem_raise(
        kind=ProblemKind.EXPORT,
        key=key,
        connection=group.connection,
        message=f"export run #{run.pk} of {group.code} failed: {error}",
        url=reverse("admin:impex_datagroup_change", args=[group.pk]),
    )


# -- one run at a time per group -----------------------------------------------------------------------------------


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)


def _claim(*, group: DataGroup, run: ExportRun, worker: str) -> int | None:
    """Take the group for this run unless another run holds it; return the holder's id, or None once claimed.

    One conditional UPDATE decides, so of two runs started together (two clusters firing the same schedule,
    a schedule and an admin) exactly one goes on. A holder whose lease ran out (its worker died) is failed.
    """
    ExportState.objects.get_or_create(group=group)
    while True:
        now = timezone.now()
        holder = ExportState.objects.filter(pk=group.pk).values_list("run_id", "lease_until").get()
        if holder[0] is not None and holder[1] is not None and holder[1] >= now:
            return holder[0]
        # Conditional on the holder read, so that the stale run failed below is the one replaced.
        free = Q(run__isnull=True) | Q(lease_until__lt=now) | Q(lease_until__isnull=True)
        if ExportState.objects.filter(free, pk=group.pk, run=holder[0]).update(run=run, lease_until=_lease_end()):
            break
    stale = ExportRun.objects.filter(pk=holder[0], status=ExportRunStatus.RUNNING).first()
    if stale is not None:
        _fail_quietly(stale, worker=worker, error=f"its worker stopped: the lease ran out; run #{run.pk} took over")
    return None


def _renew(*, group: DataGroup, run: ExportRun) -> None:
    """Extend the run's claim on its group (and its own lease); LeaseLost if another run or the sweeper took it."""
    lease = _lease_end()
    if ExportState.objects.filter(pk=group.pk, run=run).update(lease_until=lease) != 1:
        raise LeaseLost(f"run #{run.pk} lost its claim on {group.code}: another run took the group over")
    ExportRun.objects.filter(pk=run.pk, status__in=OPEN).update(lease_until=lease)


def _renew_resend(*, run: ExportRun) -> None:
    """Extend a run's own lease (a file sent again holds no group); LeaseLost if the sweeper ended it."""
    if ExportRun.objects.filter(pk=run.pk, status__in=OPEN).update(lease_until=_lease_end()) != 1:
        raise LeaseLost(f"run #{run.pk} was ended by the sweeper: its lease had run out")


def _run_folder(run: ExportRun) -> tempfile.TemporaryDirectory:
    """Return the run's temporary folder in IMPEX_CACHE_DIR, named after the run so that the sweeper finds it."""
    os.makedirs(settings.IMPEX_CACHE_DIR, exist_ok=True)
    return tempfile.TemporaryDirectory(
        prefix=f"{RUN_FOLDER_PREFIX}{run.pk}-", dir=settings.IMPEX_CACHE_DIR, ignore_cleanup_errors=True
    )


def _renewing(pieces: Generator[str, None, int], *, group: DataGroup, run: ExportRun) -> Generator[str, None, int]:
    """Pass the pieces on, renewing the claim now and then; return what the pieces return."""
    every = settings.IMPEX_LEASE_SECONDS / RENEW_FRACTION
    due = time.monotonic() + every
    while True:
        try:
            piece = next(pieces)
        except StopIteration as done:
            return done.value
        if time.monotonic() >= due:
            _renew(group=group, run=run)
            due = time.monotonic() + every
        yield piece


def _watermark_at(now: datetime) -> datetime:
    """Return a run's watermark: its start, or on PostgreSQL when a writing transaction began, if one began earlier.

    Records are stamped when saved, before their transaction commits: a transaction that began before the run
    and commits after the run read would bring records older than the run's start, which the next run (from
    the start) would miss. From the oldest such transaction's start they are written (some twice, none missed).
    Only transactions that have written (have an xid) count; a role that may not see others' sessions sees none.
    """
    if connection.vendor != "postgresql":
        return now
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL AND xact_start IS NOT NULL"
        )
        oldest = cursor.fetchone()[0]
    return min(now, oldest) if oldest is not None else now


# -- runs -------------------------------------------------------------------------------------------------------------


def export_run(*, group_id: int, trigger: str, by: str = "", reason: str = "") -> ExportRun:
    """Export a group's file to its destination, one run per group at a time; return the run as it ended.

    The watermark is the run's start, taken before any record is read, and moves with the run's completion,
    after the file is in place: a change made during a run goes in the next one, and a failed run leaves the
    watermark and no file in the destination. Downloads and impex_export are not runs: they never move it.
    reason: why the run was queued, when not by its trigger alone (the sweeper's run again).
    """
    group = DataGroup.objects.select_related("connection").get(pk=group_id)
    worker = worker_name()
    run = ExportRun.objects.create(group=group, trigger=trigger, created_by=by, worker=worker, lease_until=_lease_end())
    queued = f"queued ({trigger}{', by ' + by if by else ''}){': ' + reason if reason else ''}"
    _event(run, status=run.status, message=queued, worker=worker)
    holder = _claim(group=group, run=run, worker=worker)
    if holder is not None:
        return export_run_set_status(
            run=run,
            status=ExportRunStatus.SKIPPED,
            message=f"not run: run #{holder} of {group.code} is still running (runs of a group never overlap)",
            worker=worker,
            level=EventLevel.WARNING,
            finished_at=timezone.now(),
            lease_until=None,
        )
    try:
        # The lease is renewed whatever the run is doing (a long query, an upload); a run that stops renewing it
        # (its worker died) is failed by the sweeper, or by the next run of the group.
        with Heartbeat(
            lambda: _renew(group=group, run=run),
            every=settings.IMPEX_LEASE_SECONDS / RENEW_FRACTION,
            name=f"export-{group.code}",
        ):
            ended = _export(run=run, group=group, worker=worker)
    except Exception as exc:
        logger.exception("export run #%s of %s failed", run.pk, group.code)
        ended = _fail(run=run, group=group, worker=worker, error=_error_text(exc))
    _full_sync_again(group=group, ended=ended)
    return ended


def _export(*, run: ExportRun, group: DataGroup, worker: str) -> ExportRun:
    now = timezone.now()
    watermark = _watermark_at(now)  # before anything is read
    state = ExportState.objects.select_related("full_sync").get(pk=group.pk)
    folder = export_destination(group=group)
    full_sync = state.full_sync
    # The watermark belongs to the schedule's destination: another destination has had nothing yet.
    # A full sync asked for every record: its run ignores the watermark (and moves it, as any run that succeeds).
    since = None
    if (
        full_sync is None
        and group.incremental
        and state.watermark is not None
        and state.watermark_destination == folder.location
    ):
        since = state.watermark
    where = "every record" if since is None else f"the records changed since {since.isoformat()}"
    if full_sync is not None:
        where = f"every record, for full sync #{full_sync.pk} of {full_sync.entity} (the watermark reset)"
    export_run_set_status(
        run=run,
        status=ExportRunStatus.RUNNING,
        message=f"started: {where}, to {folder.location}",
        worker=worker,
        started_at=now,
        watermark=watermark,
        since=since,
        destination=folder.location,
        full_sync=full_sync,
    )
    descriptor = _descriptor_of(group)
    name = group.export_file_name(at=now, run=run.pk, ext=EXTENSIONS.get(descriptor.format, "csv"))
    with _run_folder(run) as tmp:
        local = Path(tmp) / name
        pieces = export_pieces(descriptor=descriptor, since=since)
        with open(local, "w", encoding=descriptor.encoding or "utf-8", newline="") as stream:
            rows = write_pieces(stream, _renewing(pieces, group=group, run=run))
        _renew(group=group, run=run)
        if rows == 0 and since is not None and not group.write_empty:
            return _complete(
                run=run,
                group=group,
                worker=worker,
                message=f"completed: no record changed since {since.isoformat()}, no file written",
            )
        sent = _send(run=run, group=group, folder=folder, local=local, name=name, rows=rows)
    return _complete(
        run=run,
        group=group,
        worker=worker,
        sent=sent,
        message=f"completed: {rows} row{'s' if rows != 1 else ''} written to {sent.path}",
    )


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _send(*, run: ExportRun, group: DataGroup, folder: Folder, local: Path, name: str, rows: int) -> SentFile:
    """Keep a copy of the file in the hub, then put it in the destination in one step; return the unsaved record."""
    sha256, size = _digest(local)
    hub = hub_storage()
    kept = save_file(hub, f"exports/{group.code}/sent/{name}", local)
    try:
        stored = place_file(folder.storage, folder.name(name), local)
    except BaseException:
        delete_file(hub, kept)
        raise
    return SentFile(
        run=run,
        group=group,
        name=stored.rpartition("/")[2],
        location=folder.location,
        path=folder.path(stored),
        copy_path=kept,
        rows=rows,
        sha256=sha256,
        size=size,
    )


def _complete(
    *, run: ExportRun, group: DataGroup, worker: str, message: str, sent: SentFile | None = None
) -> ExportRun:
    """Record the file sent, end the run, move the watermark and free the group: all or nothing.

    A run that carried out a full sync ends its part of it, and the last one to end stamps the sync log.
    """
    with transaction.atomic():
        full_sync = _full_sync_lock(run)
        if sent is not None:
            sent.sent_at = timezone.now()
            sent.save()
        moved = ExportState.objects.filter(pk=group.pk, run=run).update(
            run=None, lease_until=None, watermark=run.watermark, watermark_destination=run.destination
        )
        if moved != 1:
            raise LeaseLost(f"run #{run.pk} lost its claim on {group.code}: another run took the group over")
        if full_sync is not None:
            message += _full_sync_step(full_sync=full_sync, group=group)
        return export_run_set_status(
            run=run,
            status=ExportRunStatus.COMPLETED,
            message=f"{message}; watermark moved to {run.watermark.isoformat()}",
            worker=worker,
            finished_at=timezone.now(),
            lease_until=None,
            rows=sent.rows if sent is not None else 0,
        )


# -- full syncs ("trigger a data sync", impex.services.full_sync) ------------------------------------------------------


def _full_sync_lock(run: ExportRun) -> FullSync | None:
    """Return the full sync a run carried out, with its sync log locked; None if it carried out none.

    Locked before the group's state, in the order a trigger takes them: two runs of one full sync ending at once
    then end one after the other, and the second sees that the first has ended.
    """
    if run.full_sync_id is None:
        return None
    full_sync = FullSync.objects.select_related("connection").filter(pk=run.full_sync_id).first()
    if full_sync is not None:
        sync_logs().lock(connection=full_sync.connection, entity=full_sync.entity)
    return full_sync


def _full_sync_step(*, full_sync: FullSync, group: DataGroup) -> str:
    """End a group's part of a full sync; the last part ends it and stamps the log's last_full_sync. Say what."""
    ExportState.objects.filter(pk=group.pk, full_sync=full_sync).update(full_sync=None)
    left = sorted(ExportState.objects.filter(full_sync=full_sync).values_list("group__code", flat=True))
    name = f"full sync #{full_sync.pk} of {full_sync.entity}"
    if left:
        return f"; {name}: still to run: {', '.join(left)}"
    now = timezone.now()
    if not FullSync.objects.filter(pk=full_sync.pk, finished_at__isnull=True).update(finished_at=now):
        return f"; {name} had ended already"
    newer = FullSync.objects.filter(
        connection_id=full_sync.connection_id, entity=full_sync.entity, pk__gt=full_sync.pk
    ).exists()
    if newer:
        # The log started over for the newer one, which stamps it when it is done.
        return f"; {name} done (a newer full sync of {full_sync.entity} stamps the sync log)"
    sync_logs().finish(connection=full_sync.connection, entity=full_sync.entity, full=True, at=now)
    return f"; {name} done: the sync log's last_full_sync set"


def _full_sync_again(*, group: DataGroup, ended: ExportRun) -> None:
    """Queue the group's run again (once committed) when a full sync's run was skipped while this one held it.

    Without it the full sync would wait for the schedule's next turn, a day for a daily export. (A skip that
    commits just after this look is left to that next turn: late, never lost.)
    """
    if ended.status == ExportRunStatus.SKIPPED:
        return  # it never held the group
    pending = ExportState.objects.filter(pk=group.pk).values_list("full_sync_id", "full_sync__created_at").first()
    if pending is None or pending[0] is None or ended.full_sync_id == pending[0]:
        return  # none pending, or this run carried it out (and failed: the schedule tries again)
    skipped = group.export_runs.filter(
        status=ExportRunStatus.SKIPPED, trigger=ExportTrigger.FULL_SYNC, created_at__gte=pending[1]
    )
    if not skipped.exists():
        return
    reason = f"run again: full sync #{pending[0]}'s run was skipped while run #{ended.pk} held the group"
    group_id = group.pk
    transaction.on_commit(
        lambda: async_task(
            EXPORT_TASK,
            group_id,
            ExportTrigger.FULL_SYNC.value,
            "",
            reason,
            task_name=f"export {group.code} (full sync, run again)",
            group="impex-export",
        )
    )


def _fail(*, run: ExportRun, group: DataGroup, worker: str, error: str) -> ExportRun:
    """End the run as failed and free the group; the watermark stays where it was."""
    with transaction.atomic():
        ExportState.objects.filter(pk=group.pk, run=run).update(run=None, lease_until=None)
        return _fail_quietly(run, worker=worker, error=error)


def _fail_quietly(run: ExportRun, *, worker: str, error: str) -> ExportRun:
    run.refresh_from_db(fields=["status"])
    if ExportRunStatus.FAILED not in EXPORT_RUN_TRANSITIONS[run.status]:
        return run  # already ended (e.g. failed by the run that took its group over)
    return export_run_set_status(
        run=run,
        status=ExportRunStatus.FAILED,
        message=f"failed: {error}",
        worker=worker,
        level=EventLevel.ERROR,
        finished_at=timezone.now(),
        lease_until=None,
        error=error,
    )


def _error_text(exc: BaseException) -> str:
    """Say what went wrong in words a user can act on (the exception's class when it has no message)."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or text}: {exc.filename}"
    return text or type(exc).__name__


# -- sending a file again ---------------------------------------------------------------------------------------------


def export_resend(*, sent_file_id: int, by: str = "") -> ExportRun:
    """Send a sent file's kept copy to where it was sent, again (same bytes, in one step); return the run."""
    original = SentFile.objects.select_related("group").get(pk=sent_file_id)
    group = original.group
    worker = worker_name()
    run = ExportRun.objects.create(
        group=group,
        trigger=ExportTrigger.ADMIN,
        created_by=by,
        worker=worker,
        resend_of=original,
        lease_until=_lease_end(),
    )
    _event(run, status=run.status, message=f"queued: send {original.name} again{', by ' + by if by else ''}")
    now = timezone.now()
    export_run_set_status(
        run=run,
        status=ExportRunStatus.RUNNING,
        message=f"started: sending {original.name} (run #{original.run_id}) again to {original.location}",
        worker=worker,
        started_at=now,
        destination=original.location,
    )
    try:
        with Heartbeat(
            lambda: _renew_resend(run=run),
            every=settings.IMPEX_LEASE_SECONDS / RENEW_FRACTION,
            name=f"resend-{run.pk}",
        ):
            sent = _resend(run=run, original=original)
        with transaction.atomic():
            sent.save()
            return export_run_set_status(
                run=run,
                status=ExportRunStatus.COMPLETED,
                message=f"completed: {original.name} sent again as {sent.path}",
                worker=worker,
                finished_at=timezone.now(),
                lease_until=None,
                rows=sent.rows,
            )
    except Exception as exc:
        logger.exception("sending %s again (run #%s) failed", original.name, run.pk)
        return _fail_quietly(run, worker=worker, error=_error_text(exc))


def _resend(*, run: ExportRun, original: SentFile) -> SentFile:
    folder = folder_at(original.location, default=original.location)
    storage, copy_name = resolve_path(original.copy_path)
    with _run_folder(run) as tmp:
        local = Path(tmp) / original.name
        with open_file(storage, copy_name) as raw, open(local, "wb") as out:
            reader = HashingReader(raw)
            while chunk := reader.read(CHUNK_BYTES):
                out.write(chunk)
        if reader.digest.hexdigest() != original.sha256:
            raise ConfigurationError(
                f"the hub's copy of {original.name} ({original.copy_path}) is not the file sent: its SHA-256 differs"
            )
        stored = place_file(folder.storage, folder.name(original.name), local)
    return SentFile(
        run=run,
        group=original.group,
        name=stored.rpartition("/")[2],
        location=original.location,
        path=folder.path(stored),
        copy_path=original.copy_path,
        rows=original.rows,
        sha256=original.sha256,
        size=reader.size,
        sent_at=timezone.now(),
    )


def export_group_check(*, group: DataGroup) -> Folder:
    """Refuse now, not in the worker, a group that cannot export (ConfigurationError); return its destination.

    LocationRefused (a ConfigurationError): a destination the hub may not use (impex.locations).
    """
    _descriptor_of(group)
    return export_destination(group=group)


def export_run_enqueue(*, group: DataGroup, by: str = "") -> None:
    """Queue a run of an export group's file to its destination, once the current transaction commits."""
    export_group_check(group=group)
    group_id = group.pk
    transaction.on_commit(
        lambda: async_task(
            EXPORT_TASK, group_id, ExportTrigger.ADMIN.value, by, task_name=f"export {group.code}", group="impex-export"
        )
    )


# -- the sweeper: runs whose worker died ------------------------------------------------------------------------------


def export_runs_sweep(*, now: datetime | None = None) -> list[int]:
    """Fail the runs whose worker stopped (their lease ran out), free their group, queue the schedule's run again.

    Return the ids of the runs failed. A run of the group is queued at once when the dead run was the schedule's, or
    when a run was skipped while the dead one held the group: the schedule does not wait for its next turn.
    """
    now = now or timezone.now()
    worker = worker_name()
    # A run created by an older version has no lease of its own: its claim on the group tells whether it lives.
    held = ExportState.objects.filter(run__isnull=False, lease_until__gte=now).values("run")
    expired = Q(lease_until__lt=now) | Q(
        lease_until__isnull=True, created_at__lt=now - timedelta(seconds=settings.IMPEX_LEASE_SECONDS)
    )
    failed = []
    for run in ExportRun.objects.filter(expired, status__in=OPEN).exclude(pk__in=held).select_related("group"):
        lapsed = f"at {run.lease_until:%Y-%m-%d %H:%M:%S} UTC" if run.lease_until else "(it no longer renewed it)"
        who = f"its worker {run.worker}" if run.worker else "its worker"
        error = f"{who} stopped: its lease ran out {lapsed}; failed by the sweeper"
        with transaction.atomic():
            try:
                export_run_set_status(
                    run=run,
                    status=ExportRunStatus.FAILED,
                    message=f"failed: {error}",
                    worker=worker,
                    level=EventLevel.ERROR,
                    where=Q(lease_until__lt=now) | Q(lease_until__isnull=True),
                    finished_at=now,
                    lease_until=None,
                    error=error,
                )
            except IllegalTransition:
                continue  # it renewed its lease, or ended, meanwhile
            ExportState.objects.filter(pk=run.group_id, run=run).update(run=None, lease_until=None)
            _run_again(dead=run)
        failed.append(run.pk)
    return failed


def _run_again(*, dead: ExportRun) -> None:
    """Queue the group's run again (once committed) if the dead run was the schedule's or a full sync's, or made the
    schedule skip one."""
    group = dead.group
    if dead.resend_of_id is not None or group.direction != GroupDirection.EXPORT or not group.schedule_enabled:
        return
    skipped = group.export_runs.filter(status=ExportRunStatus.SKIPPED, created_at__gte=dead.created_at).exists()
    # A full sync's run too: the full sync would otherwise wait for the schedule's next turn.
    if dead.trigger != ExportTrigger.SCHEDULE and not skipped and dead.full_sync_id is None:
        return
    reason = f"run again: run #{dead.pk} stopped with its worker"
    trigger = ExportTrigger.FULL_SYNC if dead.trigger == ExportTrigger.FULL_SYNC else ExportTrigger.SCHEDULE
    group_id = group.pk
    transaction.on_commit(
        lambda: async_task(
            EXPORT_TASK,
            group_id,
            trigger.value,
            "",
            reason,
            task_name=f"export {group.code} (run again)",
            group="impex-export",
        )
    )
