"""Run or resume an import job in this process, as a cluster worker does, or cancel it (SPEC section 9)."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from impex.exceptions import JobNotCancellable
from impex.management.output import exit_with, print_json
from impex.management.report import job_print
from impex.models import ImportJob
from impex.runner import run_job
from impex.services.lifecycle import job_cancel
from impex.services.webhooks import webhooks_deliver_now


class Command(BaseCommand):
    help = (
        "Run or resume import job ID here. Several processes on one job share its chunks; "
        "a finished job is reported, not run again; a cancelled one goes on where it stopped. --cancel cancels it."
    )
    requires_system_checks = []  # a helper of a big file starts this: Django's checks are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int, metavar="ID", help="The import job's id.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
        parser.add_argument(
            "--cancel",
            action="store_true",
            help="Cancel the job if it is queued or running (its workers stop at their next chunk; what it imported "
            "stays, and running it again finishes it). Exit 0 when it is cancelled (now or before), 1 when it had "
            "ended otherwise (nothing changed).",
        )
        # The runner of a big file starts helpers with this: they only help it, and stop when it is gone.
        parser.add_argument("--helper-of", type=int, metavar="PID", help=argparse.SUPPRESS)

    def handle(self, *args, **opts):
        job_id = opts["job_id"]
        if not ImportJob.objects.filter(pk=job_id).exists():
            raise CommandError(f"no import job #{job_id}")
        if opts["cancel"]:
            return self.cancel(job_id, as_json=opts["json"])
        job = run_job(job_id, rerun=True, helper_of=opts["helper_of"])
        if not opts["helper_of"]:
            webhooks_deliver_now()
        report = job_print(self, job)
        if opts["json"]:
            print_json(self, {"job": job.pk, "files": report["files"]})
        exit_with(report["ok"])

    def cancel(self, job_id: int, *, as_json: bool) -> None:
        """Cancel the job; say so (exit 0), or say why not (exit 1: it had ended, nothing changed)."""
        try:
            cancelled = job_cancel(job_id=job_id, by="impex_job --cancel")
        except JobNotCancellable as exc:
            message, ok = str(exc), False
        else:
            message = f"import job #{job_id} " + (
                "is cancelled: its workers stop at their next chunk; running it again finishes it"
                if cancelled
                else "was cancelled already; nothing changed"
            )
            ok = True
        status = ImportJob.objects.filter(pk=job_id).values_list("status", flat=True).get()
        self.stdout.write(message)
        if as_json:
            print_json(self, {"job": job_id, "status": status, "cancelled": ok, "message": message})
        exit_with(ok)
