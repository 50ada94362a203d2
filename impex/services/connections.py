"""Create, update and release connections."""

from django.core.exceptions import ValidationError
from django.db import transaction

from impex.exceptions import ConfigurationError
from impex.models import Connection


@transaction.atomic
def connection_save(
    *,
    code: str,
    convention: str,
    company_name: str | None = None,
    integration_id: str | None = None,
    inbox: str | None = None,
    timezone: str | None = None,
    contacts: str | None = None,
    interval_minutes: int | None = None,
) -> tuple[Connection, bool]:
    """Create the connection or update the fields given; return it and whether it was created."""
    conn = Connection.objects.select_for_update().filter(code=code).first()
    created = conn is None
    if created:
        conn = Connection(code=code, name=code)
    conn.convention = convention
    for name, value in (
        ("company_name", company_name),
        ("integration_id", integration_id),
        ("inbox", inbox),
        ("timezone", timezone),
        ("contacts", contacts),
        ("interval_minutes", interval_minutes),
    ):
        if value is not None:
            setattr(conn, name, value)
    if conn.convention == "bspk" and not conn.company_name:
        raise ConfigurationError("a BSPK connection needs --company (the company name in its file names)")
    if conn.convention == "kore" and not conn.integration_id:
        raise ConfigurationError("a Kore connection needs --integration (the integration id in its file names)")
    try:
        conn.full_clean()
    except ValidationError as exc:
        raise ConfigurationError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
    conn.save()
    return conn, created
