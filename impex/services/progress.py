"""Read how far an import job has got, for its live page: files and rows done, speed, the file in work."""

from django.db.models import Q
from django.utils import timezone

from config.adminkit import format_duration
from impex.choices import FILE_FINAL, JOB_STOPPED, FileKind, FileStatus
from impex.models import ImportFile, ImportJob
from impex.selectors.statuses import job_shown_status, shown_status_label, shown_status_tone

MAX_FILES_SHOWN = 500
COUNTS = ("created", "updated", "unchanged", "retired", "failed")


def file_status_label(f: ImportFile, *, dry_run: bool) -> str:
    """Say a file's status in words (what a dry run found would happen)."""
    if dry_run and f.status == FileStatus.IMPORTED:
        return "would be imported"
    if dry_run and f.status == FileStatus.REJECTED:
        return "would be rejected"
    return f.get_status_display()


def job_files(job: ImportJob) -> list[ImportFile]:
    """Return the files a job was given or imported (zips first, then in the order they were added)."""
    files = ImportFile.objects.filter(Q(job=job) | Q(processed_by=job)).select_related("descriptor", "connection")
    return list(files.order_by("kind", "pk")[:MAX_FILES_SHOWN])


def job_progress(*, job: ImportJob, files: list[ImportFile] | None = None) -> dict:
    """Return what the job page shows live: files and rows done, rows per second, the file in work, time."""
    files = job_files(job) if files is None else files
    data = [f for f in files if f.kind == FileKind.DATA]
    unpacking = any(f.kind == FileKind.ARCHIVE and f.status == FileStatus.QUEUED for f in files)
    rows_done = sum(f.rows_done for f in data)
    rows_total = sum(f.rows_total for f in data)
    end = job.finished_at or timezone.now()
    elapsed = (end - job.started_at).total_seconds() if job.started_at else 0.0
    current = next((f.name for f in data if f.status == FileStatus.RUNNING), "")
    finished = job.status in JOB_STOPPED
    return {
        "job": job.pk,
        "status": job.status,
        "shown_status": job_shown_status(job),
        "status_label": shown_status_label(job),
        "status_tone": shown_status_tone(job),
        "dry_run": job.dry_run,
        "finished": finished,
        "error": job.error,
        "unpacking": unpacking,
        "files_done": sum(1 for f in data if f.status in FILE_FINAL),
        "files_total": len(data),
        "rows_done": rows_done,
        "rows_total": rows_total,
        "rows_per_second": round(rows_done / elapsed) if elapsed > 0 else 0,
        "current_file": "" if finished else current,
        "elapsed_seconds": round(elapsed, 1),
        "elapsed": format_duration(end - job.started_at) if job.started_at else "-",
        "files": [
            {
                "id": f.pk,
                "name": f.name,
                "kind": f.kind,
                "status": f.status,
                "status_label": file_status_label(f, dry_run=job.dry_run),
                "message": f.message,
                "rows_done": f.rows_done,
                "rows_total": f.rows_total,
                **{name: getattr(f, name) for name in COUNTS},
            }
            for f in files
        ],
    }
