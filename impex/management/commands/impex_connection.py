"""Create or update a connection (SPEC section 9), so that deployments can be scripted."""

import argparse

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.management.base import BaseCommand, CommandError

from impex.choices import Convention
from impex.exceptions import ConnectionInvalid
from impex.management.output import print_json
from impex.models import Connection
from impex.services.connections import connection_save
from impex.services.tokens import api_token_issue

# The option that sets each field, so that a refusal says which option to change.
OPTION_OF_FIELD = {
    "code": "CODE",
    "convention": "--convention",
    "company_name": "--company",
    "integration_id": "--integration",
    "inbox": "--inbox",
    "timezone": "--timezone",
    "contacts": "--contacts",
    "interval_minutes": "--interval",
    "scan_cron": "--cron",
    "scan_seconds": "--scan-seconds",
    "scan_enabled": "--scan",
    "archive_folder": "--archive",
    "error_folder": "--error-folder",
    "outbox": "--outbox",
    "groups": "--groups",
}
# The option keys of fields whose command-line name differs.
OPTION_KEYS = {
    "company_name": "company",
    "integration_id": "integration",
    "interval_minutes": "interval",
    "scan_cron": "cron",
    "scan_seconds": "scan_seconds",
    "scan_enabled": "scan",
    "archive_folder": "archive",
}
LOCATION_HELP = (
    "a folder path, s3://bucket/prefix, sftp://, ftp:// or ftps://[user@]host[:port]/path; '' for the default"
)


class Command(BaseCommand):
    help = (
        "Create or update a connection (a reference system that sends files). An update changes only the options given."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="Unique code of the connection, e.g. acme-pos.")
        parser.add_argument(
            "--convention",
            choices=[c.value for c in Convention],
            help="File naming convention; needed to create a connection. patterns: names matched by the file "
            "patterns of the descriptors of its import groups (--groups), with no company or integration id.",
        )
        parser.add_argument("--company", help="BSPK: the CamelCase company name its file names carry.")
        parser.add_argument("--integration", help="Kore: the integration id its file names carry.")
        parser.add_argument(
            "--groups",
            help="Codes of its import groups, separated by commas (G1,G2; '' for none): each group's files come from "
            "this connection; a patterns connection's inbox scans need at least one, whose descriptors' file patterns "
            "match its file names (an upload or impex_import --group may name the group instead). Replaces the "
            "groups it had.",
        )
        parser.add_argument(
            "--inbox",
            help="Inbox: a folder path, s3://bucket/prefix, sftp://, ftp:// or ftps://[user@]host[:port]/path.",
        )
        parser.add_argument(
            "--timezone", help="Time zone naive datetimes in its files are read in (e.g. Europe/Paris)."
        )
        parser.add_argument("--contacts", help="E-mail addresses told about errors, separated by commas or semicolons.")
        parser.add_argument(
            "--interval", type=int, help="Minutes between scans of the inbox, 1 to 44640 (clears --cron unless given)."
        )
        parser.add_argument(
            "--cron", help="Scan by a cron expression instead (minute hour day month weekday, UTC); '' clears it."
        )
        parser.add_argument(
            "--scan-seconds",
            "--interval-seconds",
            dest="scan_seconds",
            type=seconds_or_off,
            metavar="N|off",
            help="Scan the inbox every N seconds, 5 to 59, instead of --interval or --cron (the cluster's scan loop); "
            "0 or off: back to them.",
        )
        parser.add_argument("--scan", choices=["on", "off"], help="Scan the inbox on schedule, or not.")
        parser.add_argument("--archive", help=f"Where imported files are moved: {LOCATION_HELP} (<code>/archive).")
        parser.add_argument("--error-folder", help=f"Where rejected files are moved: {LOCATION_HELP} (<code>/error).")
        parser.add_argument("--outbox", help=f"Where scheduled exports are written: {LOCATION_HELP} (<code>/outbox).")
        parser.add_argument(
            "--new-token",
            action="store_true",
            help="Issue a new API token for the connection and print it once (older tokens stay valid until revoked).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        changes = [f for f in OPTION_OF_FIELD if f != "code" and opts.get(OPTION_KEYS.get(f, f)) is not None]
        if opts["new_token"] and not changes:
            conn = Connection.objects.filter(code=opts["code"]).first()
            if conn is None:
                raise CommandError(f"no connection is called {opts['code']} (create it first with --convention)")
            return self._token(conn, opts)
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
                scan_seconds=opts["scan_seconds"],
                scan_cron=opts["cron"] if opts["cron"] is not None else ("" if opts["interval"] is not None else None),
                scan_enabled=None if opts["scan"] is None else opts["scan"] == "on",
                archive_folder=opts["archive"],
                error_folder=opts["error_folder"],
                outbox=opts["outbox"],
                groups=None if opts["groups"] is None else [g.strip() for g in opts["groups"].split(",") if g.strip()],
            )
        except ConnectionInvalid as exc:
            raise CommandError(f"connection {opts['code']} not saved:{refusal(exc.errors)}") from exc
        self.stdout.write(
            f"{'Created' if created else 'Updated'} connection {conn.code} ({conn.get_convention_display()})"
        )
        self.stdout.write(f"  its inbox is scanned: {scans_said(conn)}")
        if opts["new_token"]:
            return self._token(conn, opts)
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
                    "cron": conn.scan_cron,
                    "scan_seconds": conn.scan_seconds,
                    "scan": conn.scan_enabled,
                    "archive": conn.archive_folder,
                    "error_folder": conn.error_folder,
                    "outbox": conn.outbox,
                    "groups": [g.code for g in conn.import_groups()],
                },
            )

    def _token(self, conn, opts):
        raw = api_token_issue(connection=conn, by="command: impex_connection")
        self.stdout.write(
            f"New API token of {conn.code} (shown this once; the hub keeps only its hash; revoke it in the admin):"
        )
        if opts["json"]:
            print_json(self, {"token": raw})
        else:
            self.stdout.write(raw)


def scans_said(conn: Connection) -> str:
    """Say how often the cluster scans the connection's inbox, as its admin page does."""
    if not conn.active:
        return "off (the connection is not active)"
    if not conn.scan_enabled:
        return "off ('Sync now' and impex_scan only)"
    if conn.scan_seconds:
        return f"{conn.scan_every} (by the cluster's scan loop)"
    return conn.scan_every


def seconds_or_off(value: str) -> int:
    """Read --scan-seconds: a whole number of seconds, or off (0: cleared)."""
    if value.strip().lower() == "off":
        return 0
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (5 to 59) nor off") from None


def refusal(errors: dict[str, list[str]]) -> str:
    """Say what is wrong, one problem a line, each led by the option that sets it."""
    return "".join(
        f"\n  {message}" if field == NON_FIELD_ERRORS else f"\n  {OPTION_OF_FIELD.get(field, field)}: {message}"
        for field, messages in errors.items()
        for message in messages
    )
