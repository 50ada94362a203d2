"""Tell a connection's contacts by e-mail when a job rejected a file or refused rows."""

from django.core.mail import send_mail
from django.db.models import Q
from django.template.defaultfilters import pluralize

from impex.choices import FileKind, FileStatus
from impex.models import ImportFile, ImportJob


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
    for conn, bad in by_conn.values():
        if not conn.contact_list:
            continue
        lines = [
            f"- {f.name}: rejected: {f.message}"
            if f.status == FileStatus.REJECTED
            else f"- {f.name}: {f.failed} row{pluralize(f.failed)} refused"
            for f in bad
        ]
        send_mail(
            subject=f"[impex-hub] {conn.code}: import job #{job.pk} has errors",
            message="Import job #{} for {}:\n\n{}\n".format(job.pk, conn.code, "\n".join(lines)),
            from_email=None,
            recipient_list=conn.contact_list,
            fail_silently=True,
        )
        sent += 1
    return sent
