"""Reads of impex: job and file reports as plain data."""

from impex.models import ImportJob


def file_report(import_file, *, max_errors: int = 100) -> dict:
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


def job_report(job: ImportJob, *, max_errors: int = 100) -> dict:
    """Return a job's files in processing order with their results."""
    files = sorted(
        job.files.select_related("descriptor"),
        key=lambda f: (f.finished_at is None, f.finished_at.timestamp() if f.finished_at else 0, f.pk),
    )
    return {"job": job.pk, "status": job.status, "files": [file_report(f, max_errors=max_errors) for f in files]}
