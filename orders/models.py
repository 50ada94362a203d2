"""Orders, their lines and shipments (from KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS), their timeline, export flags,
exporters and runs, and the order update feed (SPEC section 7)."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from impex.models import LeasedWork
from orders.choices import (
    ExporterKind,
    ExportRunStatus,
    FeedSource,
    FeedStatus,
    FlagStatus,
    OrderEventKind,
    OrderState,
    OrderStatus,
    OrderTransition,
)
from orders.state import OrderStateMachine
from syncapp.models import SyncedModel

flag_help = "A short name such as erp: lower-case letters, digits, - and _."


class Order(OrderStateMachine, SyncedModel):
    order_id = models.CharField(max_length=100)  # unique by constraint, as syncapp's natural keys (SyncedModel)
    customer = models.ForeignKey("syncapp.Customer", on_delete=models.PROTECT, related_name="orders")
    order_date = models.DateTimeField()
    currency = models.CharField(max_length=3)
    total = models.DecimalField(max_digits=14, decimal_places=4)
    shipping_method = models.CharField(max_length=100, blank=True, default="")
    ship_to_name = models.CharField(max_length=200, blank=True, default="")
    ship_to_line1 = models.CharField(max_length=300, blank=True, default="")
    ship_to_city = models.CharField(max_length=200, blank=True, default="")
    ship_to_postcode = models.CharField(max_length=50, blank=True, default="")
    ship_to_country = models.CharField(max_length=100, blank=True, default="")
    # state comes from OrderStateMachine; imports never write it. The two below are kept by the order update
    # feed for the ORDER-STATUS export (SPEC section 6).
    shipped_lines = models.TextField(blank=True, default="", help_text="Line numbers shipped, e.g. 1;2.")
    tracking_numbers = models.TextField(blank=True, default="", help_text="Tracking numbers, ;-separated.")
    state_changed_at = models.DateTimeField(null=True, blank=True)
    # Raised by each amendment of an order already confirmed (SPEC section 7); exporters send it with the state.
    version = models.PositiveIntegerField(default=1)
    # KS_ORDERS' status column: the platform's word; "cancelled" cancels the order, and every cancellation sets it.
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.OPEN)

    class Meta:
        ordering = ["-order_date", "order_id"]
        constraints = [models.UniqueConstraint(fields=["order_id"], name="order_order_id_key")]
        permissions = [
            ("approve_order", "Can approve and reject held orders"),
            ("cancel_order", "Can cancel orders"),
        ]
        # GET /api/extract/orders/ pages by (updated_at, id).
        indexes = [models.Index(fields=["updated_at", "id"], name="order_changed")]

    def __str__(self):
        return self.order_id


class OrderFileNote(models.Model):
    """What a chunk of a KS_ORDERS or KS_ORDER_LINES file did to an order, kept until the file finishes.

    The file's finish reads them once (after every chunk, whichever worker applied it) to raise the version,
    write the timeline, remove the lines the file no longer holds and cancel, once per file and order.
    """

    file = models.ForeignKey("impex.ImportFile", on_delete=models.CASCADE, related_name="+")
    order_ref = models.CharField(max_length=100, help_text="The order_id the rows name.")
    line_nos = models.JSONField(default=list, blank=True, help_text="The line numbers the file holds for the order.")
    changes = models.JSONField(default=list, blank=True)
    cancel = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["file", "order_ref"])]

    def __str__(self):
        return f"{self.order_ref} in file {self.file_id}"


class OrderLine(SyncedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_no = models.IntegerField()
    variant = models.ForeignKey("syncapp.ProductVariant", on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.IntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=4)
    # Set by the order update feed; imports never write them.
    shipped_at = models.DateTimeField(null=True, blank=True)
    shipment = models.ForeignKey(
        "Shipment", null=True, blank=True, on_delete=models.SET_NULL, related_name="shipped_lines"
    )

    class Meta:
        ordering = ["order__order_id", "line_no"]
        constraints = [models.UniqueConstraint(fields=["order", "line_no"], name="orderline_key")]

    def __str__(self):
        return f"{self.order_id}#{self.line_no}"


class Shipment(SyncedModel):
    shipment_id = models.CharField(max_length=100)  # unique by constraint, as syncapp's natural keys
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.CharField(max_length=100, blank=True, default="")
    tracking_number = models.CharField(max_length=200, blank=True, default="")
    shipped_at = models.DateTimeField()
    line_nos = models.CharField(max_length=500, blank=True, default="", help_text="e.g. 1;2 - empty means all lines")

    class Meta:
        ordering = ["-shipped_at", "shipment_id"]
        constraints = [models.UniqueConstraint(fields=["shipment_id"], name="shipment_shipment_id_key")]

    def __str__(self):
        return self.shipment_id


class OrderEvent(models.Model):
    """One row of an order's timeline: a transition (from, to, who, why), a flag set, an exporter's outcome."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=OrderEventKind.choices)
    transition = models.CharField(max_length=20, choices=OrderTransition.choices, blank=True, default="")
    from_state = models.CharField(max_length=20, choices=OrderState.choices, blank=True, default="")
    to_state = models.CharField(max_length=20, choices=OrderState.choices, blank=True, default="")
    flag = models.CharField(max_length=50, blank=True, default="")
    # Who: a user (approvals, retries) or the task or command that did it ("task: orders_export").
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    # amended: the import job whose files changed the order (its KS_ORDERS and KS_ORDER_LINES files: one amendment).
    job = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["order", "at"])]

    def __str__(self):
        return f"{self.order_id} {self.kind} {self.at:%Y-%m-%d %H:%M:%S}"


