"""Export with a descriptor or export group (SPEC section 9)."""

import sys
from dataclasses import asdict
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize
from django.utils import timezone

from impex.choices import FileFormat
from impex.exceptions import ConfigurationError
from impex.management.output import print_json
from impex.services.exports import LeftOut, export_descriptor_for, export_to_path


class Command(BaseCommand):
    help = "Export an entity with a descriptor or an export group to a file (the outbox by default)."
    requires_system_checks = []  # run every few minutes: Django's checks (~0.3 s) are for `check` and the server

    def add_arguments(self, parser):
        parser.add_argument("code", help="Descriptor code (e.g. KS_CUSTOMERS) or export group code.")
        parser.add_argument("--out", help="File to write (default: IMPEX_ROOT/outbox/CODE_TIMESTAMP.ext).")
        parser.add_argument("--format", choices=[f.value for f in FileFormat], help="Override the descriptor's format.")
        parser.add_argument("--since", help="Only records changed since this ISO 8601 date-time.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        since = None
        if opts["since"]:
            try:
                since = datetime.fromisoformat(opts["since"])
            except ValueError as exc:
                raise CommandError(f"--since '{opts['since']}' is not an ISO 8601 date-time") from exc
            if timezone.is_naive(since):
                since = timezone.make_aware(since)
        try:
            descriptor = export_descriptor_for(opts["code"])
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        left_out: list[LeftOut] = []
        path, count = export_to_path(
            descriptor=descriptor, path=opts["out"], fmt=opts["format"], since=since, left_out=left_out
        )
        self.stdout.write(f"Exported {count} row{pluralize(count)} with {descriptor.code} to {path}")
        records = len({e.row for e in left_out})
        if records:
            self.stdout.write(f"{records} record{'s' if records > 1 else ''} left out:")
        for e in left_out[:10]:
            self.stdout.write(f"  record {e.row}, column {e.column}: {e.message}")
        if len(left_out) > 10:
            self.stdout.write(f"  ... {len(left_out)} cells in all (the JSON lists the first 100)")
        if opts["json"]:
            print_json(
                self,
                {
                    "descriptor": descriptor.code,
                    "format": opts["format"] or descriptor.format,
                    "path": str(path),
                    "rows": count,
                    "errors": [asdict(e) for e in left_out[:100]],
                },
            )
        if left_out:
            sys.stdout.flush()
            sys.exit(1)
