"""Tell a connection's contacts by e-mail when a job rejected a file or refused rows."""

import csv
import io

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q
from django.template.defaultfilters import pluralize

from impex.choices import FileKind, FileStatus
from impex.formats import neutralise_formula
from impex.models import ImportFile, ImportJob, RowError

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


def job_errors_mail(*, job_id: int) -> int:
    """E-mail each connection's contacts about the job's rejected files and refused rows; return mails sent."""
    job = ImportJob.objects.select_related("connection").get(pk=job_id)
    files = (
        ImportFile.objects.filter(Q(job=job) | Q(processed_by=job))
        .filter(Q(status=FileStatus.REJECTED) | Q(failed__gt=0))
        .exclude(kind=FileKind.ARCHIVE, status=FileStatus.UNPACKED)
        .select_related("connection")
        .order_by("id")
    )
    by_conn: dict = {}
    for f in files:
        # A file rejected before its connection was known (a bad zip, a name nobody claims) is the job's.
        conn = f.connection or job.connection
        if conn is not None:
            by_conn.setdefault(conn.pk, (conn, []))[1].append(f)
    sent = 0
    limit = settings.IMPEX_MAIL_MAX_ERROR_ROWS
    for conn, bad in by_conn.values():
        if not conn.contact_list:
            continue
        lines = [
            f"- {f.name}: rejected: {f.message}"
            if f.status == FileStatus.REJECTED
            else f"- {f.name}: {f.failed} row{pluralize(f.failed)} refused"
            for f in bad
        ]
        attachment, written = rows_in_error_csv(files=bad, limit=limit)
        total = RowError.objects.filter(file__in=bad).count()
        more = (
            f"\nThe attachment holds the first {written:,} of {total:,} errors; the job's page has them all.\n"
            if total > written
            else "\nThe rows in error are attached as CSV.\n"
        )
        message = EmailMessage(
            subject=f"[impex-hub] {conn.code}: import job #{job.pk} has errors",
            body="Import job #{} for {}:\n\n{}\n{}".format(job.pk, conn.code, "\n".join(lines), more),
            to=conn.contact_list,
        )
        message.attach(f"rows-in-error-job-{job.pk}-{conn.code}.csv", attachment, "text/csv")
        message.send(fail_silently=True)
        sent += 1
    return sent
