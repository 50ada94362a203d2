"""Orders, their lines and shipments, as imported from KS_ORDERS, KS_ORDER_LINES and KS_SHIPMENTS."""

from django.db import models

from orders.choices import OrderState
from syncapp.models import SyncedModel


class Order(SyncedModel):
    order_id = models.CharField(max_length=100, unique=True)
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
    # Moved only by the order state machine (a later issue); imports never write it.
    state = models.CharField(max_length=20, choices=OrderState.choices, default=OrderState.NEW, db_index=True)

    class Meta:
        ordering = ["-order_date", "order_id"]

    def __str__(self):
        return self.order_id


class OrderLine(SyncedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_no = models.IntegerField()
    variant = models.ForeignKey("syncapp.ProductVariant", on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.IntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=4)

    class Meta:
        ordering = ["order__order_id", "line_no"]
        constraints = [models.UniqueConstraint(fields=["order", "line_no"], name="orderline_key")]

    def __str__(self):
        return f"{self.order_id}#{self.line_no}"


class Shipment(SyncedModel):
    shipment_id = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.CharField(max_length=100, blank=True, default="")
    tracking_number = models.CharField(max_length=200, blank=True, default="")
    shipped_at = models.DateTimeField()
    line_nos = models.CharField(max_length=500, blank=True, default="", help_text="e.g. 1;2 - empty means all lines")

    class Meta:
        ordering = ["-shipped_at", "shipment_id"]

    def __str__(self):
        return self.shipment_id
