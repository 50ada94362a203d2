"""'Trigger a data sync' (SPEC sections 8 and 10): a connection's scheduled exports of an entity run once in full."""

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from impex.choices import ExportRunStatus, ExportTrigger, GroupDirection
from impex.entities import entity_choices
from impex.exceptions import ConfigurationError, FullSyncRefused, UnknownEntity
from impex.models import Connection, DataGroup, ExportRun, ExportRunEvent, ExportState, FullSync
from impex.registry import sync_logs
from impex.services.export_runs import export_group_check
from impex.services.schedules import EXPORT_TASK

# How the note on a failed run starts once a trigger has queued the full sync's run of its group again.
RETRY_NOTE = "asked again"


@dataclass(frozen=True)
class FullSyncStarted:
    """What a trigger did: the full sync, the export groups it runs in full, and whether it was under way already."""

    full_sync: FullSync
    exports: list[str]
    joined: bool
    retried: list[str] = field(default_factory=list)  # joined: the exports whose failed run of it was queued again


def full_sync_entity_check(*, entity: str) -> str:
    """Return entity if it names a registered entity; UnknownEntity, listing those there are, if not."""
    names = [name for name, _ in entity_choices()]
    if entity not in names:
        raise UnknownEntity(f"no entity is called '{entity}' (entities: {', '.join(names)})")
    return entity


def full_sync_exports(*, connection: Connection, entity: str) -> list[DataGroup]:
    """Return the connection's scheduled export groups of an entity (by their descriptor), by code."""
    return list(
        DataGroup.objects.filter(
            connection=connection,
            direction=GroupDirection.EXPORT,
            schedule_enabled=True,
            descriptors__entity=entity,
        )
        .distinct()
        .order_by("code")
    )


def full_sync_exports_by_entity(*, connection: Connection) -> dict[str, list[str]]:
    """Return the codes of the connection's scheduled export groups, by the entity each exports."""
    rows = (
        DataGroup.objects.filter(connection=connection, direction=GroupDirection.EXPORT, schedule_enabled=True)
        .exclude(descriptors=None)
        .values_list("descriptors__entity", "code")
        .order_by("descriptors__entity", "code")
        .distinct()
    )
    found: dict[str, list[str]] = {}
    for entity, code in rows:
        found.setdefault(entity, []).append(code)
    return found


def full_sync_trigger(*, connection: Connection, entity: str, by: str) -> FullSyncStarted:
    """Start a full sync of an entity for a connection: its log starts over, its scheduled exports of it run in full.

    Each export's next run (queued now, once committed) writes every record, its watermark reset, and is recorded
    as the full sync's; the log's last_full_sync is set when the last of them has written its file. A trigger
    while a full sync of the entity is still under way joins it: nothing is started twice. Without a scheduled export
    of the entity the log starts over and is stamped at once (nothing to send). Refused, with nothing changed, when
    one of the exports cannot run.
    """
    full_sync_entity_check(entity=entity)
    with transaction.atomic():
        # Two triggers at once: the second waits here, then finds the first under way (PostgreSQL; SQLite has one
        # writer at a time anyway).
        sync_logs().lock(connection=connection, entity=entity)
        groups = full_sync_exports(connection=connection, entity=entity)
        if not groups:
            return _nothing_to_export(connection=connection, entity=entity, by=by)
        for group in groups:
            try:
                export_group_check(group=group)
            except ConfigurationError as exc:
                raise FullSyncRefused(f"export group {group.code} cannot export: {exc}; nothing was started") from exc
        codes = [group.code for group in groups]
        under_way = (
            ExportState.objects.filter(group__in=groups, full_sync__connection=connection, full_sync__entity=entity)
            .select_related("full_sync")
            .first()
        )
        if under_way is not None:
            full_sync = under_way.full_sync
            # Its run that failed waits for the schedule's next turn (a day, for a daily export): asked again, it goes
            # now. A run queued or under way is left alone: nothing is started twice.
            retried = _failed_parts(full_sync=full_sync, groups=groups)
            for group, failed in retried:
                # Noted on the failed run, once: a trigger asked again and again (a dashboard's button) queues one run.
                ExportRunEvent.objects.create(
                    run=failed,
                    status=failed.status,
                    message=f"{RETRY_NOTE} by {by or 'the hub'}: full sync #{full_sync.pk}'s run queued again",
                )
                _queue(group=group, full_sync=full_sync, by=by, again=True)
            return FullSyncStarted(
                full_sync=full_sync, exports=codes, joined=True, retried=[group.code for group, _ in retried]
            )
        full_sync = FullSync.objects.create(connection=connection, entity=entity, created_by=by)
        full_sync.groups.set(groups)
        sync_logs().start_full(connection=connection, entity=entity)
        ExportState.objects.bulk_create([ExportState(group=group) for group in groups], ignore_conflicts=True)
        ExportState.objects.filter(group__in=groups).update(full_sync=full_sync)
        for group in groups:
            _queue(group=group, full_sync=full_sync, by=by)
    return FullSyncStarted(full_sync=full_sync, exports=codes, joined=False)


def _nothing_to_export(*, connection: Connection, entity: str, by: str) -> FullSyncStarted:
    """Start and end a full sync of a connection without a scheduled export of the entity: its log starts over and,
    with nothing to send, is applied in full at once (SPEC 8: last_full_sync once every part is applied)."""
    now = timezone.now()
    full_sync = FullSync.objects.create(connection=connection, entity=entity, created_by=by, finished_at=now)
    sync_logs().start_full(connection=connection, entity=entity)
    sync_logs().finish(connection=connection, entity=entity, full=True, at=now)
    return FullSyncStarted(full_sync=full_sync, exports=[], joined=False)


def _failed_parts(*, full_sync: FullSync, groups: list[DataGroup]) -> list[tuple[DataGroup, ExportRun]]:
    """Return the groups still to carry the full sync out whose last run since it started failed and was not queued
    again since, with that run (a group a run holds now is left to it)."""
    failed = []
    for group in groups:
        state = ExportState.objects.filter(pk=group.pk).values_list("full_sync_id", "run_id").first()
        if state is None or state[0] != full_sync.pk or state[1] is not None:
            continue  # not its part, or a run holds the group now
        last = (
            group.export_runs.filter(created_at__gte=full_sync.created_at, resend_of__isnull=True)
            .exclude(status=ExportRunStatus.SKIPPED)
            .order_by("-pk")
            .first()
        )
        if (
            last is not None
            and last.status == ExportRunStatus.FAILED
            and not last.events.filter(message__startswith=RETRY_NOTE).exists()
        ):
            failed.append((group, last))
    return failed


def _queue(*, group: DataGroup, full_sync: FullSync, by: str, again: bool = False) -> None:
    group_id, reason = group.pk, f"full sync #{full_sync.pk} of {full_sync.entity}"
    if again:
        reason += ", run again: its last run failed"
    transaction.on_commit(
        lambda: async_task(
            EXPORT_TASK,
            group_id,
            ExportTrigger.FULL_SYNC.value,
            by,
            reason,
            task_name=f"export {group.code} (full sync)",
            group="impex-export",
        )
    )
