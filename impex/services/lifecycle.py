"""The life of an import job: queue it, claim it with a lease, end it once; the only code that moves statuses."""

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task

from impex import events
from impex.choices import (
    FILE_TRANSITIONS,
    JOB_CANCELLABLE,
    JOB_FINAL,
    JOB_TRANSITIONS,
    FileKind,
    FileStatus,
    JobSource,
    JobStatus,
)
from impex.exceptions import IllegalTransition, JobNotCancellable
from impex.models import ConnectionState, ImportFile, ImportJob
from impex.services.notices import job_problems_report
from impex.services.sql import Plus, WriteBatch

TASK_RUN = "impex.tasks.import_job_run"


def lease_end():
    """Return when a claim taken now runs out unless renewed."""
    return timezone.now() + timedelta(seconds=settings.IMPEX_LEASE_SECONDS)


def _check(table: dict, old: str, new: str, what: str) -> None:
    if new not in table.get(old, ()):
        raise IllegalTransition(f"{what} cannot go from {old} to {new}")


def job_enqueue(*, job: ImportJob, reason: str = "") -> None:
    """Hand the job to the django-q2 cluster once the current transaction commits."""
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(queued_at=now, retry_at=None)
    job.queued_at = now
    events.job_queued(job, reason=reason)
    job_id = job.pk
    transaction.on_commit(lambda: async_task(TASK_RUN, job_id, task_name=f"import job #{job_id}", group="impex-import"))


def job_transition(*, job_id: int, old: str | Iterable[str], new: str, where: Q | None = None, **fields) -> bool:
    """Move a job from old (a status, or any of several) to new if it is still so and where holds; say if it moved.

    The only writer of a job's status: a move JOB_TRANSITIONS does not allow raises IllegalTransition and changes
    nothing. The UPDATE names the statuses it expects, so that of two workers moving one job only one does.
    """
    olds = [old] if isinstance(old, str) else list(old)
    for before in olds:
        _check(JOB_TRANSITIONS, before, new, f"import job #{job_id}")
    rows = ImportJob.objects.filter(pk=job_id, status__in=olds)
    if where is not None:
        rows = rows.filter(where)
    return rows.update(status=new, **fields) == 1


def job_claim(*, job_id: int, worker: str, rerun: bool = False) -> tuple[ImportJob, bool]:
    """Start the job for this worker if it is free (queued, or its worker's lease ran out); say if it was claimed.

    rerun also takes a job that ended in an error or was cancelled (it goes on where it stopped). One
    conditional UPDATE decides, so of workers racing for a job exactly one wins; the others may help with its chunks.
    """
    now = timezone.now()
    free = [JobStatus.QUEUED, JobStatus.RUNNING, *([JobStatus.ERRORED, JobStatus.CANCELLED] if rerun else [])]
    # A running job is free only once its worker's lease ran out.
    unheld = ~Q(status=JobStatus.RUNNING) | Q(lease_until__lt=now) | Q(lease_until__isnull=True)
    before = ImportJob.objects.filter(pk=job_id).values("status", "claimed_by").first()
    if before is None:
        raise ImportJob.DoesNotExist(f"no import job #{job_id}")
    with transaction.atomic():
        claimed = job_transition(
            job_id=job_id,
            old=free,
            new=JobStatus.RUNNING,
            where=unheld,
            claimed_by=worker,
            lease_until=lease_end(),
            attempts=F("attempts") + 1,
            started_at=Coalesce("started_at", now),
            finished_at=None,
            retry_at=None,
            error="",
        )
        job = ImportJob.objects.select_related("group", "connection").get(pk=job_id)
        if claimed:
            takeover = before["claimed_by"] if before["status"] == JobStatus.RUNNING else ""
            events.job_started(job, worker=worker, takeover_from=takeover)
    return job, claimed


