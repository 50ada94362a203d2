"""Create or update an outbound webhook subscription (SPEC section 10); the admin edits the same."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from impex.exceptions import ConfigurationError
from impex.management.output import print_json
from impex.services.webhooks import EVENT_NAMES, subscription_save


class Command(BaseCommand):
    help = (
        "Create or update an outbound webhook: the URL events are POSTed to, which events, the signing secret. "
        f"Events: {', '.join(EVENT_NAMES)}."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="Unique code of the subscription, e.g. crm.")
        parser.add_argument("--url", help="Where events are POSTed (http:// or https://; needed to create one).")
        parser.add_argument("--events", help=f"Comma-separated events (needed to create one): {','.join(EVENT_NAMES)}.")
        parser.add_argument("--secret", help="The key of the X-Signature HMAC-SHA256 of each body.")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--off", action="store_true", help="Switch the subscription off (nothing is sent).")
        state.add_argument("--on", action="store_true", help="Switch a switched-off subscription on again.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")

    def handle(self, *args, **opts):
        code = opts["code"].strip()
        events = None
        if opts["events"] is not None:
            events = [e.strip() for e in opts["events"].split(",") if e.strip()]
        enabled = None
        if opts["off"] or opts["on"]:
            enabled = bool(opts["on"])
        try:
            sub, created = subscription_save(
                code=code,
                url=opts["url"].strip() if opts["url"] is not None else None,
                events=events,
                secret=opts["secret"],
                enabled=enabled,
            )
        except ConfigurationError as exc:
            raise CommandError(f"webhook {code} not saved: {exc}") from exc
        except ValidationError as exc:
            problems = [f"{field}: {m}" for field, messages in exc.message_dict.items() for m in messages]
            raise CommandError(f"webhook {code} not saved: " + "; ".join(problems)) from exc
        state = "on" if sub.enabled else "off"
        signed = "signed" if sub.secret else "NOT signed (no --secret)"
        self.stdout.write(
            f"{'Created' if created else 'Updated'} webhook {sub.code}: {', '.join(sub.events)} -> {sub.url}, "
            f"{signed}, {state}"
        )
        if opts["json"]:
            print_json(
                self,
                {
                    "webhook": sub.code,
                    "created": created,
                    "url": sub.url,
                    "events": sub.events,
                    "signed": bool(sub.secret),
                    "enabled": sub.enabled,
                },
            )
