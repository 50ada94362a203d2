"""How the engine imports orders, order lines and shipments (KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS)."""

from impex.entities import EntitySpec, entity_register, natural_key_register
from orders.amendments import file_finish, lines_before_write, orders_after_write, orders_before_write
from orders.feeds import feed_events_from_shipments
from orders.services import orders_confirm_ready


def register() -> None:
    """Register the order entities and the external id files name orders by."""
    natural_key_register("orders.Order", "order_id")
    for spec in (
        EntitySpec(
            "order",
            "Order",
            "orders.Order",
            ("order_id",),
            hub_fields=("state", "shipped_lines", "tracking_numbers", "state_changed_at", "version"),
            before_write=orders_before_write,
            after_write=orders_after_write,
            file_finish=file_finish,
        ),
        EntitySpec(
            "order_line",
            "Order line",
            "orders.OrderLine",
            ("order", "line_no"),
            after_file=orders_confirm_ready,
            hub_fields=("shipped_at", "shipment"),
            before_write=lines_before_write,
            after_write=orders_after_write,
            file_finish=file_finish,
        ),
        EntitySpec("shipment", "Shipment", "orders.Shipment", ("shipment_id",), after_file=feed_events_from_shipments),
    ):
        entity_register(spec)
