"""Reads of impex: job and file reports as plain data."""

from django.db.models import Q

from impex.choices import FileKind, FileStatus
from impex.models import ImportFile, ImportJob


def file_report(import_file: ImportFile, *, max_errors: int = 100) -> dict:
    """Return one file's result in the JSON shape of SPEC section 9."""
    errors = [
        {"row": e.row, "column": e.column, "value": e.value, "message": e.message}
        for e in import_file.errors.order_by("row", "id")[:max_errors]
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
