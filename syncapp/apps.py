"""App config of syncapp."""

from django.apps import AppConfig


class SyncappConfig(AppConfig):
    name = "syncapp"
    verbose_name = "Synced data"

    def ready(self):
        from syncapp import entities

        entities.register()