class Exporter(models.Model):
    """Acts on orders carrying its flag; on success clears the flag and sets its next flag (SPEC section 7)."""

    # SPEC 13: set with impex.change_locations only (config.adminkit.LocationFieldsAdminMixin).
    LOCATION_FIELDS = ("destination", "url")

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    flag = models.SlugField(max_length=50, help_text="The flag this exporter acts on. " + flag_help)
    kind = models.CharField(max_length=10, choices=ExporterKind.choices)
    next_flag = models.SlugField(
        max_length=50,
        blank=True,
        default="",
        help_text="Set on the order once every enabled exporter of the flag has sent it (they all name the same "
        "one); empty ends the chain.",
    )
    enabled = models.BooleanField(default=True)
    # file
    descriptor = models.ForeignKey(
        "impex.DataDescriptor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="file: the export descriptor of the order (its lines go beside it with KS_ORDER_LINES' layout).",
    )
    destination = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="file: a folder, s3://bucket/prefix or sftp://host/path; empty: the outbox of the order's connection "
        "(or IMPEX_ROOT/orders/outbox). A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS.",
    )
    # webhook
    url = models.URLField(
        max_length=2000,
        blank=True,
        default="",
        help_text="webhook: where the order is POSTed: a public address, unless the host is listed in "
        "IMPEX_ALLOWED_HOSTS_OUTBOUND.",
    )
    secret = models.CharField(
        max_length=200, blank=True, default="", help_text="webhook: the key of the X-Signature HMAC-SHA256."
    )
    timeout_seconds = models.PositiveIntegerField(default=10, help_text="webhook: give up waiting after this long.")
    # approval
    min_total = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="approval: hold orders whose total is at least this (and those of inactive customers).",
    )
    max_attempts = models.PositiveIntegerField(
        default=10, help_text="Tries before the order shows as failed (back-off 1, 2, 4 ... minutes, at most 60)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Several exporters may act on one flag (SPEC 7): each delivers on its own (OrderFlag, one per exporter).
        ordering = ["code"]

    def __str__(self):
        return self.code


class TransitionFlag(models.Model):
    """A flag a transition sets on the order (e.g. confirm sets erp); see orders.services.flags_for."""

    transition = models.CharField(max_length=20, choices=OrderTransition.choices)
    flag = models.SlugField(max_length=50, help_text=flag_help)

    class Meta:
        ordering = ["transition", "flag"]
        constraints = [models.UniqueConstraint(fields=["transition", "flag"], name="transitionflag_once")]

    def __str__(self):
        return f"{self.transition} sets {self.flag}"


class OrderFlag(LeasedWork):
    """An export flag on an order as one exporter's delivery of it: waiting, running, held, failed for good, or done
    while the flag's other exporters still work. With no exporter, the flag waits for one to be enabled.

    A re-send (orders.services.order_resend) is a delivery of its own: it sends the order's new state and version
    again to an exporter that had sent it, and moves no chain on.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="flags")
    flag = models.SlugField(max_length=50)
    exporter = models.ForeignKey(Exporter, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    resend = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=FlagStatus.choices, default=FlagStatus.PENDING)
    # Sent as X-Event-Id: the same on every retry of this delivery, so a receiver can drop repeats.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    set_at = models.DateTimeField(default=timezone.now)
    set_by = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["set_at", "pk"]
        constraints = [
            # One delivery of a flag per exporter; one waiting row while no exporter acts on the flag.
            models.UniqueConstraint(
                fields=["order", "flag", "exporter"], condition=Q(resend=False), name="orderflag_once_per_exporter"
            ),
            models.UniqueConstraint(
                fields=["order", "flag"], condition=Q(resend=False, exporter=None), name="orderflag_once_waiting"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="orderflag_due")]

    def __str__(self):
        return f"{self.order_id}:{self.flag}"


class OrderExportRun(models.Model):
    """One run of an exporter on an order: done, failed (and whether it will be tried again) or held."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="export_runs")
    exporter = models.ForeignKey(Exporter, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    exporter_code = models.CharField(max_length=50)
    flag = models.CharField(max_length=50)
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=ExportRunStatus.choices)
    message = models.TextField(blank=True, default="")
    event_id = models.UUIDField(null=True, blank=True)
    # What the run sent: the order's version and state then (a re-send sends a newer one).
    version = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=20, choices=OrderState.choices, blank=True, default="")
    resend = models.BooleanField(default=False)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    location = models.CharField(max_length=1000, blank=True, default="", help_text="file: where the files were placed.")
    response = models.TextField(
        blank=True, default="", help_text="webhook: the start of the receiver's answer (for who may change exporters)."
    )
    retry_at = models.DateTimeField(null=True, blank=True, help_text="failed: when it is tried again, if it is.")
    worker = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["order", "started_at"])]

    def __str__(self):
        return f"{self.exporter_code} on {self.order_id}: {self.status}"