def job_lease_renew(
    *,
    job_id: int,
    worker: str,
    progress: bool = False,
    grown: tuple[int, int] | None = None,
    writes: WriteBatch | None = None,
    lost=None,
) -> bool:
    """Extend this worker's claim on the job (and its rows done so far); False when another worker took it over.

    grown: the rows (total, done) a file that had none has just added, counted on instead of summing every file
    of the job again (which would cost a job of many files more per file the more it has).
    writes: queue the renewal in the caller's batch instead, and call lost() once sent if it was taken over.
    """
    fields = {"lease_until": lease_end()}
    if grown is not None:
        fields.update(rows_total=F("rows_total") + grown[0], rows_done=F("rows_done") + grown[1])
    elif progress:
        # Summed in the UPDATE itself: one statement.
        files = ImportFile.objects.filter(Q(job_id=job_id) | Q(processed_by_id=job_id)).order_by()
        for field, name in (("rows_total", "rows_total"), ("rows_done", "rows_done")):
            total = files.annotate(one=Value(1)).values("one").annotate(sum=Sum(name)).values("sum")
            fields[field] = Coalesce(Subquery(total[:1]), 0)
    mine = {"pk": job_id, "status": JobStatus.RUNNING, "claimed_by": worker}
    if writes is None:
        return ImportJob.objects.filter(**mine).update(**fields) == 1
    if grown is not None:
        fields.update(rows_total=Plus(grown[0]), rows_done=Plus(grown[1]))
    writes.update_where(ImportJob, mine, fields, then=lambda count: count == 1 or lost(), fence=True)
    return True


def job_terminate(*, job: ImportJob, worker: str, status: str, error: str = "") -> ImportJob:
    """End a running job that this worker holds as completed, failed or errored, once; report it."""
    if status not in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.ERRORED):
        raise IllegalTransition(f"a job is not ended as {status}")
    totals = ImportFile.objects.filter(Q(job=job) | Q(processed_by=job)).aggregate(
        total=Sum("rows_total"), done=Sum("rows_done")
    )
    with transaction.atomic():
        ended = job_transition(
            job_id=job.pk,
            old=JobStatus.RUNNING,
            new=status,
            where=Q(claimed_by=worker),
            finished_at=timezone.now(),
            lease_until=None,
            error=error,
            rows_total=totals["total"] or 0,
            rows_done=totals["done"] or 0,
        )
        job.refresh_from_db()
        if not ended:
            return job
        ConnectionState.objects.filter(job=job).update(job=None)
        events.job_finished(job, status=status, worker=worker, error=error)
        if not job.dry_run:
            job_problems_report(job=job, status=status, error=error)
    return job


def job_set_aside(*, job: ImportJob, worker: str, reason: str, retry_in: int) -> bool:
    """Give a running job back to the queue to be taken again in retry_in seconds (it waits for others)."""
    with transaction.atomic():
        moved = job_transition(
            job_id=job.pk,
            old=JobStatus.RUNNING,
            new=JobStatus.QUEUED,
            where=Q(claimed_by=worker),
            claimed_by="",
            lease_until=None,
            retry_at=timezone.now() + timedelta(seconds=retry_in),
        )
        if moved:
            events.job_requeued(job, reason=reason, worker=worker)
    return moved


def job_cancel(*, job_id: int, by: str) -> bool:
    """Cancel a queued or running job: its workers stop at their next chunk; say if this call cancelled it.

    What it committed stays (the upsert is idempotent: running it again finishes it); its files keep their
    status, so a re-run, or the connection's next job, takes them up and nothing is imported twice. A job
    cancelled already answers False; one that had ended otherwise raises JobNotCancellable.
    """
    before = ImportJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if before is None:
        raise ImportJob.DoesNotExist(f"no import job #{job_id}")
    if before == JobStatus.CANCELLED:
        return False
    with transaction.atomic():
        cancelled = job_transition(
            job_id=job_id,
            old=list(JOB_CANCELLABLE),
            new=JobStatus.CANCELLED,
            finished_at=timezone.now(),
            lease_until=None,
            retry_at=None,
        )
        job = ImportJob.objects.get(pk=job_id)
        if not cancelled:
            if job.status == JobStatus.CANCELLED:
                return False
            raise JobNotCancellable(
                f"import job #{job_id} is {job.status}: only a queued or running job can be cancelled; nothing changed"
            )
        # Its connection is free at once: the next job of it goes on with the file this one stopped in.
        ConnectionState.objects.filter(job_id=job_id).update(job=None)
        events.job_cancelled(job, by=by, was=before)
    return True


