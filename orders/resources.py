"""django-import-export resources of orders, their lines and shipments (KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS).

Sheets go through the record pipeline with these descriptors (see syncapp.resources). The order state is
moved only by the state machine, so no resource reads or writes it.
"""

from import_export import fields

from impex.builtin import column_names
from orders.models import Order, OrderLine, Shipment
from syncapp.resources import SheetResource


class OrderResource(SheetResource):
    """Orders in the KS_ORDERS layout."""

    descriptor_code = "KS_ORDERS"
    customer_id = fields.Field(attribute="customer__customer_id", column_name="customer_id")

    class Meta:
        model = Order
        fields = export_order = column_names("KS_ORDERS")

    def get_queryset(self):
        return super().get_queryset().select_related("customer")


class OrderLineResource(SheetResource):
    """Order lines in the KS_ORDER_LINES layout, keyed by order_id and line_no."""

    descriptor_code = "KS_ORDER_LINES"
    order_id = fields.Field(attribute="order__order_id", column_name="order_id")
    sku = fields.Field(attribute="variant__sku", column_name="sku")

    class Meta:
        model = OrderLine
        fields = export_order = column_names("KS_ORDER_LINES")

    def get_queryset(self):
        return super().get_queryset().select_related("order", "variant")


class ShipmentResource(SheetResource):
    """Shipments in the KS_SHIPMENTS layout."""

    descriptor_code = "KS_SHIPMENTS"
    order_id = fields.Field(attribute="order__order_id", column_name="order_id")

    class Meta:
        model = Shipment
        fields = export_order = column_names("KS_SHIPMENTS")

    def get_queryset(self):
        return super().get_queryset().select_related("order")
