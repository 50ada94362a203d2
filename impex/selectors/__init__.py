"""Reads of impex: job and file reports as plain data, what the home page shows; the other admin pages' in pages."""

from dataclasses import dataclass

from django.db.models import BigIntegerField, Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from impex.choices import FileKind, FileStatus
from impex.models import Connection, ImportFile, ImportJob
from impex.registry import sync_logs
from impex.selectors.statuses import job_shown_status, jobs_with_shown_status, shown_status_label, shown_status_tone


def file_report(import_file: ImportFile, *, max_errors: int = 100) -> dict:
    """Return one file's result in the JSON shape of SPEC section 9."""
    clean = import_file.status in (FileStatus.IMPORTED, FileStatus.DUPLICATE) and not import_file.failed
    errors = [
        {"row": e.row, "column": e.column, "value": e.value, "message": e.message}
        for e in ([] if clean else import_file.errors.order_by("row", "id")[:max_errors])
    ]
    return {
        "name": import_file.name,
        "descriptor": import_file.descriptor.code if import_file.descriptor else None,
        "status": import_file.status,
        "created": import_file.created,
        "updated": import_file.updated,
        "unchanged": import_file.unchanged,
        "retired": import_file.retired,
        "failed": import_file.failed,
        "errors": errors,
    }


def job_files(job: ImportJob):
    """Return the files a job reports: its own and those it imported for earlier jobs; zips only when refused."""
    return (
        ImportFile.objects.filter(Q(job=job) | Q(processed_by=job))
        .exclude(kind=FileKind.ARCHIVE, status__in=[FileStatus.UNPACKED])
        .exclude(~Q(job=job), status=FileStatus.WAITING)
        .select_related("descriptor")
    )


def job_report(job: ImportJob, *, max_errors: int = 100) -> dict:
    """Return a job's files in processing order with their results."""
    files = sorted(
        job_files(job),
        key=lambda f: (f.finished_at is None, f.finished_at.timestamp() if f.finished_at else 0, f.pk),
    )
    return {
        "job": job.pk,
        "status": job.status,
        "files": [file_report(f, max_errors=max_errors) for f in files],
    }


COUNT_NAMES = ("created", "updated", "unchanged", "retired", "failed")


@dataclass(frozen=True)
class JobSummary:
    """A job as the hub's home page lists it: the job (with connection and group) and its non-zero row counts."""

    job: ImportJob
    file_count: int
    counts: list[tuple[str, int]]
    status: str  # the shown status (impex.selectors.statuses)
    status_label: str
    status_tone: str


@dataclass(frozen=True)
class ConnectionSummary:
    """What the hub's home page says of one connection."""

    connection: Connection
    last_job: JobSummary | None
    waiting_files: int
    open_errors: int


def jobs_with_file_totals(jobs: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
    """Annotate jobs with file_count (their data files) and sum_<count> (their files' row counts).

    Subqueries, not a join with GROUP BY: a page of the newest jobs reads them off the created_at index and counts
    the files of those jobs only, however many jobs a year of deliveries has left.
    """
    files = ImportFile.objects.filter(job=OuterRef("pk"), kind=FileKind.DATA).order_by().values("job")
    return jobs.annotate(
        file_count=Coalesce(Subquery(files.annotate(n=Count("pk")).values("n")[:1]), 0),
        **{
            f"sum_{name}": Coalesce(
                Subquery(files.annotate(total=Sum(name)).values("total")[:1], output_field=BigIntegerField()), 0
            )
            for name in COUNT_NAMES
        },
    )


def _job_summaries(jobs, *, limit: int | None = None) -> list[JobSummary]:
    """Return summaries of jobs (the first limit of them), fetched with their relations and counts in one query."""
    jobs = jobs_with_file_totals(jobs_with_shown_status(jobs.select_related("connection", "group")))[:limit]
    return [
        JobSummary(
            job=job,
            file_count=job.file_count,
            counts=[(name, getattr(job, f"sum_{name}")) for name in COUNT_NAMES if getattr(job, f"sum_{name}")],
            status=job_shown_status(job),
            status_label=shown_status_label(job),
            status_tone=shown_status_tone(job),
        )
        for job in jobs
    ]


def jobs_latest(*, limit: int = 10) -> list[JobSummary]:
    """Return the latest import jobs with their file and row counts."""
    return _job_summaries(ImportJob.objects.order_by("-created_at", "-id"), limit=limit)


def connection_summaries() -> list[ConnectionSummary]:
    """Return each connection with its last job, its files waiting or held, and its open sync errors."""
    last_job = ImportJob.objects.filter(connection=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
    connections = list(Connection.objects.annotate(last_job_id=Subquery(last_job)).order_by("code"))
    job_ids = [c.last_job_id for c in connections if c.last_job_id]
    jobs = {s.job.pk: s for s in _job_summaries(ImportJob.objects.filter(pk__in=job_ids))}
    waiting = dict(
        ImportFile.objects.filter(status=FileStatus.WAITING, connection__isnull=False)
        .values_list("connection")
        .annotate(n=Count("pk"))
        .order_by()
    )
    errors = sync_logs().open_error_counts()
    return [
        ConnectionSummary(
            connection=c,
            last_job=jobs.get(c.last_job_id),
            waiting_files=waiting.get(c.pk, 0),
            open_errors=errors.get(c.pk, 0),
        )
        for c in connections
    ]