def job_rerun(*, job: ImportJob, by: str) -> bool:
    """Queue again a job that ended in an error, was cancelled, or whose worker died; False if it is not so."""
    now = timezone.now()
    dead = Q(status__in=[JobStatus.ERRORED, JobStatus.CANCELLED]) | Q(lease_until__lt=now)
    with transaction.atomic():
        moved = job_transition(
            job_id=job.pk,
            old=[JobStatus.ERRORED, JobStatus.CANCELLED, JobStatus.RUNNING],
            new=JobStatus.QUEUED,
            where=dead,
            claimed_by="",
            lease_until=None,
        )
        if moved:
            job.refresh_from_db()
            events.job_requeued(job, reason=f"run again by {by}")
            job_enqueue(job=job)
    return moved


def jobs_requeue(*, now=None) -> list[int]:
    """Queue again the jobs whose worker died (lease ran out), that were set aside, or that no worker took.

    Files that a job left running when it ended (or was deleted) go to a new job of their connection, which goes on
    with them from where they stopped: no file stays running without a live lease.
    """
    now = now or timezone.now()
    queued: list[int] = []
    for job in ImportJob.objects.filter(status=JobStatus.RUNNING, lease_until__lt=now):
        with transaction.atomic():
            stale = job_transition(
                job_id=job.pk,
                old=JobStatus.RUNNING,
                new=JobStatus.QUEUED,
                where=Q(lease_until__lt=now),
                claimed_by="",
                lease_until=None,
            )
            if stale:
                events.job_requeued(
                    job, reason=f"the lease of {job.claimed_by} ran out at {job.lease_until:%Y-%m-%d %H:%M:%S} UTC"
                )
                job_enqueue(job=job)
                queued.append(job.pk)
    lost = now - timedelta(minutes=settings.IMPEX_REQUEUE_MINUTES)
    due = Q(retry_at__lte=now) | Q(retry_at__isnull=True, queued_at__lt=lost)
    for job in ImportJob.objects.filter(due, status=JobStatus.QUEUED):
        with transaction.atomic():
            if ImportJob.objects.filter(due, pk=job.pk, status=JobStatus.QUEUED).update(queued_at=now) == 1:
                reason = "its wait is over" if job.retry_at else "no worker took it in time"
                job_enqueue(job=job, reason=reason)
                queued.append(job.pk)
    return queued + _files_left_running_hand_over()


def _files_left_running_hand_over() -> list[int]:
    """Give the files left running by a job that ended (or is gone) to a new job of their connection; return its ids.

    A job that errored keeps its running file: its error says why, and running it again (or the connection's next
    job) goes on with it; retrying an error here would repeat it every minute.
    """
    left = ImportFile.objects.filter(status=FileStatus.RUNNING, kind=FileKind.DATA, job__dry_run=False).filter(
        Q(processed_by__isnull=True) | Q(processed_by__status__in=JOB_FINAL)
    )
    created: list[int] = []
    for connection_id in sorted(set(left.values_list("connection_id", flat=True)), key=lambda pk: pk or 0):
        with transaction.atomic():
            files = list(left.filter(connection_id=connection_id).order_by("pk"))
            job = ImportJob.objects.create(connection_id=connection_id, source=JobSource.SWEEPER)
            # Conditional on the file still being left: of two sweepers, the second one takes nothing.
            if left.filter(pk__in=[f.pk for f in files]).update(processed_by=job) != len(files):
                transaction.set_rollback(True)
                continue
            for f in files:
                events.file_taken_over(f, job_id=job.pk, from_job_id=f.processed_by_id)
            names = ", ".join(f.name for f in files)
            job_enqueue(job=job, reason=f"the sweeper found {names} left running by a job that had ended")
            created.append(job.pk)
    return created


