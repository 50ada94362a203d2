"""Synced entities (customers, catalogue, special orders) and the sync logs of SPEC section 8."""

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from impex.entities import entity_verbose_name
from impex.models import LeasedWork
from syncapp.choices import (
    ProductStatus,
    RecordEventStatus,
    SpecialOrderEventType,
    SpecialOrderStatus,
    SpecialOrderType,
)


class SyncedModel(models.Model):
    """A record kept in sync with a reference system, remembering which connection wrote it.

    Natural keys are unique by constraint, not by unique=True: on PostgreSQL unique=True adds a second index
    (varchar_pattern_ops, for LIKE 'prefix%') that nothing here uses and every import would write.
    """

    # Provenance, not structure: no database constraint, so that bulk imports don't pay a foreign-key
    # check per row at commit; the ORM still nulls it when a connection is deleted (SET_NULL).
    connection = models.ForeignKey(
        "impex.Connection",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        # No index either: every import writes it, and nothing reads a large table by connection alone (a FULL
        # file's retirement reads all the connection's records anyway).
        db_index=False,
        db_constraint=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Customer(SyncedModel):
    customer_id = models.CharField(max_length=100)
    email = models.CharField(max_length=254)
    first_name = models.CharField(max_length=200, blank=True, default="")
    last_name = models.CharField(max_length=200, blank=True, default="")
    company_name = models.CharField(max_length=200, blank=True, default="")
    group = models.CharField(max_length=100, blank=True, default="")
    accounting_id = models.CharField(max_length=100, blank=True, default="")
    price_list = models.CharField(max_length=100, blank=True, default="")
    discount_percentage = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    payment_on_account = models.BooleanField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["customer_id"]
        # GET /api/extract/customers/ pages by (updated_at, id).
        indexes = [models.Index(fields=["updated_at", "id"], name="customer_changed")]
        constraints = [models.UniqueConstraint(fields=["customer_id"], name="customer_customer_id_key")]

    def __str__(self):
        return self.customer_id


class Product(SyncedModel):
    product_id = models.CharField(max_length=100)
    title = models.CharField(max_length=300)
    slug = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=20, choices=ProductStatus.choices, default=ProductStatus.LIVE)

    class Meta:
        ordering = ["product_id"]
        constraints = [models.UniqueConstraint(fields=["product_id"], name="product_product_id_key")]

    def __str__(self):
        return f"{self.product_id} {self.title}"


class ProductVariant(SyncedModel):
    variant_id = models.CharField(max_length=100)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    sku = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=ProductStatus.choices, default=ProductStatus.LIVE)
    weight_in_grams = models.IntegerField(null=True, blank=True)
    position = models.IntegerField(null=True, blank=True)
    cart_image_url = models.CharField(max_length=1000, blank=True, default="")
    options = models.CharField(max_length=1000, blank=True, default="")
    rrp = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    restock_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["variant_id"], name="productvariant_variant_id_key"),
            models.UniqueConstraint(fields=["sku"], name="productvariant_sku_key"),
        ]

    def __str__(self):
        return self.sku


class StockLevel(SyncedModel):
    variant = models.ForeignKey(ProductVariant, on_delete=models.CASCADE, related_name="stock_levels")
    location = models.CharField(max_length=100)
    quantity = models.IntegerField()
    restock_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["variant__sku", "location"]
        constraints = [models.UniqueConstraint(fields=["variant", "location"], name="stocklevel_key")]

    def __str__(self):
        return f"{self.variant_id}@{self.location}"


class PriceList(SyncedModel):
    code = models.CharField(max_length=100)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["code"], name="pricelist_code_key")]

    def __str__(self):
        return self.code


class Price(SyncedModel):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="prices")
    variant = models.ForeignKey(ProductVariant, on_delete=models.CASCADE, related_name="prices")
    currency = models.CharField(max_length=3)
    price = models.DecimalField(max_digits=14, decimal_places=4)
    min_quantity = models.IntegerField(default=1)

    class Meta:
        ordering = ["price_list__code", "variant__sku", "min_quantity"]
        constraints = [models.UniqueConstraint(fields=["price_list", "variant", "min_quantity"], name="price_key")]

    def __str__(self):
        return f"{self.price_list_id}/{self.variant_id}x{self.min_quantity}"


