"""Reads of the admin's pages besides a record's own fields: a connection's scans and inbox, an export group's runs,
files sent and watermark, the descriptors an entity's export offers."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django_q.models import Schedule

from impex.models import (
    Connection,
    ConnectionState,
    DataDescriptor,
    DataGroup,
    ExportRun,
    ExportState,
    InboxFile,
    SentFile,
)
from impex.services.schedules import scan_schedule_name


@dataclass(frozen=True)
class ConnectionInbox:
    """What a connection's page shows of its inbox: the engine's state (its last scan), the next scan, the files."""

    state: ConnectionState | None
    next_scan_at: datetime | None
    files: list[InboxFile]


def connections_next_scan(*, connections) -> dict[int, datetime]:
    """Return when each connection's inbox is next scanned on schedule (by the connection's pk), in one query."""
    by_name = {scan_schedule_name(conn): conn.pk for conn in connections}
    next_runs = Schedule.objects.filter(name__in=by_name).values_list("name", "next_run")
    return {by_name[name]: next_run for name, next_run in next_runs}


def connection_inbox(*, connection: Connection, limit: int) -> ConnectionInbox:
    """Return a connection's scan state, its next scheduled scan and the newest limit files found in its inbox."""
    state = ConnectionState.objects.filter(connection=connection).first()
    next_scan_at = connections_next_scan(connections=[connection]).get(connection.pk)
    files = list(
        InboxFile.objects.filter(connection=connection)
        .select_related("job", "import_file")
        .order_by("-first_seen", "-id")[:limit]
    )
    return ConnectionInbox(state=state, next_scan_at=next_scan_at, files=files)


def group_export_runs(*, group: DataGroup, limit: int) -> QuerySet[ExportRun]:
    """Return an export group's latest runs (the newest limit), with the file each one sent again."""
    return group.export_runs.select_related("resend_of")[:limit]


def group_sent_files(*, group: DataGroup, limit: int) -> QuerySet[SentFile]:
    """Return the latest files an export group's runs sent (the newest limit), with their runs."""
    return group.sent_files.select_related("run")[:limit]


def group_export_state(*, group: DataGroup) -> ExportState | None:
    """Return an export group's state (its watermark), or None before its first scheduled run."""
    return ExportState.objects.filter(group=group).first() if group.pk else None


def entity_descriptors(*, entity: str | None) -> QuerySet[DataDescriptor]:
    """Return the descriptors that write an entity, the built-in one first."""
    return DataDescriptor.objects.filter(entity=entity).order_by("-builtin", "precedence", "code")