def file_transition(
    f: ImportFile,
    *,
    new: str,
    job_id: int,
    message: str = "",
    note: str = "",
    worker: str = "",
    write: bool = True,
    writes: WriteBatch | None = None,
    **fields,
) -> bool:
    """Move a file to a new status if it still has the one we saw; write the event. False if it had moved on.

    message is kept on the file (why it waits, why it was rejected); note only goes in the event.
    write=False: the caller holds the file's row lock and moves it on again in the same transaction: the move is
    checked and its event written, and its fields go in the next move's UPDATE (one UPDATE for both).
    writes: the caller holds the row lock: the UPDATE goes in its batch (and must change the row once sent).
    """
    old = f.status
    _check(FILE_TRANSITIONS, old, new, f"the file {f.name}")
    if new == FileStatus.WAITING and old == FileStatus.WAITING and f.message == message:
        return True
    stored, unwritten = f.__dict__.pop("_unwritten", None) or (old, {})
    if write:
        fields = {**unwritten, "status": new, "message": message, **fields}
        if writes is not None:
            where = {"pk": f.pk, "status": stored}
            writes.update_where(ImportFile, where, fields, then=lambda count: _locked_row_changed(count, f))
        elif ImportFile.objects.filter(pk=f.pk, status=stored).update(**fields) != 1:
            return False
        fields = {name: value for name, value in fields.items() if name not in ("status", "message")}
    else:
        f._unwritten = (stored, {**unwritten, **fields})  # the status in the row, and what is to be written
    f.status = new
    f.message = message
    for name, value in fields.items():
        setattr(f, name, value)
    events.file_status_changed(f, job_id=job_id, old=old, new=new, message=note or message, worker=worker)
    return True


def _locked_row_changed(count: int, f: ImportFile) -> None:
    if count != 1:
        raise IllegalTransition(f"the file {f.name} changed under its row lock")


def connection_hold(*, connection_id: int, job: ImportJob, first_come: bool = False) -> int | None:
    """Take the connection for this job so that its files go in order; return the holding job's id if another has it.

    A holder whose job is no longer running, or whose worker's lease ran out, holds nothing. first_come: the
    connection's names carry no order (patterns, SPEC 3: files go in as they arrived), so an earlier job that still
    has files of it to import goes first, whichever worker asks first; its id is returned as the holder's.
    """
    with transaction.atomic():
        state, _ = ConnectionState.objects.select_for_update().get_or_create(connection_id=connection_id)
        holder = state.job_id
        if holder is not None and holder != job.pk:
            alive = ImportJob.objects.filter(
                pk=holder, status=JobStatus.RUNNING, lease_until__gte=timezone.now()
            ).exists()
            if alive:
                return holder
        if holder != job.pk:
            if first_come and (earlier := _arrived_earlier(connection_id=connection_id, job=job)) is not None:
                return earlier
            ConnectionState.objects.filter(pk=state.pk).update(job=job)
    return None


def _arrived_earlier(*, connection_id: int, job: ImportJob) -> int | None:
    """Return the first job before this one with files of the connection still to import: running with its lease
    alive (a dead worker's files are taken over by the job that holds the connection), or queued for less than
    IMPEX_ARRIVAL_WAIT_SECONDS. A job made for the connection (or for a group of it) counts before its files are
    matched; another, once one of its files is."""
    now = timezone.now()
    fresh = now - timedelta(seconds=settings.IMPEX_ARRIVAL_WAIT_SECONDS)
    pending = [FileStatus.QUEUED, FileStatus.RUNNING]
    own = ImportFile.objects.filter(job=OuterRef("pk"), status__in=pending)
    matched = ImportFile.objects.filter(
        job=OuterRef("pk"), connection_id=connection_id, kind=FileKind.DATA, status__in=pending
    )
    for_it = Q(connection_id=connection_id) | Q(group__connection_id=connection_id)
    return (
        ImportJob.objects.filter(pk__lt=job.pk, dry_run=False)
        .annotate(queued_since=Coalesce("queued_at", "created_at"))
        .filter(Q(status=JobStatus.QUEUED, queued_since__gte=fresh) | Q(status=JobStatus.RUNNING, lease_until__gte=now))
        .filter((for_it & Exists(own)) | Exists(matched))
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )


def connection_let_go(*, connection_id: int, job: ImportJob) -> None:
    """Free the connection this job held."""
    ConnectionState.objects.filter(connection_id=connection_id, job=job).update(job=None)
