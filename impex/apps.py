"""App config of impex."""

import sqlite3

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _install_schedules(sender, using="default", **kwargs):
    """Install impex's schedules after every migrate (idempotent), once django-q2's tables exist."""
    from django.db import connections
    from django_q.models import Schedule

    from impex.services.schedules import schedules_sync

    if Schedule._meta.db_table in connections[using].introspection.table_names():
        schedules_sync()


def _sqlite_query_params(sender, connection, **kwargs):
    """Let bulk writes on SQLite use the limit of query parameters the library has (32766 since SQLite 3.32), not the
    999 Django 5.2 assumes: a batch is then one INSERT, not one per 90 rows, and queries per batch stay constant."""
    if connection.vendor == "sqlite":
        connection.features.max_query_params = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


class ImpexConfig(AppConfig):
    name = "impex"
    verbose_name = "ImpEx"

    def ready(self):
        # Django's own hook for set-up after migrate: the schedules need the database, so not at import time.
        post_migrate.connect(_install_schedules, sender=self, dispatch_uid="impex-schedules")
        connection_created.connect(_sqlite_query_params, dispatch_uid="impex-sqlite-query-params")
        from impex import checks  # noqa: F401 (registers the start-up checks)
