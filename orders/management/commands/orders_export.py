"""One pass of the order export task (SPEC section 9): flagged orders through their exporters."""

from django.core.management.base import BaseCommand

from impex.management.output import print_json
from orders.chain import orders_export_pass
from orders.services import deliveries_due_now


class Command(BaseCommand):
    help = "Run the exporters of every flagged order that is due, as the every-minute schedule does."
    requires_system_checks = []  # run every few minutes: Django's checks (~0.3 s) are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, help="Stop after this many exporter runs (default: until none is due)."
        )
        parser.add_argument(
            "--retry-now",
            action="store_true",
            help="First make every export waiting for a retry due now (not those that failed for good: the admin's "
            "Retry asks for those).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        if opts["retry_now"]:
            count = deliveries_due_now(by="command: orders_export --retry-now")
            self.stdout.write(f"{count} waiting retr{'y' if count == 1 else 'ies'} made due now")
        reports = orders_export_pass(by="command: orders_export", limit=opts["limit"])
        for report in reports:
            self.stdout.write(f"{report.order}: {report.exporter} {report.status}: {report.message}")
        done = sum(r.status == "done" for r in reports)
        failed = sum(r.status == "failed" for r in reports)
        held = sum(r.status == "held" for r in reports)
        self.stdout.write(f"{len(reports)} run(s): {done} done, {held} held, {failed} failed")
        if opts["json"]:
            print_json(self, {"runs": [r.as_json() for r in reports]})
