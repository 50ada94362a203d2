"""Run or resume an import job in this process, as a cluster worker does (SPEC section 9)."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from impex.management.output import exit_with, print_json
from impex.management.report import job_print
from impex.models import ImportJob
from impex.runner import run_job
from impex.services.webhooks import webhooks_deliver_now


class Command(BaseCommand):
    help = (
        "Run or resume import job ID here. Several processes on one job share its chunks; "
        "a finished job is reported, not run again."
    )
    requires_system_checks = []  # a helper of a big file starts this: Django's checks are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int, metavar="ID", help="The import job's id.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
        # The runner of a big file starts helpers with this: they only help it, and stop when it is gone.
        parser.add_argument("--helper-of", type=int, metavar="PID", help=argparse.SUPPRESS)

    def handle(self, *args, **opts):
        job_id = opts["job_id"]
        if not ImportJob.objects.filter(pk=job_id).exists():
            raise CommandError(f"no import job #{job_id}")
        job = run_job(job_id, rerun=True, helper_of=opts["helper_of"])
        if not opts["helper_of"]:
            webhooks_deliver_now()
        report = job_print(self, job)
        if opts["json"]:
            print_json(self, {"job": job.pk, "files": report["files"]})
        exit_with(report["ok"])
