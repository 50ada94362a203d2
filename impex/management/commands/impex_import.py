"""Import files or zips now, in order (SPEC section 9)."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from impex.choices import FileStatus, JobSource
from impex.management.output import print_json
from impex.models import Connection, DataGroup
from impex.runner import run_job
from impex.selectors import job_report
from impex.services.jobs import job_create


class Command(BaseCommand):
    help = "Import files or zip archives now, in the order SPEC section 4 sets."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="Files or zip archives to import.")
        parser.add_argument(
            "--connection", help="Code of the connection the files come from (default: from the names)."
        )
        parser.add_argument("--group", help="Code of the import group whose descriptors the files are matched to.")
        parser.add_argument("--dry-run", action="store_true", help="Check and count everything, write nothing.")
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
        job = run_job(job.pk)
        report = job_report(job, max_errors=100)
        for f in report["files"]:
            counts = ", ".join(f"{f[k]} {k}" for k in ("created", "updated", "unchanged", "retired", "failed"))
            self.stdout.write(f"{f['name']}: {f['status']} ({f['descriptor'] or '-'}): {counts}")
            for e in f["errors"][:10]:
                where = f"row {e['row']}" if e["row"] is not None else "file"
                column = f", column {e['column']}" if e["column"] else ""
                self.stdout.write(f"  {where}{column}: {e['message']}")
            if len(f["errors"]) > 10:
                self.stdout.write(f"  ... {f['failed']} rows refused in all (see the job in the admin)")
        if job.error:
            self.stderr.write(f"Job #{job.pk}: {job.error}")
        self.stdout.write(f"Job #{job.pk}: {job.status}{' (dry run: nothing written)' if job.dry_run else ''}")
        if opts["json"]:
            print_json(self, {"files": report["files"]})
        ok = job.status != "errored" and all(
            f["status"] in (FileStatus.IMPORTED, FileStatus.DUPLICATE) for f in report["files"]
        )
        if not ok:
            sys.stdout.flush()
            sys.exit(1)
