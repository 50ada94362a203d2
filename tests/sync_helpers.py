"""Sync activity for the dashboards' tests: customers customers synced by a file, a shop's single-record updates."""

from datetime import timedelta

from django.utils import timezone

from impex.models import Connection
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.models import RecordEvent, SyncError, SyncLog


def customers_synced(folder, connection: Connection, *, good: int = 3, refused: int = 1) -> SyncLog:
    """Import a FULL customers file of good customers and refused ones (no e-mail); return the connection's log."""
    rows = [customer_row(f"C-{n}") for n in range(1, good + 1)]
    rows += [customer_row(f"C-{900 + n}", email="") for n in range(refused)]
    code, report = run_import(write_kore(folder, "KS_CUSTOMERS", 1, rows, mode="FULL"))
    assert code == 0, report
    return SyncLog.objects.get(connection=connection, entity="customer")


def shop_with_updates(code: str, *, days_ago: list[int], failed_every: int = 0, errors: int = 1) -> Connection:
    """A connection whose product variants got single-record updates days ago (every Nth failed), with open errors."""
    conn = Connection.objects.create(code=code, name=code, convention="kore", integration_id=code.upper())
    log = SyncLog.objects.create(connection=conn, entity="product_variant", last_partial_sync=timezone.now())
    now = timezone.now()
    RecordEvent.objects.bulk_create(
        RecordEvent(
            connection=conn,
            entity="product_variant",
            descriptor_code="KS_PRODUCTS",
            record_key=f"V-{n}",
            payload={},
            status="failed" if failed_every and n % failed_every == 0 else "applied",
            applied_at=now - timedelta(days=ago),
        )
        for n, ago in enumerate(days_ago)
    )
    SyncError.objects.bulk_create(SyncError(log=log, external_id=f"E-{n}", message="bad") for n in range(errors))
    return conn
