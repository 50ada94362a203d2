"""Load the demo: an admin login, three connections with sample files in their inboxes, imported now."""

from django.core.management.base import BaseCommand, CommandError

from impex.choices import FileStatus
from impex.demo import (
    ADMIN_URL,
    DEMO_CONNECTIONS,
    RESET_HINT,
    DemoImport,
    demo_admin_save,
    demo_connection_save,
    demo_import,
)
from impex.exceptions import ConfigurationError
from impex.management.output import print_json
from impex.models import Connection, ImportJob
from impex.registry import demo_parts
from impex.selectors.statuses import shown_status_label

COUNTS = ("created", "updated", "unchanged", "retired", "failed")


class Command(BaseCommand):
    help = "Load the demo data set (idempotent): admin login, connections acme-pos, kore-erp and shop, sample files."

    def add_arguments(self, parser):
        password = parser.add_mutually_exclusive_group()
        password.add_argument(
            "--password", help="Set this password for 'admin' (default: a random one when 'admin' is created)."
        )
        password.add_argument(
            "--reset-password", action="store_true", help="Give 'admin' a new random password, even if it exists."
        )
        parser.add_argument("--url", default=ADMIN_URL, help=f"Admin URL to print (default: {ADMIN_URL}).")
        parser.add_argument("--no-import", action="store_true", help="Set everything up but import nothing.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        login = demo_admin_save(password=opts["password"], reset=opts["reset_password"])
        # The apps above impex add their part (orders: the exporter chain and its passes) through the registry.
        parts = demo_parts()
        for part in parts:
            self.stdout.write(part.set_up())
        connections, imports = [], []
        for demo in DEMO_CONNECTIONS:
            try:
                conn, created = demo_connection_save(demo=demo)
            except ConfigurationError as exc:
                raise CommandError(f"{demo.code}: {exc}") from exc
            entry = {"code": conn.code, "created": created, "inbox": conn.inbox, "imported_before": [], "job": None}
            connections.append(entry)
            self.stdout.write(f"{'Created' if created else 'Updated'} connection {conn.code}; inbox: {conn.inbox}")
            scans = f"the cluster scans it: {conn.scan_every}" if conn.scan_enabled and conn.active else "scans are off"
            self.stdout.write(f"  new files dropped there are imported: {scans} ('Sync now' in the admin: at once)")
            if not opts["no_import"]:
                result = demo_import(connection=conn, demo=demo)
                entry["imported_before"] = list(result.imported_before)
                self._imported_before(result, total=len(demo.files))
                if result.report is not None:
                    entry["job"] = result.report["job"]
                    imports.append(result.report)
                    self._summary(result.report)
        shown = {part.name: part.run() if not opts["no_import"] else {} for part in parts}
        if any(shown.values()):
            # The platform's later files: one exported order amended, one cancelled; the exporters send them again.
            for demo, entry in zip(DEMO_CONNECTIONS, connections, strict=True):
                if not demo.later_files:
                    continue
                conn = Connection.objects.get(code=demo.code)
                result = demo_import(connection=conn, demo=demo, later=True)
                self._imported_before(result, total=len(demo.later_files), kind="later sample")
                entry["later_job"] = None
                if result.report is not None:
                    entry["later_job"] = result.report["job"]
                    imports.append(result.report)
                    self._summary(result.report)
            shown = {part.name: part.run() for part in parts}
        for part in parts:
            if shown[part.name]:
                self.stdout.write(
                    f"{part.title}: " + ", ".join(f"{key} {state}" for key, state in shown[part.name].items())
                )
        if login.password is not None:
            self.stdout.write(f"Admin login: {login.username} / {login.password} at {opts['url']}")
        else:
            self.stdout.write(
                f"Admin login: {login.username} at {opts['url']}; its password is unchanged, and no longer the one "
                f"impex_demo generated. For a new random one: {RESET_HINT}"
            )
        if opts["json"]:
            print_json(
                self,
                {
                    "admin": {
                        "username": login.username,
                        "password": login.password,
                        "created": login.created,
                        "password_changed": login.password_changed,
                    },
                    "url": opts["url"],
                    "connections": connections,
                    "jobs": imports,
                    **shown,
                },
            )
        done = (FileStatus.IMPORTED, FileStatus.DUPLICATE)
        bad = [f"{f['name']}: {f['status']}" for r in imports for f in r["files"] if f["status"] not in done]
        # A failed job's error names its files again: only a job whose files all went in says more than they do.
        errored = [
            f"job #{r['job']}: {r['error']}"
            for r in imports
            if r["error"] and all(f["status"] in done for f in r["files"])
        ]
        if bad or errored:
            raise CommandError("the demo import did not complete: " + "; ".join(bad + errored))

    def _imported_before(self, result: DemoImport, *, total: int, kind: str = "sample") -> None:
        """Say which sample files are not imported again, or that the import starts."""
        done = len(result.imported_before)
        jobs = ", ".join(f"#{pk}" for pk in result.earlier_jobs)
        where = f" ({'job' if len(result.earlier_jobs) == 1 else 'jobs'} {jobs})" if jobs else ""
        if done == total:
            files = f"the {kind} file was" if total == 1 else f"the {total} {kind} files were"
            self.stdout.write(f"{result.connection}: {files} imported before{where}; nothing to do")
        elif done:
            self.stdout.write(
                f"{result.connection}: {done} of the {total} {kind} files were imported before{where}; "
                f"importing the other {total - done}..."
            )
        else:
            self.stdout.write(f"Importing the {kind} files of {result.connection}...")

    def _summary(self, report: dict) -> None:
        """Print what one import job did, file by file."""
        job = ImportJob.objects.get(pk=report["job"])  # said as its page says it ("Completed with errors")
        self.stdout.write(f"Import job #{job.pk} ({report['connection']}): {shown_status_label(job)}")
        for f in report["files"]:
            counts = ", ".join(f"{f[k]} {k}" for k in COUNTS)
            self.stdout.write(f"  {f['name']}: {f['status']} ({f['descriptor'] or '-'}): {counts}")
            for e in f["errors"][:5]:
                where = f"row {e['row']}" if e["row"] is not None else "file"
                self.stdout.write(f"    {where}{', column ' + e['column'] if e['column'] else ''}: {e['message']}")
