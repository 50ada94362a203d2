"""Import jobs that failed, errored or have errors: their problems and the mail that tells the contacts."""

import csv
import io

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q
from django.template.defaultfilters import pluralize
from django.urls import reverse

from impex.choices import FileKind, FileStatus, JobStatus, ProblemKind
from impex.formats import neutralise_formula
from impex.models import ImportFile, ImportJob, Problem, RowError
from impex.services import problems

ERRORS_CSV_COLUMNS = ("file", "row", "column", "value", "message", "external_id")


def rows_in_error_csv(*, files: list[ImportFile], limit: int) -> tuple[bytes, int]:
    """Write the refused rows and file rejections of files as CSV for a spreadsheet; return it and how many rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ERRORS_CSV_COLUMNS)
    names = {f.pk: f.name for f in files}
    written = 0
    errors = RowError.objects.filter(file_id__in=names).order_by("file_id", "row", "id")
    for e in errors.values_list("file_id", "row", "column", "value", "message", "external_id")[:limit].iterator():
        file_id, row, column, value, message, external_id = e
        cells = [names[file_id], "" if row is None else str(row), column, value, message, external_id]
        writer.writerow([neutralise_formula(c) for c in cells])  # opened in a spreadsheet: never run a formula
        written += 1
    return out.getvalue().encode("utf-8-sig"), written


def _files_in_error(job: ImportJob):
    return (
        ImportFile.objects.filter(Q(job=job) | Q(processed_by=job))
        .filter(Q(status=FileStatus.REJECTED) | Q(failed__gt=0))
        .exclude(kind=FileKind.ARCHIVE, status=FileStatus.UNPACKED)
        .select_related("connection")
        .order_by("id")
    )


def _by_connection(job: ImportJob, files) -> dict:
    by_conn: dict = {}
    for f in files:
        # A file rejected before its connection was known (a bad zip, a name nobody claims) is the job's.
        conn = f.connection or job.connection
        by_conn.setdefault(conn.pk if conn else None, (conn, []))[1].append(f)
    return by_conn


def _file_lines(files: list[ImportFile]) -> list[str]:
    return [
        f"- {f.name}: rejected: {f.message}"
        if f.status == FileStatus.REJECTED
        else f"- {f.name}: {f.failed} row{pluralize(f.failed)} refused"
        for f in files
    ]


def _job_key(job: ImportJob, conn) -> str:
    own = conn is None or conn.pk == job.connection_id
    return f"job:{job.pk}" if own else f"job:{job.pk}:{conn.code}"


def job_problems_report(*, job: ImportJob, status: str, error: str = "") -> None:
    """Raise a problem per connection for a job that failed, errored or has errors; else resolve theirs.

    Called inside the transaction that ends the job. A clean job of a connection resolves its earlier job problems,
    and its sequence-wait problem once no file waits any more.
    """
    files = list(_files_in_error(job))
    by_conn = _by_connection(job, files)
    if status != JobStatus.COMPLETED and not by_conn:
        by_conn[job.connection_id] = (job.connection, [])
    # (Only when there is a problem to raise: the first reverse() of a process loads every URL module.)
    url = reverse("admin:impex_importjob_change", args=[job.pk]) if by_conn else ""
    for conn, bad in by_conn.values():
        head = problems.JOB_HAS_ERRORS if status == JobStatus.COMPLETED else f"{status}{': ' + error if error else ''}"
        more = [f"... and {len(bad) - 20} more files"] if len(bad) > 20 else []
        lines = [f"import job #{job.pk} {head}", *_file_lines(bad[:20]), *more]
        problems.problem_raise(
            kind=ProblemKind.IMPORT_JOB, key=_job_key(job, conn), connection=conn, message="\n".join(lines), url=url
        )
    touched = set(
        ImportFile.objects.filter(Q(job=job) | Q(processed_by=job)).order_by().values_list("connection_id", flat=True)
    )
    touched.add(job.connection_id)
    if status == JobStatus.COMPLETED:
        # This job finished: its own problems of the connections it is clean for are over (it was run again).
        raised = [_job_key(job, conn) for conn, _ in by_conn.values()]
        own = Problem.objects.filter(kind=ProblemKind.IMPORT_JOB).filter(
            Q(key=f"job:{job.pk}") | Q(key__startswith=f"job:{job.pk}:")
        )
        problems.problem_resolve(problems=own.exclude(key__in=raised))
    for connection_id in touched - set(by_conn) - {None}:
        problems.problem_resolve(problems=_resolved_by_a_clean_job(connection_id))
    for connection_id in touched - {None}:
        waiting = ImportFile.objects.filter(
            connection_id=connection_id, status=FileStatus.WAITING, sequence__isnull=False, job__dry_run=False
        )
        if not waiting.exists():
            problems.problem_resolve(kind=ProblemKind.SEQUENCE_WAIT, connection=connection_id)


def _resolved_by_a_clean_job(connection_id: int):
    """Return the open job problems of a connection that its next clean job resolves.

    Those of jobs that ended with refused rows (completed) or rejected files (failed): the connection imports again,
    the sender having sent its data anew. A job that errored did not finish: its problem stays until it is run again
    and completes, or someone resolves it.
    """
    open_ones = Problem.objects.filter(kind=ProblemKind.IMPORT_JOB, connection_id=connection_id, resolved_at=None)
    job_ids = {pk: int(key.split(":")[1]) for pk, key in open_ones.values_list("pk", "key")}
    unfinished = set(
        ImportJob.objects.filter(pk__in=set(job_ids.values()))
        .exclude(status__in=(JobStatus.COMPLETED, JobStatus.FAILED))
        .values_list("pk", flat=True)
    )
    return open_ones.filter(pk__in=[pk for pk, job_id in job_ids.items() if job_id not in unfinished])


def job_problem_mail(*, problem, to: list[str]) -> EmailMessage | None:
    """Build the mail of an import job's problem: its rejected files and refused rows, attached as CSV."""
    parts = problem.key.split(":")
    job = ImportJob.objects.select_related("connection").filter(pk=int(parts[1])).first()
    if job is None:
        return None
    conn = problem.connection
    where = conn.code if conn is not None else "hub"
    bad = [f for f in _files_in_error(job) if (f.connection or job.connection) == conn]
    lines = _file_lines(bad)
    if job.status != JobStatus.COMPLETED:
        lines.insert(0, f"The job {job.status}{': ' + job.error if job.error else ''}.")
    what = "has errors" if bad else job.status
    body = "Import job #{} for {}:\n\n{}\n".format(job.pk, where, "\n".join(lines))
    message = EmailMessage(subject=f"[impex-hub] {where}: import job #{job.pk} {what}", to=to)
    if bad:
        limit = settings.IMPEX_MAIL_MAX_ERROR_ROWS
        attachment, written = rows_in_error_csv(files=bad, limit=limit)
        total = RowError.objects.filter(file__in=bad).count()
        body += (
            f"\nThe attachment holds the first {written:,} of {total:,} errors; the job's page has them all.\n"
            if total > written
            else "\nThe rows in error are attached as CSV.\n"
        )
        message.attach(f"rows-in-error-job-{job.pk}-{where}.csv", attachment, "text/csv")
    message.body = body + f"\nThe job's page: {problem.url}\n"
    return message
