"""Import files or zips now, in order, or queue them for the cluster (SPEC section 9)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from impex.choices import JobSource
from impex.management.output import exit_with, print_json
from impex.management.report import job_print
from impex.models import Connection, DataGroup
from impex.runner import run_job
from impex.selectors import job_report
from impex.services.jobs import job_create
from impex.services.lifecycle import job_enqueue
from impex.services.webhooks import webhooks_deliver_now


class Command(BaseCommand):
    help = "Import files or zip archives now, in the order SPEC section 4 sets (or queue them with --queue)."
    requires_system_checks = []  # run every few minutes: Django's checks (~0.3 s) are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="Files or zip archives to import.")
        parser.add_argument(
            "--connection", help="Code of the connection the files come from (default: from the names)."
        )
        parser.add_argument("--group", help="Code of the import group whose descriptors the files are matched to.")
        parser.add_argument("--dry-run", action="store_true", help="Check and count everything, write nothing.")
        parser.add_argument(
            "--queue", action="store_true", help="Create the job and queue it for the cluster instead of running it."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        connection = group = None
        if opts["connection"]:
            connection = Connection.objects.filter(code=opts["connection"]).first()
            if connection is None:
                raise CommandError(f"no connection is called '{opts['connection']}'")
        if opts["group"]:
            group = DataGroup.objects.filter(code=opts["group"]).first()
            if group is None:
                raise CommandError(f"no import group is called '{opts['group']}'")
        paths = [Path(p) for p in opts["paths"]]
        for p in paths:
            if not p.is_file():
                raise CommandError(f"{p}: no such file")
        job = job_create(
            paths=paths, connection=connection, group=group, dry_run=opts["dry_run"], source=JobSource.COMMAND
        )
        if opts["queue"]:
            # What the job holds as it is queued: a worker may take it the moment it is queued, and then what it
            # printed depended on who was faster.
            report = job_report(job)
            with transaction.atomic():
                job_enqueue(job=job, reason="by impex_import --queue")
            for f in report["files"]:
                self.stdout.write(f"{f['name']}: {f['status']}")
            self.stdout.write(f"Job #{job.pk}: queued (run it with `manage.py impex_job {job.pk}` or the cluster)")
            if opts["json"]:
                print_json(self, {"job": job.pk, "files": report["files"]})
            exit_with(all(f["status"] == "queued" for f in report["files"]))
            return
        job = run_job(job.pk)
        webhooks_deliver_now()
        report = job_print(self, job)
        if opts["json"]:
            print_json(self, {"files": report["files"]})
        exit_with(report["ok"])
