"""Sync-log rules of SPEC section 8: a full sync starts the log over, a partial sync keeps and resolves."""

from django.db import transaction
from django.utils import timezone

from syncapp.models import SyncError, SyncLog


def sync_log_get(*, connection, entity: str) -> SyncLog:
    """Return the sync log of a connection's entity, creating it if needed."""
    log, _ = SyncLog.objects.get_or_create(connection=connection, entity=entity)
    return log


@transaction.atomic
def sync_log_start_full(*, connection, entity: str) -> SyncLog:
    """Start a full sync: clear the errors of the previous log."""
    log = sync_log_get(connection=connection, entity=entity)
    SyncError.objects.filter(log=log).delete()
    SyncLog.objects.filter(pk=log.pk).update(full_sync_started_at=timezone.now())
    return log


def sync_log_has_errors(*, connection, entity: str) -> bool:
    """Tell whether the log has open errors."""
    return SyncError.objects.filter(log__connection=connection, log__entity=entity).exists()


def sync_log_add_errors(*, connection, entity: str, errors: dict, file_name: str = "") -> None:
    """Add or refresh open errors, one per external id: errors maps external id -> (message, row)."""
    log = sync_log_get(connection=connection, entity=entity)
    now = timezone.now()
    SyncError.objects.bulk_create(
        [
            SyncError(
                log=log,
                external_id=ext[:200],
                message=message,
                file_name=file_name,
                row=row,
                created_at=now,
                updated_at=now,
            )
            for ext, (message, row) in errors.items()
        ],
        update_conflicts=True,
        unique_fields=["log", "external_id"],
        update_fields=["message", "file_name", "row", "updated_at"],
        batch_size=1000,
    )


def sync_log_resolve(*, connection, entity: str, external_ids) -> int:
    """Resolve the open errors of records that have now synced cleanly; return how many."""
    log = SyncLog.objects.filter(connection=connection, entity=entity).first()
    if log is None:
        return 0
    open_ids = SyncError.objects.filter(log=log)
    if open_ids.count() <= 10_000:
        # Few open errors (the usual case): match in memory, then delete only what matched.
        wanted = set(open_ids.values_list("external_id", flat=True)).intersection(external_ids)
        ids = list(wanted)
    else:
        ids = list(external_ids)
    deleted = 0
    for start in range(0, len(ids), 1000):
        deleted += SyncError.objects.filter(log=log, external_id__in=ids[start : start + 1000])._raw_delete(
            SyncError.objects.db
        )
    return deleted


def sync_log_finish(*, connection, entity: str, full: bool) -> None:
    """Stamp the log when a sync has been applied in full: last_full_sync or last_partial_sync."""
    log = sync_log_get(connection=connection, entity=entity)
    now = timezone.now()
    if full:
        SyncLog.objects.filter(pk=log.pk).update(last_full_sync=now)
    else:
        SyncLog.objects.filter(pk=log.pk).update(last_partial_sync=now)
