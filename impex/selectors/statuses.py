"""The status a job is shown with: its stored status, told apart when it completed with refused rows or when a file
of it still waits for a sequence or a window. Computed here only: lists annotate it, one job's page asks for it."""

from dataclasses import dataclass

from django.db.models import Case, CharField, Exists, F, OuterRef, Q, QuerySet, Subquery, TextField, Value, When
from django.db.models.functions import Coalesce

from impex.choices import FileKind, FileStatus, JobStatus
from impex.models import Connection, ImportFile, ImportJob

# The shown words besides the stored ones (queued, running, completed, failed, errored, cancelled).
WAITING = "waiting"
COMPLETED_WITH_ERRORS = "completed with errors"
SHOWN_STATUSES = (
    JobStatus.QUEUED.value,
    JobStatus.RUNNING.value,
    JobStatus.COMPLETED.value,
    COMPLETED_WITH_ERRORS,
    WAITING,
    JobStatus.FAILED.value,
    JobStatus.ERRORED.value,
    JobStatus.CANCELLED.value,
)
# The colour family of each shown status (CSS class impex-badge-<tone>).
TONES = {
    JobStatus.QUEUED: "busy",
    JobStatus.RUNNING: "busy",
    JobStatus.COMPLETED: "ok",
    COMPLETED_WITH_ERRORS: "warn",
    WAITING: "warn",
    JobStatus.FAILED: "bad",
    JobStatus.ERRORED: "bad",
    JobStatus.CANCELLED: "warn",  # a person stopped it: nothing failed, but it is not done
}


def _waiting_files():
    """The data files of the outer job that still wait (for a sequence, or the full-refresh window), oldest first."""
    return ImportFile.objects.filter(job=OuterRef("pk"), kind=FileKind.DATA, status=FileStatus.WAITING).order_by(
        "sequence", "pk"
    )


def _refused_rows():
    """The files the outer job was given or imported that refused rows."""
    return ImportFile.objects.filter(Q(job=OuterRef("pk")) | Q(processed_by=OuterRef("pk")), failed__gt=0)


def jobs_with_shown_status(jobs: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
    """Annotate jobs with shown_status (one of SHOWN_STATUSES) and waiting_reason (its first waiting file's, or "")."""
    return jobs.annotate(
        waiting_reason=Coalesce(Subquery(_waiting_files().values("message")[:1]), Value(""), output_field=TextField()),
        shown_status=Case(
            When(Q(status=JobStatus.COMPLETED) & Exists(_waiting_files()), then=Value(WAITING)),
            When(Q(status=JobStatus.COMPLETED) & Exists(_refused_rows()), then=Value(COMPLETED_WITH_ERRORS)),
            default=F("status"),
            output_field=CharField(),
        ),
    )


def jobs_of_shown_status(jobs: QuerySet[ImportJob], shown: str) -> QuerySet[ImportJob]:
    """Return the jobs shown with the status shown (as jobs_with_shown_status tells them apart).

    Written on the stored status (and the files only for a completed job), so that the list of a year of jobs
    reads one status off its index (importjob_status_created) instead of working out every job's shown status.
    """
    waiting, refused = Exists(_waiting_files()), Exists(_refused_rows())
    if shown == WAITING:
        return jobs.filter(waiting, status=JobStatus.COMPLETED)
    if shown == COMPLETED_WITH_ERRORS:
        return jobs.filter(~waiting & refused, status=JobStatus.COMPLETED)
    if shown == JobStatus.COMPLETED:
        return jobs.filter(~waiting & ~refused, status=JobStatus.COMPLETED)
    return jobs.filter(status=shown)


def job_shown_status(job: ImportJob) -> str:
    """Return one job's shown status (from its annotation when it has one)."""
    if not hasattr(job, "shown_status") and job.status != JobStatus.COMPLETED:
        job.shown_status, job.waiting_reason = job.status, ""  # only a completed job is told apart
    if not hasattr(job, "shown_status"):
        annotated = jobs_with_shown_status(ImportJob.objects.filter(pk=job.pk)).values_list(
            "shown_status", "waiting_reason"
        )
        job.shown_status, job.waiting_reason = annotated.first() or (job.status, "")
    return job.shown_status


def shown_status_label(job: ImportJob) -> str:
    """Say a job's shown status in words, as a status reads ("Completed with errors", "Waiting for sequence 41");
    a queued job says it waits for a worker, a dry run says "dry run: ..."."""
    shown = job_shown_status(job)
    if job.status == JobStatus.QUEUED:
        return "queued: waiting for a worker" if not job.started_at else "queued again: waiting for a worker"
    if job.dry_run:
        done = "dry run: done, rows refused, nothing written" if shown == COMPLETED_WITH_ERRORS else ""
        return (
            done
            or {
                JobStatus.RUNNING: "dry run: running",
                JobStatus.COMPLETED: "dry run: done, nothing written",
                JobStatus.FAILED: "dry run: done, problems found, nothing written",
                JobStatus.ERRORED: "dry run: errored",
                JobStatus.CANCELLED: "dry run: cancelled, nothing written",
            }[job.status]
        )
    if job.status == JobStatus.CANCELLED:
        return "Cancelled: run it again to finish it"
    if shown == WAITING and job.waiting_reason:
        reason = job.waiting_reason
        shown = reason if reason.startswith(f"{WAITING} ") else f"{WAITING}: {reason}"
    return shown[:1].upper() + shown[1:]


def shown_status_tone(job: ImportJob) -> str:
    """Return the colour family of a job's shown status: ok, warn, bad or busy."""
    if job.dry_run and job.status == JobStatus.FAILED:
        return "warn"  # a dry run that found problems wrote nothing: nothing failed
    return TONES.get(job_shown_status(job), "busy")


@dataclass(frozen=True)
class WaitRelease:
    """What releasing a connection's sequence wait does: the sequences it skips for good, the files that go in."""

    connection: Connection
    expected: int | None
    skipped: range
    going_in: list[ImportFile]
    still_waiting: list[ImportFile]

    @property
    def skipped_text(self) -> str:
        """Name the sequences skipped: "sequence 40", "sequences 40 and 41", "sequences 40 to 45"."""
        gap = self.skipped
        if not gap:
            return ""
        if len(gap) == 1:
            return f"sequence {gap[0]}"
        return f"sequences {gap[0]} {'and' if len(gap) == 2 else 'to'} {gap[-1]}"

    @property
    def first_sequence(self) -> int | None:
        return self.going_in[0].sequence if self.going_in else None


def sequence_wait_release(*, connection: Connection) -> WaitRelease:
    """Tell what "Release the sequence wait" would do now: expect the oldest waiting file next (skipping the
    sequences before it), import it and those that follow it without a gap; files after a further gap still wait."""
    waiting = list(
        ImportFile.objects.filter(
            connection=connection, status=FileStatus.WAITING, sequence__isnull=False, job__dry_run=False
        ).order_by("sequence", "pk")
    )
    expected = Connection.objects.filter(pk=connection.pk).values_list("next_expected_sequence", flat=True).first()
    if not waiting:
        return WaitRelease(connection, expected, range(0), [], [])
    first = waiting[0].sequence
    skipped = range(expected, first) if expected is not None and expected < first else range(0)
    going_in, next_sequence = [], first
    for f in waiting:
        if f.sequence > next_sequence:
            break
        going_in.append(f)
        next_sequence = f.sequence + 1
    return WaitRelease(connection, expected, skipped, going_in, waiting[len(going_in) :])
