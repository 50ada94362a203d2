"""App config of syncapp: registers its entities, its schedule and the sync-log services with impex."""

from django.apps import AppConfig

from impex.registry import purger_register, schedule_register, sync_logs_register, work_queue_register


class SyncappConfig(AppConfig):
    name = "syncapp"
    verbose_name = "Synced data"

    def ready(self):
        # Imported here, not above: they import models, which are loaded only once the apps are ready.
        from syncapp import entities
        from syncapp.services import SyncLogService

        entities.register()
        sync_logs_register(SyncLogService())
        schedule_register(name="apply single-record updates", func="syncapp.tasks.record_events", minutes=1)
        work_queue_register("record_events", "syncapp.record_events.RECORD_EVENTS")
        purger_register("record_events", "syncapp.purge.record_events_purge")
