"""Create or update an order exporter (SPEC section 9); the admin edits the same."""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from impex.exceptions import ConfigurationError
from impex.management.output import print_json
from impex.services.exports import export_descriptor_for
from orders.choices import ExporterKind
from orders.services import exporter_save

# The option that sets each field, so that a refusal says which option to change.
OPTION_OF_FIELD = {
    "code": "CODE",
    "flag": "--flag",
    "kind": "--kind",
    "next_flag": "--next-flag",
    "descriptor": "--descriptor",
    "url": "--url",
    "secret": "--secret",
    "min_total": "--min-total",
    "destination": "--destination",
    "timeout_seconds": "--timeout",
    "max_attempts": "--max-attempts",
    "enabled": "--off/--on",
}


class Command(BaseCommand):
    help = "Create or update an order exporter: the flag it acts on, its kind and settings, the flag it sets next."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Unique code of the exporter, e.g. erp-file.")
        parser.add_argument("--flag", help="The export flag it acts on, e.g. erp (needed to create one).")
        parser.add_argument(
            "--kind", choices=[k.value for k in ExporterKind], help="What it does with an order (needed to create one)."
        )
        parser.add_argument("--next-flag", help="The flag it sets when it succeeds ('' ends the chain).")
        parser.add_argument("--descriptor", help="file: the export descriptor or export group of the order.")
        parser.add_argument("--destination", help="file: folder, s3://bucket/prefix or sftp://host/path ('' = outbox).")
        parser.add_argument("--url", help="webhook: the URL the order is POSTed to.")
        parser.add_argument("--secret", help="webhook: the key of the X-Signature HMAC-SHA256.")
        parser.add_argument("--timeout", type=int, help="webhook: seconds to wait for an answer (default 10).")
        parser.add_argument("--min-total", help="approval: hold orders whose total is at least this ('' for none).")
        parser.add_argument("--max-attempts", type=int, help="Tries before an order shows as failed (default 10).")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--off", action="store_true", help="Switch the exporter off (it keeps its settings).")
        state.add_argument("--on", action="store_true", help="Switch a switched-off exporter on again.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        values = {}
        for field in ("flag", "kind", "next_flag", "destination", "url", "secret"):
            if opts[field] is not None:
                values[field] = opts[field].strip()
        if opts["timeout"] is not None:
            values["timeout_seconds"] = opts["timeout"]
        if opts["max_attempts"] is not None:
            values["max_attempts"] = opts["max_attempts"]
        if opts["min_total"] is not None:
            values["min_total"] = self._amount(opts["min_total"])
        if opts["descriptor"] is not None:
            values["descriptor"] = self._descriptor(opts["descriptor"])
        if opts["off"] or opts["on"]:
            values["enabled"] = bool(opts["on"])
        try:
            exporter, created = exporter_save(code=opts["code"], values=values)
        except ValidationError as exc:
            problems = [
                f"{OPTION_OF_FIELD.get(field, field)}: {message}"
                for field, messages in exc.message_dict.items()
                for message in messages
            ]
            raise CommandError(f"exporter {opts['code']} not saved: " + "; ".join(problems)) from exc
        chain = f" -> {exporter.next_flag}" if exporter.next_flag else " (ends the chain)"
        state = "on" if exporter.enabled else "off"
        self.stdout.write(
            f"{'Created' if created else 'Updated'} exporter {exporter.code}: {exporter.kind} on flag "
            f"{exporter.flag}{chain}, {state}"
        )
        if opts["json"]:
            print_json(
                self,
                {
                    "exporter": exporter.code,
                    "created": created,
                    "flag": exporter.flag,
                    "kind": exporter.kind,
                    "next_flag": exporter.next_flag,
                    "enabled": exporter.enabled,
                    "descriptor": exporter.descriptor.code if exporter.descriptor else None,
                    "destination": exporter.destination,
                    "url": exporter.url,
                    "min_total": None if exporter.min_total is None else str(exporter.min_total),
                },
            )

    def _amount(self, text: str) -> Decimal | None:
        if not text.strip():
            return None
        try:
            amount = Decimal(text.strip())
        except InvalidOperation as exc:
            raise CommandError(f"--min-total '{text}' is not an amount (e.g. 500 or 499.90)") from exc
        if not amount.is_finite() or amount < 0:
            raise CommandError(f"--min-total '{text}' must be a positive amount")
        return amount

    def _descriptor(self, code: str):
        if not code.strip():
            return None
        try:
            descriptor = export_descriptor_for(code.strip())
        except ConfigurationError as exc:
            raise CommandError(f"--descriptor: {exc}") from exc
        if descriptor.entity != "order":
            raise CommandError(f"--descriptor: {descriptor.code} is a layout of {descriptor.entity}, not of orders")
        return descriptor
