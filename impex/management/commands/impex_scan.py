"""One pass over the inboxes, as the scheduler does it, importing what arrived here and now (SPEC section 9)."""

from django.core.management.base import BaseCommand, CommandError

from impex.management.output import exit_with, print_json
from impex.management.report import job_print
from impex.models import Connection
from impex.services.inbox import inbox_scan


class Command(BaseCommand):
    help = (
        "Scan the inboxes of the active connections (or one): take the files that have arrived into a job and "
        "import them now, in order; files still being written are left for the next pass."
    )
    requires_system_checks = []  # run every few minutes: Django's checks (~0.3 s) are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("--connection", metavar="CODE", help="Scan only this connection's inbox (even if off).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        if opts["connection"]:
            connections = list(Connection.objects.filter(code=opts["connection"]))
            if not connections:
                raise CommandError(f"no connection is called '{opts['connection']}'")
        else:
            connections = list(Connection.objects.filter(active=True).order_by("code"))
        payload, ok = [], True
        for connection in connections:
            result = inbox_scan(connection=connection, run_here=True)
            self.stdout.write(f"{connection.code}: {result.summary}")
            for name, why in result.left:
                self.stdout.write(f"  left for the next pass: {name}: {why}")
            files = []
            if result.job is not None:
                report = job_print(self, result.job)
                files = report["files"]
                ok = ok and report["ok"]
            if result.error:
                self.stderr.write(f"{connection.code}: {result.error}")
                ok = False
            payload.append(
                {"connection": connection.code, "job": result.job.pk if result.job else None, "files": files}
            )
        if opts["json"]:
            print_json(self, {"connections": payload})
        exit_with(ok)
