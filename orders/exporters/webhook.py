"""The webhook exporter: POSTs the order as JSON, signed with HMAC-SHA256 of the body, with a timeout."""

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from impex.outbound import url_refusal
from impex.services.signed_post import PostFailed, json_body, signed_post
from orders.choices import ExporterKind as Kind
from orders.exceptions import ExporterFailed
from orders.exporters.base import ExporterKind, Outcome, run_each
from orders.models import Exporter, OrderLine

USER_AGENT = "impex-hub order webhook"


def order_payload(*, order, exporter, flag, lines=None) -> dict:
    """Return the order as the webhook sends it: header, lines and what identifies this delivery.

    lines: the order's lines with their variants, in line order, if read already (a batch's, in one query).
    """
    if lines is None:
        lines = order.lines.select_related("variant").order_by("line_no")
    lines = [
        {
            "line_no": line.line_no,
            "sku": line.variant.sku,
            "quantity": line.quantity,
            "unit_price": str(line.unit_price),
        }
        for line in lines
    ]
    return {
        "event_id": str(flag.event_id),
        "event": "order.export",
        "exporter": exporter.code,
        "flag": flag.flag,
        "order": {
            "order_id": order.order_id,
            "state": order.state,
            "version": order.version,
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


class WebhookExporter(ExporterKind):
    name = Kind.WEBHOOK

    def problems(self, exporter) -> list[tuple[str, str]]:
        if not exporter.url.startswith(("http://", "https://")):
            return [("url", "a webhook exporter needs an http:// or https:// URL")]
        # A URL is checked when it is set (or the exporter becomes a webhook); connect() checks it again on each POST.
        saved = Exporter.objects.filter(pk=exporter.pk, kind=Kind.WEBHOOK).values_list("url", flat=True).first()
        refusal = url_refusal(exporter.url) if exporter.pk is None or exporter.url != saved else ""
        return [("url", refusal)] if refusal else []

    def run(self, *, order, exporter, flag, lines=None) -> Outcome:
        body = json_body(order_payload(order=order, exporter=exporter, flag=flag, lines=lines))
        try:
            answer = signed_post(
                url=exporter.url,
                body=body,
                secret=exporter.secret,
                event_id=str(flag.event_id),
                timeout=exporter.timeout_seconds,
                user_agent=USER_AGENT,
            )
        except PostFailed as exc:
            raise ExporterFailed(
                exc.message, retry=exc.retry, http_status=exc.http_status, response=exc.response
            ) from exc
        return Outcome(
            message=f"POST {exporter.url}: {answer.status}", http_status=answer.status, response=answer.response
        )

    def run_many(self, *, items: list, exporter, lost: set) -> list:
        """POST each order of a batch, IMPEX_WEBHOOK_CONCURRENCY at once; their lines are read in one query."""
        lines: dict = {}
        for line in (
            OrderLine.objects.filter(order__in=[order.pk for order, _ in items])
            .select_related("variant")
            .order_by("order_id", "line_no")
        ):
            lines.setdefault(line.order_id, []).append(line)

        def one(item):
            order, flag = item
            run = lambda: self.run(order=order, exporter=exporter, flag=flag, lines=lines.get(order.pk, []))  # noqa: E731
            return run_each(run, flag, lost)

        with ThreadPoolExecutor(max_workers=settings.IMPEX_WEBHOOK_CONCURRENCY, thread_name_prefix="exporter") as pool:
            return list(pool.map(one, items))
