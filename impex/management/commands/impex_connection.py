"""Create or update a connection (SPEC section 9), so that deployments can be scripted."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError

from impex.choices import Convention
from impex.exceptions import ConfigurationError
from impex.management.output import print_json
from impex.services.connections import connection_save


class Command(BaseCommand):
    help = "Create or update a connection (a reference system that sends files)."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Unique code of the connection, e.g. acme-pos.")
        parser.add_argument(
            "--convention", required=True, choices=[c.value for c in Convention], help="File naming convention."
        )
        parser.add_argument("--company", help="BSPK: the CamelCase company name its file names carry.")
        parser.add_argument("--integration", help="Kore: the integration id its file names carry.")
        parser.add_argument("--inbox", help="Inbox folder path or s3:// / sftp:// URL.")
        parser.add_argument(
            "--timezone", help="Time zone naive datetimes in its files are read in (e.g. Europe/Paris)."
        )
        parser.add_argument("--contacts", help="E-mail addresses told about errors, comma separated.")
        parser.add_argument("--interval", type=int, help="Minutes between scans of the inbox.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        if opts["timezone"]:
            try:
                ZoneInfo(opts["timezone"])
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise CommandError(f"unknown time zone '{opts['timezone']}'") from exc
        if opts["interval"] is not None and opts["interval"] < 1:
            raise CommandError("--interval must be at least 1 minute")
        if opts["convention"] == Convention.BSPK and opts["company"] is not None and not opts["company"][:1].isupper():
            raise CommandError("--company must be the CamelCase company name used in file names, e.g. AcmeRetail")
        try:
            conn, created = connection_save(
                code=opts["code"],
                convention=opts["convention"],
                company_name=opts["company"],
                integration_id=opts["integration"],
                inbox=opts["inbox"],
                timezone=opts["timezone"],
                contacts=opts["contacts"],
                interval_minutes=opts["interval"],
            )
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{'Created' if created else 'Updated'} connection {conn.code} ({conn.get_convention_display()})"
        )
        if opts["json"]:
            print_json(
                self,
                {
                    "code": conn.code,
                    "created": created,
                    "convention": conn.convention,
                    "company": conn.company_name,
                    "integration": conn.integration_id,
                    "inbox": conn.inbox,
                    "timezone": conn.timezone,
                    "contacts": conn.contact_list,
                    "interval": conn.interval_minutes,
                },
            )
