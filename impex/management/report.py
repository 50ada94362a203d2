"""Print a job's outcome the way impex_import and impex_job do."""

from impex.management.output import job_succeeded, report_files
from impex.models import ImportJob
from impex.selectors import job_files, job_report


def job_print(command, job: ImportJob) -> dict:
    """Print each file's result, the job's error and status; return the report with "ok" (exit 0 or 1)."""
    report = job_report(job, max_errors=100)
    report_files(command, report["files"], messages={f.name: f.message for f in job_files(job)})
    if job.error:
        command.stderr.write(f"Job #{job.pk}: {job.error}")
    dry = " (dry run: nothing written)" if job.dry_run else ""
    command.stdout.write(f"Job #{job.pk}: {job.status}{dry}")
    report["ok"] = job_succeeded(job, report["files"])
    return report
