"""Admin of orders, their lines and shipments; the order state is shown, and moved only by the state machine."""

from django.contrib import admin

from config.adminkit import LoadedAutocompleteInlineMixin
from orders import resources
from orders.models import Order, OrderLine, Shipment
from syncapp.admin import SyncedEntityAdmin


class OrderLineInline(LoadedAutocompleteInlineMixin, admin.TabularInline):
    model = OrderLine
    fields = ("line_no", "variant", "quantity", "unit_price")
    autocomplete_fields = ("variant",)
    ordering = ("line_no",)
    extra = 0


class ShipmentInline(admin.TabularInline):
    model = Shipment
    fields = ("shipment_id", "carrier", "tracking_number", "shipped_at", "line_nos")
    extra = 0


@admin.register(Order)
class OrderAdmin(SyncedEntityAdmin):
    resource_classes = [resources.OrderResource]
    list_display = ("order_id", "order_date", "customer", "currency", "total", "state", "connection")
    list_filter = ("state", "connection")
    search_fields = ("order_id", "customer__customer_id", "customer__email", "ship_to_name")
    list_select_related = ("customer", "connection")
    autocomplete_fields = ("customer",)
    readonly_fields = ("state", *SyncedEntityAdmin.readonly_fields)
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
    autocomplete_fields = ("order", "variant")


@admin.register(Shipment)
class ShipmentAdmin(SyncedEntityAdmin):
    resource_classes = [resources.ShipmentResource]
    list_display = ("shipment_id", "order", "carrier", "tracking_number", "shipped_at", "line_nos", "connection")
    list_filter = ("connection",)
    search_fields = ("shipment_id", "order__order_id", "tracking_number")
    list_select_related = ("order", "connection")
    autocomplete_fields = ("order",)
