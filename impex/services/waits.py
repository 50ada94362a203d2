"""Files waiting for a Kore sequence: a problem when a wait lasts, and an admin may release it."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.mail import EmailMessage
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from impex.choices import FileStatus, JobSource, Mode, ProblemKind
from impex.models import Connection, ImportFile, ImportJob
from impex.services.lifecycle import job_enqueue
from impex.services.problems import problem_raise

# How a waiting file's message starts, by what it waits for: the connections list counts them apart.
WAITING_FOR_SEQUENCE = "waiting for sequence"
HELD_FOR_WINDOW = "held until the full-refresh window"


def file_blocked_reason(f: ImportFile, *, refresh: bool = True) -> str:
    """Say why a file must wait (a sequence gap, or the full-refresh window is closed), or return ''.

    refresh=False: the caller has just read the connection's next_expected_sequence.
    """
    conn = f.connection
    if conn is None:
        return ""
    if refresh:
        conn.refresh_from_db(fields=["next_expected_sequence"])
    expected = conn.next_expected_sequence
    if f.sequence is not None and expected is not None and f.sequence > expected:
        return f"{WAITING_FOR_SEQUENCE} {expected}"
    if f.mode == Mode.FULL and conn.full_window_start and conn.full_window_end:
        now = datetime.now(ZoneInfo(conn.timezone or "UTC")).time()
        start, end = conn.full_window_start, conn.full_window_end
        inside = start <= now < end if start <= end else (now >= start or now < end)
        if not inside:
            return f"{HELD_FOR_WINDOW} {start:%H:%M}-{end:%H:%M} ({conn.timezone})"
    return ""


def waiting_files(*, connection: Connection):
    """Return the connection's files that wait for a sequence, oldest sequence first."""
    return ImportFile.objects.filter(
        connection=connection, status=FileStatus.WAITING, sequence__isnull=False, job__dry_run=False
    ).order_by("sequence", "id")


def wait_alerts_send(*, now=None) -> int:
    """Raise a problem for each connection whose files have waited past their alert time; return how many are new.

    The problem is mailed once to the contacts; it is resolved when no file of the connection waits any more (a job
    imports them, or the wait is released).
    """
    now = now or timezone.now()
    raised = 0
    for conn in Connection.objects.filter(files__status=FileStatus.WAITING).distinct():
        limit = now - timedelta(minutes=conn.sequence_wait_alert_minutes)
        overdue = list(waiting_files(connection=conn).filter(wait_alerted_at__isnull=True, waiting_since__lte=limit))
        if not overdue:
            continue
        lines = "\n".join(f"- {f.name}: {f.message} (since {f.waiting_since:%Y-%m-%d %H:%M} UTC)" for f in overdue)
        with transaction.atomic():
            problem = problem_raise(
                kind=ProblemKind.SEQUENCE_WAIT,
                key=f"sequence-wait:{conn.code}",
                connection=conn,
                message=(
                    f"{len(overdue)} file{pluralize(len(overdue))} of {conn.code} wait for an earlier sequence that "
                    f"has not arrived:\n{lines}\nSend the missing file, or release the sequence wait "
                    "(Connections > Release the sequence wait) to import them without it."
                ),
                url=reverse("admin:impex_connection_changelist") + f"?q={conn.code}",
            )
            raised += problem.count == 1
            ImportFile.objects.filter(pk__in=[f.pk for f in overdue]).update(wait_alerted_at=now)
    return raised


def sequence_wait_mail(*, problem, to: list[str]) -> EmailMessage | None:
    """Build the mail of files waiting past their alert time (the subject and lines it had before problems existed)."""
    conn = problem.connection
    if conn is None:
        return None
    waiting = list(waiting_files(connection=conn).filter(wait_alerted_at__isnull=False))
    if not waiting:
        return None
    lines = "\n".join(f"- {f.name}: {f.message} (since {f.waiting_since:%Y-%m-%d %H:%M} UTC)" for f in waiting)
    return EmailMessage(
        subject=f"[impex-hub] {conn.code}: {len(waiting)} file{pluralize(len(waiting))} waiting for a missing sequence",
        body=(
            f"These files of {conn.code} wait for an earlier sequence that has not arrived:\n\n{lines}\n\n"
            "Send the missing file, or release the wait in the admin (Connections > Release the sequence wait) to "
            f"import them without it.\n\nWhere to release it: {problem.url}\n"
        ),
        to=to,
    )


def connection_release_wait(*, connection: Connection, created_by: str = "") -> ImportJob | None:
    """Skip the missing sequences: expect the oldest waiting file next and queue a job that imports them."""
    with transaction.atomic():
        first = waiting_files(connection=connection).first()
        if first is None:
            return None
        Connection.objects.filter(pk=connection.pk).update(next_expected_sequence=first.sequence)
        job = ImportJob.objects.create(connection=connection, source=JobSource.ADMIN, created_by=created_by)
        job_enqueue(
            job=job,
            reason=f"sequence wait released by {created_by or 'an admin'}: "
            f"next expected sequence set to {first.sequence}",
        )
    return job
