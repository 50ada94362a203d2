"""App config of orders: registers its entities, exporter kinds, schedules, demo and home page panel below."""

from django.apps import AppConfig

from impex.registry import DemoPart, demo_register, home_panel_register, schedule_register, work_queue_register


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self):
        # Imported here, not above: they import models, which are loaded only once the apps are ready.
        from orders import checks, demo, entities  # noqa: F401 (checks registers the start-up checks)
        from orders.exporters.approval import ApprovalGate
        from orders.exporters.file import FileExporter
        from orders.exporters.registry import exporter_kind_register
        from orders.exporters.webhook import WebhookExporter

        entities.register()
        for kind in (FileExporter(), WebhookExporter(), ApprovalGate()):
            exporter_kind_register(kind)
        schedule_register(
            name="push flagged orders through their exporters", func="orders.tasks.orders_export", minutes=1
        )
        schedule_register(name="apply order update feed events", func="orders.tasks.orders_feed", minutes=1)
        work_queue_register("order_deliveries", "orders.services.FLAGS")
        work_queue_register("feed_events", "orders.feeds.FEED")
        home_panel_register("held orders", "orders.admin.held_orders_panel")
        demo_register(DemoPart(name="orders", title="Orders", set_up=demo.demo_chain_set_up, run=demo.demo_chain_run))
