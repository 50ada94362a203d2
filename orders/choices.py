"""Choices of the order domain."""

from django.db import models


class OrderState(models.TextChoices):
    NEW = "new"
    CONFIRMED = "confirmed"
    ON_HOLD = "on_hold", "On hold"
    EXPORTED = "exported"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class OrderStatus(models.TextChoices):
    """An order's status as the platform's KS_ORDERS says it (SPEC section 6): open, or cancelled."""

    OPEN = "open"
    CANCELLED = "cancelled"


class OrderTransition(models.TextChoices):
    """The transitions of SPEC section 7, by the name of their method on Order (orders/state.py)."""

    CONFIRM = "confirm"
    HOLD = "hold"
    APPROVE = "approve"
    REJECT = "reject"
    MARK_EXPORTED = "mark_exported", "Mark exported"
    SHIP_PARTIALLY = "ship_partially", "Ship partially"
    SHIP = "ship"
    COMPLETE = "complete"
    CANCEL = "cancel"


class OrderEventKind(models.TextChoices):
    """What an order's timeline row records."""

    TRANSITION = "transition"
    FLAG_SET = "flag_set", "Flag set"
    EXPORTED = "exported", "Exporter done"
    EXPORT_FAILED = "export_failed", "Exporter failed"
    HELD = "held", "Held for approval"
    RETRY = "retry", "Retry asked"
    SHIPMENT = "shipment"
    AMENDED = "amended"
    NOTE = "note"


class ExporterKind(models.TextChoices):
    FILE = "file"
    WEBHOOK = "webhook"
    APPROVAL = "approval", "Approval gate"


class FlagStatus(models.TextChoices):
    """Where one exporter's delivery of an order for a flag stands.

    A delivery that succeeded is done and stays until every enabled exporter of its flag has sent the order; then
    the flag's deliveries are removed (their runs stay) and the next flag is set.
    """

    PENDING = "pending"
    RUNNING = "running"
    HELD = "held", "Held for approval"
    FAILED = "failed", "Failed (retries used up)"
    DONE = "done", "Sent (the flag's other exporters still to go)"


# The one table of moves between a delivery's statuses; the work queue (orders.services.FLAGS) refuses the others.
FLAG_TRANSITIONS = {
    FlagStatus.PENDING: {FlagStatus.RUNNING, FlagStatus.FAILED},
    FlagStatus.RUNNING: {FlagStatus.PENDING, FlagStatus.HELD, FlagStatus.FAILED, FlagStatus.DONE},
    FlagStatus.HELD: {FlagStatus.PENDING, FlagStatus.DONE},
    FlagStatus.FAILED: {FlagStatus.PENDING},
    FlagStatus.DONE: set(),
}


class ExportRunStatus(models.TextChoices):
    """The outcome of one exporter run on one order, as `orders_export` reports it."""

    DONE = "done"
    FAILED = "failed"
    HELD = "held"


class FeedSource(models.TextChoices):
    API = "api", "HTTP feed"
    FILE = "file", "KS_SHIPMENTS file"


class FeedStatus(models.TextChoices):
    PENDING = "pending"
    APPLIED = "applied"
    IGNORED = "ignored"
    FAILED = "failed"
