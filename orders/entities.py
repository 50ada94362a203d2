"""How the engine imports orders, order lines and shipments (KS_ORDERS, KS_ORDER_LINES, KS_SHIPMENTS)."""

from impex.entities import EntitySpec, entity_register, natural_key_register


def _confirm_ready() -> None:
    from orders.services import orders_confirm_ready

    orders_confirm_ready(by="import")


def _shipments_to_feed() -> None:
    from orders.feeds import feed_events_from_shipments

    feed_events_from_shipments()


def _orders_before_write(pipeline, good, out):
    from orders.amendments import orders_before_write

    return orders_before_write(pipeline, good, out)


def _lines_before_write(pipeline, good, out):
    from orders.amendments import lines_before_write

    return lines_before_write(pipeline, good, out)


def _after_write(pipeline) -> None:
    from orders.amendments import orders_after_write

    orders_after_write(pipeline)


def _file_finish(import_file) -> None:
    from orders.amendments import file_finish

    file_finish(import_file)


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
            before_write=_orders_before_write,
            after_write=_after_write,
            file_finish=_file_finish,
        ),
        EntitySpec(
            "order_line",
            "Order line",
            "orders.OrderLine",
            ("order", "line_no"),
            after_file=_confirm_ready,
            hub_fields=("shipped_at", "shipment"),
            before_write=_lines_before_write,
            after_write=_after_write,
            file_finish=_file_finish,
        ),
        EntitySpec("shipment", "Shipment", "orders.Shipment", ("shipment_id",), after_file=_shipments_to_feed),
    ):
        entity_register(spec)