class FeedEvent(LeasedWork):
    """A delivery reported by a carrier (POST /api/feeds/shipments/) or a KS_SHIPMENTS row, applied by the feed task."""

    connection = models.ForeignKey(
        "impex.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="feed_events"
    )
    source = models.CharField(max_length=10, choices=FeedSource.choices)
    # The sender's id: an event is applied once per connection (another connection's ids are its own).
    event_id = models.CharField(max_length=200)
    shipment_id = models.CharField(max_length=100, db_index=True)
    order_ref = models.CharField(max_length=100, db_index=True, help_text="The order_id the event names.")
    carrier = models.CharField(max_length=100, blank=True, default="")
    tracking_number = models.CharField(max_length=200, blank=True, default="")
    shipped_at = models.DateTimeField()
    line_nos = models.JSONField(default=list, blank=True, help_text="Empty: every line.")
    status = models.CharField(max_length=10, choices=FeedStatus.choices, default=FeedStatus.PENDING, db_index=True)
    message = models.TextField(blank=True, default="")
    # A failed event is tried again (at next_attempt_at, and only once its order exists) unless retry is off.
    retry = models.BooleanField(default=True)
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at", "pk"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="feedevent_due"),
            models.Index(fields=["connection", "event_id"], name="feedevent_sender_id"),
        ]

    def __str__(self):
        return f"{self.event_id} ({self.shipment_id})"
