"""Start-up checks: the folders saved before the location rules that the hub now refuses (SPEC 13), by name."""

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError

from impex.models import Connection, DataGroup, location_errors

HINT = (
    "Set another location in the admin (or impex_connection), or have the operator list its root in "
    "IMPEX_ALLOWED_LOCAL_ROOTS (an SFTP host in SFTP_HOSTS, an FTP one in FTP_HOSTS). Until then the hub refuses it "
    "at use: scans, imports and exports of it fail with this reason, and nothing is read or written there."
)


def refused_locations(rows, *, kind: str, fields: tuple[str, ...], check_id: str) -> list[Warning]:
    """Return a warning for each location of the rows (model instances) that the hub refuses now."""
    found = []
    for row in rows:
        for name in fields:
            # No DNS at start-up: an SFTP or FTP host's address is checked each time it is called.
            messages = location_errors(getattr(row, name), what=row._meta.get_field(name).verbose_name, resolve=False)
            found += [
                Warning(f"{kind} {row.code}: {message}", hint=HINT, obj=type(row), id=check_id) for message in messages
            ]
    return found


@register(Tags.database)
def connection_locations_check(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    """Name every connection and export group whose folder the hub refuses (migrate and check --database run it)."""
    if not databases:
        return []
    try:
        return [
            *refused_locations(
                Connection.objects.all(), kind="connection", fields=Connection.LOCATION_FIELDS, check_id="impex.W001"
            ),
            *refused_locations(
                DataGroup.objects.exclude(destination=""),
                kind="export group",
                fields=DataGroup.LOCATION_FIELDS,
                check_id="impex.W001",
            ),
        ]
    except DatabaseError:  # not migrated yet: nothing is saved
        return []
