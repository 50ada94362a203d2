"""django-import-export resources of orders, their lines and shipments (KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS).

For small ad-hoc files in the admin; big files go through ImpEx (`manage.py impex_import`). The order
state is moved only by the state machine, so no resource reads or writes it.
"""

from orders.models import Order, OrderLine, Shipment
from syncapp.models import Customer, ProductVariant
from syncapp.resources import SafeExportResource, reference


class OrderResource(SafeExportResource):
    """Orders in the KS_ORDERS layout."""

    customer_id = reference("customer", "customer_id", Customer, "customer_id")

    class Meta(SafeExportResource.Meta):
        model = Order
        import_id_fields = ("order_id",)
        fields = (
            "order_id",
            "customer_id",
            "order_date",
            "currency",
            "total",
            "shipping_method",
            "ship_to_name",
            "ship_to_line1",
            "ship_to_city",
            "ship_to_postcode",
            "ship_to_country",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("customer")


class OrderLineResource(SafeExportResource):
    """Order lines in the KS_ORDER_LINES layout, keyed by order_id and line_no."""

    order_id = reference("order", "order_id", Order, "order_id")
    sku = reference("variant", "sku", ProductVariant, "sku")

    class Meta(SafeExportResource.Meta):
        model = OrderLine
        import_id_fields = ("order_id", "line_no")
        fields = ("order_id", "line_no", "sku", "quantity", "unit_price")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("order", "variant")


class ShipmentResource(SafeExportResource):
    """Shipments in the KS_SHIPMENTS layout."""

    order_id = reference("order", "order_id", Order, "order_id")

    class Meta(SafeExportResource.Meta):
        model = Shipment
        import_id_fields = ("shipment_id",)
        fields = ("shipment_id", "order_id", "carrier", "tracking_number", "shipped_at", "line_nos")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("order")
