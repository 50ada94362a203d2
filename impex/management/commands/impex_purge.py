"""Delete the history older than the retention (SPEC section 9), as the daily schedule does."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from impex.management.output import exit_with, print_json
from impex.services.purge import history_purge


class Command(BaseCommand):
    help = (
        "Delete jobs, row errors, events, sent-file records and archived copies older than the retention; never "
        "what a connection's ledger needs to refuse a duplicate name, an open problem's evidence, or work not done."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            metavar="N",
            help=f"Keep the last N days (default IMPEX_RETENTION_DAYS, now {settings.IMPEX_RETENTION_DAYS}).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        try:
            report = history_purge(days=opts["days"], dry_run=opts["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would remove" if report.dry_run else "removed"
        self.stdout.write(f"History before {report.before:%Y-%m-%d %H:%M} UTC: {verb}")
        for kind, count in report.removed.items():
            self.stdout.write(f"  {kind.replace('_', ' ')}: {count}")
        for kept in report.kept_copies:
            self.stdout.write(f"  kept (could not delete, tried again next time): {kept}")
        if opts["json"]:
            payload = {
                "dry_run": report.dry_run,
                "before": report.before.isoformat(),
                "removed": report.removed,
                "kept": report.kept_copies,
            }
            print_json(self, payload)
        exit_with(not report.kept_copies)
