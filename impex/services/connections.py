"""Create, update and delete connections; the rules themselves are Connection.clean()'s."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.defaultfilters import pluralize

from impex.exceptions import ConnectionDeleteRefused, ConnectionInvalid
from impex.models import Connection
from impex.services.schedules import schedules_sync_on_commit


@transaction.atomic
def connection_save(
    *,
    code: str,
    convention: str | None = None,
    company_name: str | None = None,
    integration_id: str | None = None,
    inbox: str | None = None,
    timezone: str | None = None,
    contacts: str | None = None,
    interval_minutes: int | None = None,
    scan_cron: str | None = None,
    scan_enabled: bool | None = None,
    archive_folder: str | None = None,
    error_folder: str | None = None,
    outbox: str | None = None,
) -> tuple[Connection, bool]:
    """Create the connection or update the fields given; return it and whether it was created."""
    conn = Connection.objects.select_for_update().filter(code=code).first()
    created = conn is None
    if created:
        if not convention:
            raise ConnectionInvalid({"convention": ["A new connection needs its naming convention (bspk or kore)."]})
        conn = Connection(code=code, name=code)
    for name, value in (
        ("convention", convention),
        ("company_name", company_name),
        ("integration_id", integration_id),
        ("inbox", inbox),
        ("timezone", timezone),
        ("contacts", contacts),
        ("interval_minutes", interval_minutes),
        ("scan_cron", scan_cron),
        ("scan_enabled", scan_enabled),
        ("archive_folder", archive_folder),
        ("error_folder", error_folder),
        ("outbox", outbox),
    ):
        if value is not None:
            setattr(conn, name, value)
    try:
        conn.full_clean()
    except ValidationError as exc:
        raise ConnectionInvalid(exc.message_dict) from exc
    conn.save()
    schedules_sync_on_commit()
    return conn, created


def connection_delete_check(*, connection: Connection, confirm: bool) -> int:
    """Refuse to delete a connection that would forget imported file names unasked; return how many it forgets."""
    forgotten = connection.imported_names.count()
    if forgotten and connection.active:
        raise ConnectionDeleteRefused(
            f"Connection '{connection}' has imported {forgotten} file name{pluralize(forgotten)}, and that record "
            "is what keeps a file from being imported twice. Switch it off first (untick Active and save), "
            "then delete it."
        )
    if forgotten and not confirm:
        raise ConnectionDeleteRefused(
            f"Deleting connection '{connection}' forgets its {forgotten} imported file name{pluralize(forgotten)}, "
            "so files with those names could be imported again: confirm the deletion to go ahead."
        )
    return forgotten


@transaction.atomic
def connection_delete(*, connection: Connection, confirm: bool) -> int:
    """Delete a connection with its imported file names and sync logs; return how many file names it forgot."""
    # The lock holds back a job that would record a new imported name for it meanwhile.
    locked = Connection.objects.select_for_update().get(pk=connection.pk)
    forgotten = connection_delete_check(connection=locked, confirm=confirm)
    locked.delete()
    schedules_sync_on_commit()
    return forgotten
