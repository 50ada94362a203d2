"""django-q2 tasks of the order domain: thin adapters that call a service and return a summary."""

from orders.chain import orders_export_task
from orders.feeds import orders_feed_task


def orders_export(ticket: str | None = None) -> str:
    """Run one pass of the order export task (the every-minute schedule, and after approvals and retries)."""
    return orders_export_task(ticket=ticket)


def orders_feed(ticket: str | None = None) -> str:
    """Apply the order update feed events that are due (the every-minute schedule, and after a POST or a file)."""
    return orders_feed_task(ticket=ticket)
