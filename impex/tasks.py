"""django-q2 tasks of impex: thin adapters that take ids and call the runner."""

from impex.runner import run_job


def import_job_run(job_id: int) -> str:
    """Run (or resume) an import job; return its final status."""
    return run_job(job_id).status
