"""How the engine imports orders, order lines and shipments (KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS)."""

from impex.entities import EntitySpec, entity_register, natural_key_register


def _confirm_ready() -> None:
    from orders.services import orders_confirm_ready

    orders_confirm_ready(by="import")


def _shipments_to_feed() -> None:
    from orders.feeds import feed_events_from_shipments

    feed_events_from_shipments()


def register() -> None:
    """Register the order entities and the external id files name orders by."""
    natural_key_register("orders.Order", "order_id")
    for spec in (
        EntitySpec(
            "order",
            "Order",
            "orders.Order",
            ("order_id",),
            hub_fields=("state", "shipped_lines", "tracking_numbers", "state_changed_at"),
        ),
        EntitySpec(
            "order_line",
            "Order line",
            "orders.OrderLine",
            ("order", "line_no"),
            after_file=_confirm_ready,
            hub_fields=("shipped_at", "shipment"),
        ),
        EntitySpec("shipment", "Shipment", "orders.Shipment", ("shipment_id",), after_file=_shipments_to_feed),
    ):
        entity_register(spec)
