"""Sync-log rules of SPEC section 8: a full sync starts the log over, a partial sync keeps and resolves."""

from urllib.parse import urlencode

from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from syncapp import selectors
from syncapp.models import SyncError, SyncLog


def sync_log_get(*, connection, entity: str) -> SyncLog:
    """Return the sync log of a connection's entity, creating it if needed."""
    log, _ = SyncLog.objects.get_or_create(connection=connection, entity=entity)
    return log


def sync_log_lock(*, connection, entity: str) -> SyncLog:
    """Lock the log's row until the caller's transaction ends (PostgreSQL; SQLite has one writer anyway)."""
    log = sync_log_get(connection=connection, entity=entity)
    # NO KEY: errors being added to the log (their foreign key takes KEY SHARE) need not wait.
    return SyncLog.objects.select_for_update(no_key=True).get(pk=log.pk)


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


def sync_log_add_errors(
    *,
    connection,
    entity: str,
    errors: dict,
    file_name: str = "",
    job_id=None,
    record_event_id=None,
    record_event_ids: dict | None = None,
) -> None:
    """Add or refresh open errors, one per external id: errors maps external id -> (message, row).

    record_event_ids maps an external id to the single-record update it came from (a batch of them at once).
    An error seen again keeps when it was first seen and takes the newer message, source and time.
    """
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
                job_id=job_id,
                record_event_id=record_event_ids.get(ext, record_event_id) if record_event_ids else record_event_id,
                created_at=now,
                updated_at=now,
            )
            for ext, (message, row) in errors.items()
        ],
        update_conflicts=True,
        unique_fields=["log", "external_id"],
        update_fields=["message", "file_name", "row", "job", "record_event", "updated_at"],
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


def sync_log_id(*, connection, entity: str) -> int | None:
    """Return the id of the connection's sync log of an entity, None while it has none."""
    return SyncLog.objects.filter(connection=connection, entity=entity).values_list("pk", flat=True).first()


def sync_log_resolve_later(*, writes, log_id: int, external_ids, then=None) -> None:
    """Queue in a WriteBatch (impex.services.sql) the resolution of any open errors of a log's records that have now
    synced cleanly, for a caller that believes there are none: one that was opened meanwhile is resolved all the
    same. then(count) runs once it is sent, with how many it resolved."""
    ids = sorted(external_ids)
    if not ids:
        return
    qn = connection.ops.quote_name
    delete = f"DELETE FROM {qn(SyncError._meta.db_table)} WHERE {qn('log_id')} = %s AND {qn('external_id')}"
    if connection.vendor == "postgresql":  # one array: the same statement text whatever the count
        writes.raw(f"{delete} = ANY(%s)", [log_id, ids], then=then)
        return
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        writes.raw(f"{delete} IN ({', '.join(['%s'] * len(part))})", [log_id, *part], then=then)


def sync_log_finish(*, connection, entity: str, full: bool, at=None, writes=None) -> None:
    """Stamp the log when a sync has been applied in full: last_full_sync or last_partial_sync.

    writes: a WriteBatch (impex.services.sql) the stamp goes in.
    """
    stamp = {"last_full_sync" if full else "last_partial_sync": at or timezone.now()}

    def stamped(count: int) -> None:
        if not count:  # no log yet
            log = sync_log_get(connection=connection, entity=entity)
            SyncLog.objects.filter(pk=log.pk).update(**stamp)

    # One statement when the log exists (each file of a job stamps it).
    if writes is not None:
        writes.update_where(SyncLog, {"connection_id": connection.pk, "entity": entity}, stamp, then=stamped)
    else:
        stamped(SyncLog.objects.filter(connection=connection, entity=entity).update(**stamp))


# -- the same rules over HTTP (SPEC section 10: /api/sync-logs/{entity}/) --------------------------------


def _reported(errors: list[dict]) -> dict:
    return {e["external_id"]: (e["message"], None) for e in errors}


@transaction.atomic
def sync_log_report_full(*, connection, entity: str, errors: list[dict], last_full_sync=None) -> SyncLog:
    """PUT: start a full sync log: the previous errors go, these are its errors; last_full_sync if it is done."""
    log = sync_log_start_full(connection=connection, entity=entity)
    if errors:
        sync_log_add_errors(connection=connection, entity=entity, errors=_reported(errors))
    if last_full_sync is not None:
        SyncLog.objects.filter(pk=log.pk).update(last_full_sync=last_full_sync)
    return SyncLog.objects.get(pk=log.pk)


@transaction.atomic
def sync_log_report_partial(
    *, connection, entity: str, errors: list[dict], resolved: list[str], last_full_sync=None
) -> SyncLog:
    """PATCH: a partial sync: resolve the listed ids, add the errors, keep the rest; last_partial_sync now."""
    log = sync_log_get(connection=connection, entity=entity)
    # Lock the log: two reports at once apply one after the other.
    SyncLog.objects.select_for_update(no_key=True).filter(pk=log.pk).first()
    for start in range(0, len(resolved), 1000):
        SyncError.objects.filter(log=log, external_id__in=resolved[start : start + 1000]).delete()
    if errors:
        sync_log_add_errors(connection=connection, entity=entity, errors=_reported(errors))
    changes = {"last_partial_sync": timezone.now()}
    if last_full_sync is not None:
        changes["last_full_sync"] = last_full_sync
    SyncLog.objects.filter(pk=log.pk).update(**changes)
    return SyncLog.objects.get(pk=log.pk)


def sync_log_delete(*, connection, entity: str) -> bool:
    """DELETE: drop the log and its errors; say whether there was one."""
    deleted, _ = SyncLog.objects.filter(connection=connection, entity=entity).delete()
    return bool(deleted)


class SyncLogService:
    """The sync-log services impex calls (impex.registry.SyncLogs), registered by syncapp's ready()."""

    has_errors = staticmethod(sync_log_has_errors)
    id = staticmethod(sync_log_id)
    start_full = staticmethod(sync_log_start_full)
    lock = staticmethod(sync_log_lock)
    finish = staticmethod(sync_log_finish)
    add_errors = staticmethod(sync_log_add_errors)
    resolve = staticmethod(sync_log_resolve)
    resolve_later = staticmethod(sync_log_resolve_later)
    open_error_counts = staticmethod(selectors.open_error_counts)
    open_error_count = staticmethod(selectors.open_error_count)

    @staticmethod
    def tables() -> tuple[str, ...]:
        return (SyncLog._meta.db_table, SyncError._meta.db_table)

    @staticmethod
    def admin_links(*, connection_id: int) -> dict[str, str]:
        logs = reverse("admin:syncapp_synclog_changelist")
        errors = reverse("admin:syncapp_syncerror_changelist")
        return {
            "logs": f"{logs}?{urlencode({'connection__id__exact': connection_id})}",
            "errors": f"{errors}?{urlencode({'log__connection__id__exact': connection_id})}",
        }
