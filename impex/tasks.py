"""django-q2 tasks of impex: thin adapters that take ids and call the runner or a service."""

from impex.choices import ExportTrigger
from impex.models import Connection
from impex.runner import run_job
from impex.services.cache import cache_clean
from impex.services.export_runs import export_run
from impex.services.export_runs import export_runs_sweep as fail_dead_runs
from impex.services.inbox import inbox_scan as scan
from impex.services.lifecycle import jobs_requeue
from impex.services.problems import problems_mail_unsent
from impex.services.purge import history_purge as purge
from impex.services.scan_loop import scan_loop_run
from impex.services.waits import wait_alerts_send
from impex.services.webhooks import webhooks_deliver_task


def import_job_run(job_id: int) -> str:
    """Run (or resume, or help with) an import job; a job already ended is left alone. Return its status."""
    return run_job(job_id, wait=False).status


def import_jobs_requeue() -> list[int]:
    """Queue again the jobs whose worker died, that were set aside, or that no worker took; return their ids."""
    return jobs_requeue()


def sequence_wait_alerts() -> int:
    """Raise a problem for files waiting long for a missing sequence, and send the problems' mails that failed.

    Return how many sequence-wait problems are new.
    """
    raised = wait_alerts_send()
    problems_mail_unsent()
    return raised


def inbox_scan(connection_id: int, by: str = "") -> str:
    """Scan a connection's inbox and queue a job for what arrived (its schedule's task, and "Sync now" by a user)."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return f"connection {connection_id} no longer exists"
    return scan(connection=connection, by=by).summary


def inbox_scan_loop() -> str:
    """Scan the inboxes of the connections scanned every few seconds, for about a minute (the loop's schedule)."""
    return scan_loop_run().summary


def export_group_run(group_id: int, trigger: str = ExportTrigger.SCHEDULE, by: str = "", reason: str = "") -> str:
    """Export a group's file to its destination (a run that finds the group busy is skipped); return its status."""
    return export_run(group_id=group_id, trigger=trigger, by=by, reason=reason).status


def export_runs_sweep() -> str:
    """Fail the export runs whose worker died (queueing the schedule's run again) and clean the temporary files."""
    failed = fail_dead_runs()
    removed = cache_clean()
    return f"{len(failed)} export run(s) failed, {len(removed)} temporary folder(s) removed"


def webhooks_deliver(ticket: str | None = None) -> str:
    """POST the outbound webhook deliveries that are due, in a bounded pass (the every-minute schedule, and events)."""
    return webhooks_deliver_task(ticket=ticket)


def history_purge() -> str:
    """Delete the history older than IMPEX_RETENTION_DAYS (the daily schedule); return what went."""
    report = purge()
    return ", ".join(f"{count} {kind}" for kind, count in report.removed.items() if count) or "nothing to purge"
