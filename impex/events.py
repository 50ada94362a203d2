"""The events of import jobs: one small function per kind, each writing one ImportEvent row."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.template.defaultfilters import pluralize

from impex.choices import EventLevel
from impex.models import ImportEvent, ImportFile, ImportJob

_held: ContextVar[list[ImportEvent] | None] = ContextVar("impex_events_held", default=None)


@contextmanager
def held(into=None) -> Iterator[None]:
    """Write the events recorded inside in one INSERT when the block ends (nothing if it raises).

    For the few events of a small file imported in one transaction: call it inside that transaction.
    into: a WriteBatch (impex.services.sql) the INSERT goes in, sent after this block ends.
    """
    token = _held.set([])
    try:
        yield
        if into is not None:
            into.insert(ImportEvent, _held.get())
        else:
            ImportEvent.objects.bulk_create(_held.get())
    finally:
        _held.reset(token)


def _event(
    job_id: int, kind: str, message: str, *, file_id: int | None = None, level: str = EventLevel.INFO, worker=""
) -> ImportEvent:
    event = ImportEvent(job_id=job_id, file_id=file_id, kind=kind, message=message, level=level, worker=worker)
    pending = _held.get()
    if pending is None:
        event.save(force_insert=True)
    else:
        pending.append(event)
    return event


def job_queued(job: ImportJob, *, reason: str = "") -> ImportEvent:
    """Record that the job was handed to the queue."""
    return _event(job.pk, "queued", f"queued{': ' + reason if reason else ''}")


def job_started(job: ImportJob, *, worker: str, takeover_from: str = "") -> ImportEvent:
    """Record that a worker started (or took over) the job."""
    mode = " (dry run)" if job.dry_run else ""
    if takeover_from:
        message = f"taken over by {worker}{mode}: the lease of {takeover_from} had run out"
        return _event(job.pk, "takeover", message, level=EventLevel.WARNING, worker=worker)
    attempt = f" (attempt {job.attempts})" if job.attempts > 1 else ""
    return _event(job.pk, "started", f"started by {worker}{mode}{attempt}", worker=worker)


def job_helper_joined(job: ImportJob, *, worker: str) -> ImportEvent:
    """Record that another worker helps with the job's chunks."""
    return _event(job.pk, "helper", f"{worker} helps with the chunks", worker=worker)


def job_waits_for_connection(job: ImportJob, *, connection, holder_id: int, worker: str) -> ImportEvent:
    """Record that the job waits because another job is importing the same connection's files."""
    message = f"waiting: job #{holder_id} is importing files of {connection.code} (files of a connection go in order)"
    return _event(job.pk, "connection-wait", message, worker=worker)


def job_requeued(job: ImportJob, *, reason: str, worker: str = "") -> ImportEvent:
    """Record that the job went back to the queue."""
    return _event(job.pk, "requeued", f"queued again: {reason}", level=EventLevel.WARNING, worker=worker)


def job_finished(job: ImportJob, *, status: str, worker: str, error: str = "") -> ImportEvent:
    """Record how the job ended."""
    level = {"completed": EventLevel.INFO, "failed": EventLevel.WARNING}.get(status, EventLevel.ERROR)
    return _event(job.pk, status, f"{status}{': ' + error if error else ''}", level=level, worker=worker)


def job_cancelled(job: ImportJob, *, by: str, was: str) -> ImportEvent:
    """Record that a person cancelled the job (its workers stop at their next chunk)."""
    stop = "its workers stop at their next chunk; " if was == "running" else ""
    message = f"cancelled by {by} ({was}): {stop}what it committed stays, and running it again finishes it"
    return _event(job.pk, "cancelled", message, level=EventLevel.WARNING, worker=by)


def job_stopped(job: ImportJob, *, worker: str) -> ImportEvent:
    """Record that a worker stopped a job that was cancelled."""
    return _event(
        job.pk, "stopped", f"{worker} stopped: the job was cancelled", level=EventLevel.WARNING, worker=worker
    )


def job_note(job: ImportJob, message: str, *, level: str = EventLevel.INFO, worker: str = "") -> ImportEvent:
    """Record something worth telling about the job as a whole."""
    return _event(job.pk, "note", message, level=level, worker=worker)


def file_status_changed(
    f: ImportFile, *, job_id: int, old: str, new: str, message: str, worker: str = ""
) -> ImportEvent:
    """Record a file's move from one status to another."""
    level = {"rejected": EventLevel.ERROR, "waiting": EventLevel.WARNING}.get(new, EventLevel.INFO)
    text = f"{f.name}: {new}{': ' + message if message else ''}"
    return _event(job_id, new, text, file_id=f.pk, level=level, worker=worker)


def file_taken_up(f: ImportFile, *, job_id: int, worker: str = "") -> ImportEvent:
    """Record on a later job that it imports a file that waited in an earlier one (both histories stay)."""
    message = f"{f.name}: picked up from job #{f.job_id}, where it waited ({f.message})"
    ImportEvent.objects.create(
        job_id=f.job_id, file_id=f.pk, kind="taken-up", message=f"{f.name}: imported by job #{job_id}", worker=worker
    )
    return _event(job_id, "taken-up", message, file_id=f.pk, worker=worker)


def file_taken_over(f: ImportFile, *, job_id: int, from_job_id: int | None, worker: str = "") -> ImportEvent:
    """Record on both jobs that a job goes on with a running file another job left (its worker died, or it ended)."""
    before = ImportJob.objects.filter(pk=from_job_id).values_list("status", flat=True).first()
    if before is None:
        why = "that job is gone"
    elif before == "running":
        why = "its worker stopped"
    else:
        why = f"that job is {before}"
    where = f"{f.rows_done:,} of {f.rows_total:,} records in"
    message = f"{f.name}: taken over from job #{from_job_id} ({why}); it goes on from where it stopped ({where})"
    if before is not None:
        ImportEvent.objects.create(
            job_id=from_job_id,
            file_id=f.pk,
            kind="taken-over",
            message=f"{f.name}: left running; job #{job_id} goes on with it",
            level=EventLevel.WARNING,
            worker=worker,
        )
    return _event(job_id, "taken-over", message, file_id=f.pk, level=EventLevel.WARNING, worker=worker)


def file_importing(f: ImportFile, *, job_id: int, chunks: int, worker: str = "") -> ImportEvent:
    """Record that a file's rows start going in."""
    message = (
        f"{f.name}: importing {f.rows_total:,} record{pluralize(f.rows_total)} with {f.descriptor.code} ({f.mode}) "
        f"in {chunks} chunk{'s' if chunks != 1 else ''}"
    )
    return _event(job_id, "importing", message, file_id=f.pk, worker=worker)
