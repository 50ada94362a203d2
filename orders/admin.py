"""Admin of orders, their lines and shipments: read-only like every synced record; the state machine moves states."""

from django.contrib import admin

from config.adminkit import ReadOnlyInline
from orders import resources
from orders.models import Order, OrderLine, Shipment
from syncapp.admin import SyncedEntityAdmin


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ("line_no", "variant", "quantity", "unit_price")
    readonly_fields = fields
    ordering = ("line_no",)


class ShipmentInline(ReadOnlyInline):
    model = Shipment
    fields = ("shipment_id", "carrier", "tracking_number", "shipped_at", "line_nos")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(SyncedEntityAdmin):
    resource_classes = [resources.OrderResource]
    list_display = ("order_id", "order_date", "customer", "currency", "total", "state", "connection")
    list_filter = ("state", "connection")
    search_fields = ("order_id", "customer__customer_id", "customer__email", "ship_to_name")
    list_select_related = ("customer", "connection")
    date_hierarchy = "order_date"
    inlines = (OrderLineInline, ShipmentInline)
    fieldsets = (
        (None, {"fields": ("order_id", "customer", "order_date", "currency", "total", "state")}),
        (
            "Shipping",
            {
                "fields": (
                    "shipping_method",
                    "ship_to_name",
                    "ship_to_line1",
                    "ship_to_city",
                    "ship_to_postcode",
                    "ship_to_country",
                )
            },
        ),
        ("Sync", {"fields": ("connection", "created_at", "updated_at")}),
    )


@admin.register(OrderLine)
class OrderLineAdmin(SyncedEntityAdmin):
    resource_classes = [resources.OrderLineResource]
    list_display = ("order", "line_no", "variant", "quantity", "unit_price", "connection")
    list_filter = ("connection",)
    search_fields = ("order__order_id", "variant__sku")
    list_select_related = ("order", "variant", "connection")


@admin.register(Shipment)
class ShipmentAdmin(SyncedEntityAdmin):
    resource_classes = [resources.ShipmentResource]
    list_display = ("shipment_id", "order", "carrier", "tracking_number", "shipped_at", "line_nos", "connection")
    list_filter = ("connection",)
    search_fields = ("shipment_id", "order__order_id", "tracking_number")
    list_select_related = ("order", "connection")
