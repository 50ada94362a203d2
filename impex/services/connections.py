"""Create, update and delete connections; the rules themselves are Connection.clean()'s."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.defaultfilters import pluralize

from impex.choices import GroupDirection
from impex.exceptions import ConnectionDeleteRefused, ConnectionInvalid
from impex.models import Connection, DataGroup
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
    scan_seconds: int | None = None,
    scan_enabled: bool | None = None,
    archive_folder: str | None = None,
    error_folder: str | None = None,
    outbox: str | None = None,
    groups: list[str] | None = None,
) -> tuple[Connection, bool]:
    """Create the connection or update the fields given; return it and whether it was created.

    groups: the codes of its import groups (all of them: the others it had are let go); a patterns connection's
    file names are matched by their descriptors' file patterns. scan_seconds: 0 clears it (minutes or cron again).
    """
    conn = Connection.objects.select_for_update().filter(code=code).first()
    created = conn is None
    if created:
        if not convention:
            raise ConnectionInvalid(
                {"convention": ["A new connection needs its naming convention (bspk, kore or patterns)."]}
            )
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
        ("scan_seconds", scan_seconds),
        ("scan_enabled", scan_enabled),
        ("archive_folder", archive_folder),
        ("error_folder", error_folder),
        ("outbox", outbox),
    ):
        if value is not None:
            setattr(conn, name, None if name == "scan_seconds" and value == 0 else value)
    errors = {}
    try:
        conn.full_clean()
    except ValidationError as exc:
        errors = exc.message_dict
    chosen = _groups_named(groups, errors=errors) if groups is not None else list(conn.import_groups())
    if not errors:
        group_errors = conn.groups_errors(chosen)
        if group_errors:
            errors = {"groups": group_errors}
    if errors:
        raise ConnectionInvalid(errors)
    conn.save()
    if groups is not None:
        connection_groups_set(connection=conn, groups=chosen)
    schedules_sync_on_commit()
    return conn, created


def _groups_named(codes: list[str], *, errors: dict) -> list[DataGroup]:
    """Return the groups of these codes, adding to errors the codes no group has."""
    found = {g.code: g for g in DataGroup.objects.filter(code__in=codes).select_related("connection")}
    unknown = [code for code in codes if code not in found]
    if unknown:
        known = (
            DataGroup.objects.filter(direction=GroupDirection.IMPORT).order_by("code").values_list("code", flat=True)
        )
        errors.setdefault("groups", []).append(
            f"no group is called {', '.join(unknown)} (import groups: {', '.join(known) or 'none'})"
        )
    return [found[code] for code in dict.fromkeys(codes) if code in found]


def connection_groups_set(*, connection: Connection, groups: list[DataGroup]) -> None:
    """Make these the connection's import groups: each is given the connection, and its other import groups let go."""
    chosen = [g.pk for g in groups]
    connection.import_groups().exclude(pk__in=chosen).update(connection=None)
    DataGroup.objects.filter(pk__in=chosen).update(connection=connection)


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