class SpecialOrder(SyncedModel):
    special_order_id = models.CharField(max_length=100)
    store_id = models.CharField(max_length=100)
    client_id = models.CharField(max_length=100)
    associate_id = models.CharField(max_length=100, blank=True, default="")
    order_type = models.CharField(max_length=20, choices=SpecialOrderType.choices)
    status = models.CharField(max_length=20, choices=SpecialOrderStatus.choices)
    description = models.TextField(blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    deposit_amount = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    total_amount = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    ordered_at = models.DateTimeField(help_text="The special order's created_at in the sending system.")
    promised_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["special_order_id"]
        indexes = [models.Index(fields=["updated_at", "id"], name="specialorder_changed")]
        constraints = [models.UniqueConstraint(fields=["special_order_id"], name="specialorder_special_order_id_key")]

    def __str__(self):
        return self.special_order_id


class SpecialOrderLineItem(SyncedModel):
    line_item_id = models.CharField(max_length=100)
    special_order = models.ForeignKey(SpecialOrder, on_delete=models.CASCADE, related_name="line_items")
    sku = models.CharField(max_length=100, blank=True, default="")
    product_name = models.CharField(max_length=300)
    quantity = models.IntegerField(validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    notes = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["line_item_id"]
        constraints = [models.UniqueConstraint(fields=["line_item_id"], name="specialorderlineitem_line_item_id_key")]

    def __str__(self):
        return self.line_item_id


class SpecialOrderEvent(SyncedModel):
    event_id = models.CharField(max_length=100)
    special_order = models.ForeignKey(SpecialOrder, on_delete=models.CASCADE, related_name="events")
    event_type = models.CharField(max_length=30, choices=SpecialOrderEventType.choices)
    event_at = models.DateTimeField()
    associate_id = models.CharField(max_length=100, blank=True, default="")
    note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["event_at", "event_id"]
        constraints = [models.UniqueConstraint(fields=["event_id"], name="specialorderevent_event_id_key")]

    def __str__(self):
        return self.event_id


class SyncLog(models.Model):
    """What the hub knows of one connection's sync of one entity type."""

    connection = models.ForeignKey("impex.Connection", on_delete=models.CASCADE, related_name="sync_logs")
    entity = models.CharField(max_length=50)
    last_full_sync = models.DateTimeField(null=True, blank=True)
    last_partial_sync = models.DateTimeField(null=True, blank=True)
    full_sync_started_at = models.DateTimeField(null=True, blank=True)
    full_sync_token = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["connection__code", "entity"]
        constraints = [models.UniqueConstraint(fields=["connection", "entity"], name="synclog_key")]

    def __str__(self):
        return f"{self.connection.code}: {entity_verbose_name(self.entity)}"


class SyncError(models.Model):
    """An open error of a sync log, one per external id of a record."""

    log = models.ForeignKey(SyncLog, on_delete=models.CASCADE, related_name="errors")
    external_id = models.CharField(max_length=200)
    message = models.TextField()
    file_name = models.CharField(max_length=300, blank=True, default="")
    row = models.IntegerField(null=True, blank=True)
    # The job whose file refused the record, or the single-record update that failed; none when reported over HTTP.
    job = models.ForeignKey("impex.ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    record_event = models.ForeignKey(
        "syncapp.RecordEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set by syncapp.services (one time for a whole batch): when the error was first and last seen.
    created_at = models.DateTimeField(default=timezone.now, help_text="First seen.")
    updated_at = models.DateTimeField(default=timezone.now, help_text="Last seen.")

    class Meta:
        ordering = ["log", "external_id"]
        constraints = [models.UniqueConstraint(fields=["log", "external_id"], name="syncerror_one_per_record")]

    def __str__(self):
        return f"{self.external_id}: {self.message}"


class RecordEvent(LeasedWork):
    """One changed record sent over HTTP (POST /api/events/customers/ or products/), applied later with retries.

    The events of one record (entity and key) apply in the order they were received: an event waits while an
    earlier one of its record is not finished.
    """

    connection = models.ForeignKey("impex.Connection", on_delete=models.CASCADE, related_name="record_events")
    entity = models.CharField(max_length=50)
    descriptor_code = models.CharField(max_length=100)
    record_key = models.CharField(max_length=200, help_text="The record's external id.")
    payload = models.JSONField(help_text="The record's columns as sent, as text.")
    status = models.CharField(
        max_length=10, choices=RecordEventStatus.choices, default=RecordEventStatus.PENDING, db_index=True
    )
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=20, blank=True, default="", help_text="created, updated or unchanged.")
    message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-pk"]
        indexes = [
            models.Index(fields=["entity", "record_key", "id"], name="recordevent_record"),
            models.Index(fields=["status", "next_attempt_at"], name="recordevent_due"),
        ]

    def __str__(self):
        return f"{self.entity} {self.record_key} #{self.pk}"
