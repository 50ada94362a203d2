"""One small function per kind of row on an order's timeline."""

from orders.choices import OrderEventKind
from orders.models import Order, OrderEvent


def transition_event(*, order: Order, transition: str, from_state: str, to_state: str, by: str, user=None, message=""):
    """Record a transition: from, to, who or which task, and why."""
    return OrderEvent.objects.create(
        order=order,
        kind=OrderEventKind.TRANSITION,
        transition=transition,
        from_state=from_state,
        to_state=to_state,
        by=by,
        user=user,
        message=message,
    )


def flag_event(*, order: Order, flag: str, by: str, message: str = ""):
    """Record a flag set on the order."""
    return OrderEvent.objects.create(order=order, kind=OrderEventKind.FLAG_SET, flag=flag, by=by, message=message)


def note_event(*, order: Order, kind: str, by: str, flag: str = "", user=None, message: str = ""):
    """Record anything else on the timeline (an exporter's outcome, a retry asked, a shipment applied)."""
    return OrderEvent.objects.create(order=order, kind=kind, flag=flag, by=by, user=user, message=message)
