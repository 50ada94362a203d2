"""App config of impex."""

import sqlite3

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate

from impex.choices import ProblemKind
from impex.registry import problem_mail_register, work_queue_register


def _sqlite_query_params(sender, connection, **kwargs):
    """Let bulk writes on SQLite use the limit of query parameters the library has (32766 since SQLite 3.32), not the
    999 Django 5.2 assumes: a batch is then one INSERT, not one per 90 rows, and queries per batch stay constant."""
    if connection.vendor == "sqlite":
        connection.features.max_query_params = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


class ImpexConfig(AppConfig):
    name = "impex"
    verbose_name = "ImpEx"

    def ready(self):
        # Imported here, not above: they import models, which are loaded only once the apps are ready.
        from impex import checks  # noqa: F401 (registers the start-up checks)
        from impex.services.schedules import schedules_sync_after_migrate

        # Django's own hook for set-up after migrate: the schedules need the database, so not at import time.
        post_migrate.connect(schedules_sync_after_migrate, sender=self, dispatch_uid="impex-schedules")
        connection_created.connect(_sqlite_query_params, dispatch_uid="impex-sqlite-query-params")
        # The kinds that were mailed before problems existed keep their mail's subject and lines.
        # By dotted path: importing the engine here would load it in every process (the web server's too).
        problem_mail_register(ProblemKind.IMPORT_JOB, "impex.services.notices.job_problem_mail")
        problem_mail_register(ProblemKind.SEQUENCE_WAIT, "impex.services.waits.sequence_wait_mail")
        problem_mail_register(ProblemKind.INBOX, "impex.services.inbox.inbox_problem_mail")
        work_queue_register("import_chunks", "impex.services.imports.CHUNKS")
        work_queue_register("webhook_deliveries", "impex.services.webhooks.DELIVERIES")
