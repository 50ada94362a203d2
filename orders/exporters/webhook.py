"""The webhook exporter: POSTs the order as JSON, signed with HMAC-SHA256 of the body, with a timeout."""

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from orders.choices import ExporterKind as Kind
from orders.exceptions import ExporterFailed
from orders.exporters.base import ExporterKind, Outcome

USER_AGENT = "impex-hub order webhook"
# The start of a receiver's answer kept in the run's message.
BODY_SHOWN = 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: the order goes only where the exporter says."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def order_payload(*, order, exporter, flag) -> dict:
    """Return the order as the webhook sends it: header, lines and what identifies this delivery."""
    lines = [
        {
            "line_no": line.line_no,
            "sku": line.variant.sku,
            "quantity": line.quantity,
            "unit_price": str(line.unit_price),
        }
        for line in order.lines.select_related("variant").order_by("line_no")
    ]
    return {
        "event_id": str(flag.event_id),
        "event": "order.export",
        "exporter": exporter.code,
        "flag": flag.flag,
        "order": {
            "order_id": order.order_id,
            "state": order.state,
            "customer_id": order.customer.customer_id,
            "order_date": order.order_date.isoformat(),
            "currency": order.currency,
            "total": str(order.total),
            "shipping_method": order.shipping_method,
            "ship_to_name": order.ship_to_name,
            "ship_to_line1": order.ship_to_line1,
            "ship_to_city": order.ship_to_city,
            "ship_to_postcode": order.ship_to_postcode,
            "ship_to_country": order.ship_to_country,
            "lines": lines,
        },
    }


def signature(secret: str, body: bytes) -> str:
    """Return the X-Signature header of a body: sha256= and the hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _shown(raw: bytes) -> str:
    text = raw[:BODY_SHOWN].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


class WebhookExporter(ExporterKind):
    name = Kind.WEBHOOK

    def problems(self, exporter) -> list[tuple[str, str]]:
        if not exporter.url.startswith(("http://", "https://")):
            return [("url", "a webhook exporter needs an http:// or https:// URL")]
        return []

    def run(self, *, order, exporter, flag) -> Outcome:
        body = json.dumps(order_payload(order=order, exporter=exporter, flag=flag), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Event-Id": str(flag.event_id)}
        if exporter.secret:
            headers["X-Signature"] = signature(exporter.secret, body)
        request = urllib.request.Request(exporter.url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(request, timeout=exporter.timeout_seconds) as answer:
                answer.read(BODY_SHOWN)
                return Outcome(message=f"POST {exporter.url}: {answer.status}", http_status=answer.status)
        except urllib.error.HTTPError as exc:
            status, shown = exc.code, _shown(exc.read(BODY_SHOWN) if exc.fp else b"")
            if 300 <= status < 400:
                raise ExporterFailed(
                    f"POST {exporter.url}: {status} redirect to {exc.headers.get('Location', '?')} (not followed: "
                    "set the exporter's URL to where the receiver is)",
                    retry=False,
                    http_status=status,
                ) from exc
            # A refusal of the order itself (4xx) will not change by sending it again; a server error may.
            retry = status >= 500 or status in (408, 429)
            raise ExporterFailed(f"POST {exporter.url}: {status}{shown}", retry=retry, http_status=status) from exc
        except TimeoutError as exc:
            raise ExporterFailed(f"POST {exporter.url}: no answer within {exporter.timeout_seconds} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise ExporterFailed(f"POST {exporter.url}: no answer within {exporter.timeout_seconds} s") from exc
            raise ExporterFailed(f"POST {exporter.url}: {reason}") from exc
