"""App config of impex."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_schedules(sender, using="default", **kwargs):
    """Install impex's schedules after every migrate (idempotent), once django-q2's tables exist."""
    from django.db import connections
    from django_q.models import Schedule

    from impex.services.schedules import schedules_sync

    if Schedule._meta.db_table in connections[using].introspection.table_names():
        schedules_sync()


class ImpexConfig(AppConfig):
    name = "impex"
    verbose_name = "ImpEx"

    def ready(self):
        # Django's own hook for set-up after migrate: the schedules need the database, so not at import time.
        post_migrate.connect(_install_schedules, sender=self, dispatch_uid="impex-schedules")
        from impex import checks  # noqa: F401 (registers the start-up checks)
