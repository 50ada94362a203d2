"""Sync-log rules of SPEC section 8 across the ways data comes in: a full sync of several files in one job, a
partial sync by a single-record update, and a connection's deletion."""

from django.db import transaction

from impex.services.connections import connection_delete
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.models import SyncError, SyncLog
from syncapp.record_events import record_events_pass


def open_errors(connection) -> set[str]:
    return set(
        SyncError.objects.filter(log__connection=connection, log__entity="customer").values_list(
            "external_id", flat=True
        )
    )


def log_of(connection) -> SyncLog:
    return SyncLog.objects.get(connection=connection, entity="customer")


def test_a_full_sync_of_two_files_in_one_job_keeps_the_errors_of_both(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("OLD", email="")]))
    first = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("A1", email=""), customer_row("A2")], mode="FULL")
    second = write_kore(tmp_path, "KS_CUSTOMERS", 3, [customer_row("B1", email=""), customer_row("B2")], mode="FULL")

    code, report = run_import(first, second)

    assert code == 0, report
    # The first file started the log over (OLD is gone); the second added to it instead of starting again.
    assert open_errors(kore_connection) == {"A1", "B1"}
    assert log_of(kore_connection).last_full_sync is not None


def test_last_full_sync_waits_for_every_file_of_the_full_sync(tmp_path, kore_connection):
    good = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("A1", email=""), customer_row("A2")], mode="FULL")
    bad = write_kore(tmp_path, "KS_CUSTOMERS", 2, [{"customer_id": "B1", "shoe_size": "44"}], mode="FULL")

    code, report = run_import(good, bad)

    assert code == 1
    assert [f["status"] for f in report["files"]] == ["imported", "rejected"]
    log = log_of(kore_connection)
    assert log.last_full_sync is None
    assert open_errors(kore_connection) == {"A1"}


def test_a_single_record_update_is_a_partial_sync(api, tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email=""), customer_row("C2")], mode="FULL"))
    full = log_of(kore_connection).last_full_sync

    api.post("/api/events/customers/", {"customer_id": "C1", "email": "c1@example.com"})
    api.post("/api/events/customers/", {"customer_id": "C2", "discount_percentage": "lots"})
    record_events_pass(by="test")

    log = log_of(kore_connection)
    assert open_errors(kore_connection) == set()  # C1 resolved; C2's bad body was refused with a 400
    assert log.last_full_sync == full
    assert log.last_partial_sync is not None


def test_deleting_a_connection_deletes_its_logs(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email="")]))
    assert SyncLog.objects.filter(connection=kore_connection).exists()

    kore_connection.active = False  # a connection with imported files is switched off before it goes
    kore_connection.save()
    with transaction.atomic():
        connection_delete(connection=kore_connection, confirm=True)

    assert not SyncLog.objects.exists()
    assert not SyncError.objects.exists()
