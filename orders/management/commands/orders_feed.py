"""One pass of the order update feed task (SPEC section 9): delivery events applied to their orders."""

from django.core.management.base import BaseCommand

from impex.management.output import print_json
from orders.feeds import orders_feed_pass


class Command(BaseCommand):
    help = "Apply the order update feed events that are due (HTTP feed and KS_SHIPMENTS rows), oldest first."
    requires_system_checks = []  # run every few minutes: Django's checks (~0.3 s) are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, help="Stop after this many events (default: until none is due).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        results = orders_feed_pass(by="command: orders_feed", limit=opts["limit"])
        for result in results:
            self.stdout.write(f"{result.event_id}: {result.status}: {result.message}")
        counts = {s: sum(r.status == s for r in results) for s in ("applied", "ignored", "failed")}
        self.stdout.write(f"{len(results)} event(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if opts["json"]:
            print_json(self, {"events": [r.as_json() for r in results]})
