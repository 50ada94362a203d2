"""Load the demo: an admin login, two connections with sample files in their inboxes, imported now."""

from django.core.management.base import BaseCommand, CommandError

from impex.choices import FileStatus
from impex.demo import ADMIN_URL, ADMIN_USERNAME, DEMO_CONNECTIONS, demo_admin_save, demo_connection_save, demo_import
from impex.exceptions import ConfigurationError
from impex.management.output import print_json

COUNTS = ("created", "updated", "unchanged", "retired", "failed")


class Command(BaseCommand):
    help = "Load the demo data set (idempotent): admin login, connections acme-pos and kore-erp, sample files."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Password for the 'admin' user (default: a new random one each run).")
        parser.add_argument("--no-import", action="store_true", help="Set everything up but import nothing.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        password, admin_created = demo_admin_save(password=opts["password"])
        connections, jobs = [], []
        for demo in DEMO_CONNECTIONS:
            try:
                conn, created = demo_connection_save(demo=demo)
            except ConfigurationError as exc:
                raise CommandError(f"{demo.code}: {exc}") from exc
            connections.append({"code": conn.code, "created": created, "inbox": conn.inbox})
            self.stdout.write(f"{'Created' if created else 'Updated'} connection {conn.code}; inbox: {conn.inbox}")
            if not opts["no_import"]:
                self.stdout.write(f"Importing the sample files of {conn.code}...")
                report = demo_import(connection=conn, demo=demo)
                jobs.append(report)
                self._summary(report)
        self.stdout.write(f"Admin login: {ADMIN_USERNAME} / {password} at {ADMIN_URL}")
        if opts["json"]:
            print_json(
                self,
                {
                    "admin": {"username": ADMIN_USERNAME, "password": password, "created": admin_created},
                    "url": ADMIN_URL,
                    "connections": connections,
                    "jobs": jobs,
                },
            )
        bad = [
            f"{f['name']}: {f['status']}"
            for report in jobs
            for f in report["files"]
            if f["status"] not in (FileStatus.IMPORTED, FileStatus.DUPLICATE)
        ]
        errored = [f"job #{r['job']}: {r['error']}" for r in jobs if r["error"]]
        if bad or errored:
            raise CommandError("the demo import did not complete: " + "; ".join(errored + bad))

    def _summary(self, report: dict) -> None:
        """Print what one import job did, file by file."""
        self.stdout.write(f"Import job #{report['job']} ({report['connection']}): {report['status']}")
        for f in report["files"]:
            counts = ", ".join(f"{f[k]} {k}" for k in COUNTS)
            self.stdout.write(f"  {f['name']}: {f['status']} ({f['descriptor'] or '-'}): {counts}")
            for e in f["errors"][:5]:
                where = f"row {e['row']}" if e["row"] is not None else "file"
                self.stdout.write(f"    {where}{', column ' + e['column'] if e['column'] else ''}: {e['message']}")
