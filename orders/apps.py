"""App config of orders."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self):
        from orders import checks, entities  # noqa: F401 (checks registers the start-up checks)

        entities.register()
