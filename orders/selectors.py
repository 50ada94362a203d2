"""Reads of the order domain for the admin: held orders and why they wait, an order's lines, timeline and sends."""

from orders.choices import ExporterKind, ExportRunStatus, OrderState
from orders.models import Order, OrderExportRun, OrderLine

# The approval gate's reasons start so (orders.exporters.approval); the admin says "Why held" before them itself.
HELD_PREFIX = "held for approval: "
LINES_SHOWN = 200


def held_reasons(order_ids) -> dict[int, str]:
    """Return, by order, why the latest hold holds it: the approval gate's reason ("its total ... is at least ...")."""
    held = {}
    runs = OrderExportRun.objects.filter(order_id__in=list(order_ids), status=ExportRunStatus.HELD)
    for order_id, message in runs.order_by("started_at", "pk").values_list("order_id", "message"):
        held[order_id] = message.removeprefix(HELD_PREFIX)
    return held


def orders_held(*, limit: int) -> tuple[int, list[Order]]:
    """Return how many orders wait for approval and the `limit` that have waited longest, each with its
    held_reason (three queries, however many are held)."""
    held = Order.objects.filter(state=OrderState.ON_HOLD)
    oldest = list(held.select_related("customer").order_by("state_changed_at", "pk")[:limit])
    reasons = held_reasons(order.pk for order in oldest)
    for order in oldest:
        order.held_reason = reasons.get(order.pk, "")
    return held.count(), oldest


def order_lines(order: Order) -> tuple[list[OrderLine], int]:
    """Return the order's first lines (by number) with their variants and products, and how many lines it has."""
    lines = list(order.lines.select_related("variant__product").order_by("line_no")[: LINES_SHOWN + 1])
    count = len(lines) if len(lines) <= LINES_SHOWN else order.lines.count()
    return lines[:LINES_SHOWN], count


def order_timeline(order: Order) -> list[dict]:
    """Every timeline row of the order and every exporter run on it, merged in time order (oldest first)."""
    rows = []
    for event in order.events.select_related("user").order_by("at", "pk"):
        rows.append(
            {
                "at": event.at,
                "order": (event.at, 0, event.pk),
                "kind": "event",
                "event": event,
                "label": event.get_kind_display(),
                "flag": event.flag,
                "who": event.user.get_username() if event.user else event.by,
                "message": event.message,
            }
        )
    for run in order.export_runs.order_by("started_at", "pk"):
        rows.append(
            {
                "at": run.started_at,
                "order": (run.started_at, 1, run.pk),
                "kind": "run",
                "run": run,
                "label": f"run {run.get_status_display()}",
                "flag": run.flag,
                "who": run.worker,
                "message": run.message,
            }
        )
    rows.sort(key=lambda row: row["order"])
    return rows


def order_sent(order: Order) -> list[OrderExportRun]:
    """Return the runs that sent the order somewhere (not a gate's decisions), newest first: which exporter, for which
    flag, when, which version and state."""
    return list(
        order.export_runs.filter(status=ExportRunStatus.DONE)
        .exclude(exporter__kind=ExporterKind.APPROVAL)
        .order_by("-finished_at", "-pk")
    )
