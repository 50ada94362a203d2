"""'Trigger a data sync' (SPEC sections 8 and 10): POST /api/full-sync/{entity}/ and the admin's buttons start a full
sync log of the entity and make each of the connection's scheduled exports of it run once in full; last_full_sync is
set when the last of those runs has written its file; a second trigger while one is under way starts nothing."""

import threading
import time

import psycopg
import pytest
from django.db import connection, connections
from django.test import Client
from django_q.models import OrmQ

from impex.exceptions import FullSyncRefused, UnknownEntity
from impex.models import Connection, DataGroup, ExportRun, ExportState, FullSync, SentFile
from impex.services.export_runs import export_run, export_runs_sweep
from impex.services.full_sync import full_sync_trigger
from impex.services.tokens import api_token_issue
from impex.tasks import export_group_run
from syncapp.models import Customer, SyncError, SyncLog
from syncapp.services import sync_log_add_errors
from syncapp.tests.api_helpers import Api
from tests import test_export_schedules
from tests.admin_helpers import admin_url, staff_user, table_snapshot
from tests.test_export_schedules import descriptor_copy, died_while_running, export_group, ids_in, watermark_of

EXPORT_DATA = "impex.export_data"
URL = "/api/full-sync/customer/"
customers = test_export_schedules.customers  # the fixture: three customers


@pytest.fixture
def shop(customers, kore_connection, bspk_connection, tmp_path):
    """Kore's two scheduled, incremental customer exports (to two folders), each run once; its product export, its
    customer export that is not on a schedule; and the other connection's scheduled customer export, run once."""
    folders = {}
    for code in ("customers-crm", "customers-out", "customers-acme"):
        folders[code] = tmp_path / "receivers" / code
        folders[code].mkdir(parents=True)
    scheduled = {"schedule_enabled": True, "interval_minutes": 60, "incremental": True}
    groups = {
        "customers-out": export_group(
            code="customers-out", connection=kore_connection, destination=str(folders["customers-out"]), **scheduled
        ),
        "customers-crm": export_group(
            code="customers-crm", connection=kore_connection, destination=str(folders["customers-crm"]), **scheduled
        ),
        "customers-acme": export_group(
            code="customers-acme",
            connection=bspk_connection,
            destination=str(folders["customers-acme"]),
            **scheduled,
        ),
        "products-out": export_group(
            code="products-out", descriptor="KS_PRODUCTS", connection=kore_connection, **scheduled
        ),
        "customers-by-hand": export_group(code="customers-by-hand", connection=kore_connection),
    }
    for code in ("customers-out", "customers-crm", "customers-acme"):
        export_run(group_id=groups[code].pk, trigger="schedule")
    return groups, folders


def queued() -> list[tuple]:
    """The arguments of the export tasks queued, by group code."""
    tasks = [q.task for q in OrmQ.objects.order_by("pk")]
    assert all(task["func"] == "impex.tasks.export_group_run" for task in tasks)
    return sorted(task["args"] for task in tasks)


def run_queued(group: DataGroup) -> ExportRun:
    """Run the queued export task of a group, as a worker does, and take it off the queue."""
    (row,) = [q for q in OrmQ.objects.all() if q.task["args"][0] == group.pk]
    row.delete()
    export_group_run(*row.task["args"])
    return ExportRun.objects.filter(group=group).latest("pk")


def log_of(conn, entity="customer") -> SyncLog:
    return SyncLog.objects.get(connection=conn, entity=entity)


def errors_of(conn) -> list[str]:
    return sorted(SyncError.objects.filter(log__connection=conn).values_list("external_id", flat=True))


# -- the full sync ------------------------------------------------------------------------------------------------


def test_each_scheduled_export_of_the_entity_runs_once_in_full_and_the_last_stamps_the_log(
    shop, kore_connection, bspk_connection, django_capture_on_commit_callbacks
):
    groups, folders = shop
    changed = Customer.objects.get(customer_id="C2")
    changed.first_name = "Junko"
    changed.save()  # changed since the runs' watermarks: an incremental run would write it alone
    sync_log_add_errors(connection=kore_connection, entity="customer", errors={"C9": ("bad email", 3)})
    sync_log_add_errors(connection=bspk_connection, entity="customer", errors={"C8": ("bad email", 4)})
    acme_watermark = watermark_of(groups["customers-acme"])

    with django_capture_on_commit_callbacks(execute=True):
        started = full_sync_trigger(connection=kore_connection, entity="customer", by="ana")

    full_sync = started.full_sync
    assert (started.exports, started.joined) == (["customers-crm", "customers-out"], False)
    assert (full_sync.entity, full_sync.created_by, full_sync.finished_at) == ("customer", "ana", None)
    reason = f"full sync #{full_sync.pk} of customer"
    assert queued() == sorted(
        (groups[code].pk, "full_sync", "ana", reason) for code in ("customers-out", "customers-crm")
    )
    # The log started over; the other connection's is left alone.
    assert errors_of(kore_connection) == [] and errors_of(bspk_connection) == ["C8"]
    assert log_of(kore_connection).last_full_sync is None

    first = run_queued(groups["customers-out"])

    assert (first.status, first.trigger, first.created_by, first.since) == ("completed", "full_sync", "ana", None)
    assert first.full_sync == full_sync and first.rows == 3
    sent = SentFile.objects.get(run=first)
    assert ids_in((folders["customers-out"] / sent.name).read_bytes()) == ["C1", "C2", "C3"]
    assert watermark_of(groups["customers-out"]) == first.watermark
    started_event = first.events.get(status="running").message
    assert f"every record, for full sync #{full_sync.pk} of customer (the watermark reset)" in started_event
    assert "still to run: customers-crm" in first.events.get(status="completed").message
    assert log_of(kore_connection).last_full_sync is None  # one export still to run
    full_sync.refresh_from_db()
    assert full_sync.finished_at is None

    second = run_queued(groups["customers-crm"])

    assert (second.status, second.since, second.rows, second.full_sync) == ("completed", None, 3, full_sync)
    assert "done: the sync log's last_full_sync set" in second.events.get(status="completed").message
    full_sync.refresh_from_db()
    assert full_sync.finished_at is not None
    assert log_of(kore_connection).last_full_sync == full_sync.finished_at
    assert not ExportState.objects.filter(full_sync__isnull=False).exists()
    # Nothing of the other connection, the other entity or the unscheduled group was run or marked.
    assert ExportRun.objects.filter(group=groups["customers-acme"]).count() == 1
    assert watermark_of(groups["customers-acme"]) == acme_watermark
    assert not ExportRun.objects.filter(group__in=[groups["products-out"], groups["customers-by-hand"]]).exists()
    assert log_of(bspk_connection).last_full_sync is None

    # The next run is incremental again, from the full run's watermark.
    changed = Customer.objects.get(customer_id="C3")
    changed.first_name = "Zoe"
    changed.save()
    after = export_run(group_id=groups["customers-out"].pk, trigger="schedule")
    assert (after.since, after.rows, after.full_sync) == (first.watermark, 1, None)


def test_a_scheduled_run_that_comes_first_carries_the_full_sync_out_and_the_queued_one_adds_nothing(
    shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, folders = shop
    group = groups["customers-out"]
    with django_capture_on_commit_callbacks(execute=True):
        full_sync = full_sync_trigger(connection=kore_connection, entity="customer", by="ana").full_sync

    scheduled = export_run(group_id=group.pk, trigger="schedule")
    queued_run = run_queued(group)

    assert (scheduled.trigger, scheduled.since, scheduled.rows, scheduled.full_sync) == ("schedule", None, 3, full_sync)
    assert (queued_run.status, queued_run.since, queued_run.rows) == ("completed", scheduled.watermark, 0)
    assert queued_run.full_sync is None and not SentFile.objects.filter(run=queued_run).exists()


def test_a_failed_full_run_leaves_the_full_sync_open_a_trigger_runs_it_again_and_the_next_run_does_it(
    shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, folders = shop
    descriptor_copy("KS_CUSTOMERS_LATIN1", encoding="latin-1")
    broken = export_group(
        code="customers-latin1",
        descriptor="KS_CUSTOMERS_LATIN1",
        connection=kore_connection,
        destination=str(folders["customers-out"]),
        schedule_enabled=True,
        interval_minutes=60,
    )
    Customer.objects.filter(customer_id="C3").update(last_name="山田")  # latin-1 cannot write it
    with django_capture_on_commit_callbacks(execute=True):
        full_sync = full_sync_trigger(connection=kore_connection, entity="customer", by="ana").full_sync
    run_queued(groups["customers-out"])
    run_queued(groups["customers-crm"])

    failed = run_queued(broken)

    assert (failed.status, failed.full_sync) == ("failed", full_sync)
    assert log_of(kore_connection).last_full_sync is None
    assert ExportState.objects.get(group=broken).full_sync == full_sync

    # Triggered again: it joins the full sync under way, and the failed export's run of it is queued again at once
    # (not at the schedule's next turn); the exports that did theirs are not run twice.
    with django_capture_on_commit_callbacks(execute=True):
        joined = full_sync_trigger(connection=kore_connection, entity="customer", by="bo")
    assert (joined.full_sync, joined.joined, joined.retried) == (full_sync, True, ["customers-latin1"])
    reason = f"full sync #{full_sync.pk} of customer, run again: its last run failed"
    assert queued() == [(broken.pk, "full_sync", "bo", reason)]
    assert failed.events.get(message__startswith="asked again").message == (
        f"asked again by bo: full sync #{full_sync.pk}'s run queued again"
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert full_sync_trigger(connection=kore_connection, entity="customer", by="cy").retried == []
    assert len(queued()) == 1  # asked again and again (a dashboard's button), one run is queued
    OrmQ.objects.all().delete()

    Customer.objects.filter(customer_id="C3").update(last_name="Yamada")
    again = export_run(group_id=broken.pk, trigger="schedule")

    assert (again.status, again.since, again.rows, again.full_sync) == ("completed", None, 3, full_sync)
    full_sync.refresh_from_db()
    assert log_of(kore_connection).last_full_sync == full_sync.finished_at is not None


def test_a_full_sync_run_whose_worker_died_is_queued_again_by_the_sweeper(
    shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, _ = shop
    group = groups["customers-out"]
    with django_capture_on_commit_callbacks(execute=True):
        full_sync = full_sync_trigger(connection=kore_connection, entity="customer", by="ana").full_sync
    run_queued(groups["customers-crm"])
    # Its worker was killed while writing: the run is left running, the group still marked for the full sync.
    dead = died_while_running(run_queued(group))
    ExportState.objects.filter(group=group).update(full_sync=full_sync)
    SyncLog.objects.filter(connection=kore_connection).update(last_full_sync=None)
    FullSync.objects.filter(pk=full_sync.pk).update(finished_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        assert export_runs_sweep() == [dead.pk]

    assert queued() == [(group.pk, "full_sync", "", f"run again: run #{dead.pk} stopped with its worker")]
    again = run_queued(group)
    assert (again.status, again.since, again.full_sync) == ("completed", None, full_sync)
    full_sync.refresh_from_db()
    assert log_of(kore_connection).last_full_sync == full_sync.finished_at is not None


def test_a_second_trigger_while_one_is_under_way_joins_it_and_a_later_one_starts_anew(
    shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, _ = shop
    with django_capture_on_commit_callbacks(execute=True):
        first = full_sync_trigger(connection=kore_connection, entity="customer", by="ana")
    run_queued(groups["customers-out"])
    sync_log_add_errors(connection=kore_connection, entity="customer", errors={"C7": ("no name", 1)})

    with django_capture_on_commit_callbacks(execute=True):
        second = full_sync_trigger(connection=kore_connection, entity="customer", by="bo")

    assert (second.full_sync, second.joined) == (first.full_sync, True)
    assert FullSync.objects.count() == 1
    assert [args[0] for args in queued()] == [groups["customers-crm"].pk]  # nothing queued twice
    assert errors_of(kore_connection) == ["C7"]  # the log was not started over again

    run_queued(groups["customers-crm"])
    with django_capture_on_commit_callbacks(execute=True):
        third = full_sync_trigger(connection=kore_connection, entity="customer", by="bo")

    assert third.joined is False and third.full_sync != first.full_sync
    assert len(queued()) == 2 and errors_of(kore_connection) == []


def test_an_unknown_entity_is_refused_naming_the_entities(kore_connection):
    with pytest.raises(UnknownEntity, match=r"no entity is called 'customers' \(entities: .*customer, .*\)"):
        full_sync_trigger(connection=kore_connection, entity="customers", by="ana")

    assert not FullSync.objects.exists() and not SyncLog.objects.exists()


def test_without_a_scheduled_export_of_the_entity_the_log_starts_over_and_is_stamped_at_once(shop, kore_connection):
    # SPEC 10: the full sync log starts, and each of the (no) scheduled exports runs in full: with nothing to send,
    # every part of it is applied at once (SPEC 8), so last_full_sync is set now and nothing is queued.
    sync_log_add_errors(connection=kore_connection, entity="stock_level", errors={"S1": ("bad", 1)})

    started = full_sync_trigger(connection=kore_connection, entity="stock_level", by="ana")

    assert (started.exports, started.joined) == ([], False)
    assert started.full_sync.finished_at is not None and not OrmQ.objects.exists()
    log = SyncLog.objects.get(connection=kore_connection, entity="stock_level")
    assert log.last_full_sync == started.full_sync.finished_at
    assert not SyncError.objects.filter(log=log).exists()


def test_an_export_that_cannot_run_refuses_the_whole_full_sync(shop, kore_connection, settings):
    groups, _ = shop
    DataGroup.objects.filter(pk=groups["customers-crm"].pk).update(destination="/etc/impex-out")
    sync_log_add_errors(connection=kore_connection, entity="customer", errors={"C9": ("bad email", 3)})

    with pytest.raises(FullSyncRefused, match="export group customers-crm cannot export: .*nothing was started"):
        full_sync_trigger(connection=kore_connection, entity="customer", by="ana")

    assert not FullSync.objects.exists() and not OrmQ.objects.exists()
    assert errors_of(kore_connection) == ["C9"]


# -- at once, on PostgreSQL (row locks) ------------------------------------------------------------------------------


def other_session():
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or None
    )


def wait_for_lock_waiters(session, count: int) -> None:
    """Wait until count sessions wait for a lock (the threads have reached the point the test holds them at)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        session.execute("SELECT pg_stat_clear_snapshot()")  # else the transaction sees its first look again
        waiting = session.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        if waiting >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} sessions never waited for the lock")


def in_thread(target, results: list):
    def run():
        try:
            results.append(target())
        except Exception as exc:  # the test asserts on it
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time anyway")
@pytest.mark.django_db(transaction=True)
def test_two_triggers_at_once_start_one_full_sync(builtin_installed, shop, kore_connection):
    groups, _ = shop
    SyncLog.objects.get_or_create(connection=kore_connection, entity="customer")
    results = []
    with other_session() as holder:
        # Hold the log's row: both triggers stop at its lock, then go one after the other.
        holder.execute(
            f"SELECT 1 FROM {SyncLog._meta.db_table} WHERE connection_id = %s AND entity = 'customer' FOR UPDATE",
            [kore_connection.pk],
        )
        threads = [
            in_thread(lambda by=by: full_sync_trigger(connection=kore_connection, entity="customer", by=by), results)
            for by in ("ana", "bo")
        ]
        wait_for_lock_waiters(holder, 2)
        holder.rollback()
        for thread in threads:
            thread.join()

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.joined for r in results) == [False, True]
    assert results[0].full_sync == results[1].full_sync
    assert FullSync.objects.count() == 1
    assert [args[0] for args in queued()] == sorted(groups[c].pk for c in ("customers-out", "customers-crm"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time anyway")
@pytest.mark.django_db(transaction=True)
def test_a_run_under_way_at_the_trigger_does_not_count_and_the_skipped_full_run_is_queued_again(
    builtin_installed, shop, kore_connection
):
    groups, folders = shop
    group = groups["customers-out"]
    results = []
    with other_session() as holder:
        # The scheduled run claims the group and reads its state (no full sync yet), then waits to read the records.
        holder.execute(f"LOCK TABLE {Customer._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        thread = in_thread(lambda: export_run(group_id=group.pk, trigger="schedule"), results)
        wait_for_lock_waiters(holder, 1)

        full_sync = full_sync_trigger(connection=kore_connection, entity="customer", by="ana").full_sync
        skipped = run_queued(group)  # the group is still held by the scheduled run

        holder.rollback()
        thread.join()

    (scheduled,) = results
    assert (skipped.status, skipped.trigger) == ("skipped", "full_sync")
    assert (scheduled.status, scheduled.full_sync, scheduled.since) == ("completed", None, watermark_of_first(group))
    assert ExportState.objects.get(group=group).full_sync == full_sync  # not carried out by that run
    (again,) = [args for args in queued() if args[0] == group.pk]
    assert again[1] == "full_sync" and "was skipped while run" in again[3]

    full = run_queued(group)

    assert (full.status, full.since, full.rows, full.full_sync) == ("completed", None, 3, full_sync)


def watermark_of_first(group: DataGroup):
    """The watermark of the group's first (scheduled) run."""
    return ExportRun.objects.filter(group=group).earliest("pk").watermark


# -- the HTTP API ---------------------------------------------------------------------------------------------------


def test_the_endpoint_starts_the_full_sync_and_answers_202(
    shop, kore_connection, bspk_connection, client, django_capture_on_commit_callbacks
):
    groups, _ = shop
    api = Api(client, api_token_issue(connection=kore_connection, by="test"))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL)

    assert response.status_code == 202, response.content
    full_sync = FullSync.objects.get()
    body = response.json()
    assert body == {
        "full_sync": full_sync.pk,
        "entity": "customer",
        "exports": ["customers-crm", "customers-out"],
        "started_at": body["started_at"],
        "joined": False,
    }
    assert (full_sync.connection, full_sync.created_by) == (kore_connection, "api: kore-erp")
    assert len(queued()) == 2

    again = api.post(URL.rstrip("/"))  # the path without its slash too
    assert (again.status_code, again.json()["joined"], again.json()["full_sync"]) == (202, True, full_sync.pk)

    # The other connection's token starts its own, of its own exports only.
    other = Api(client, api_token_issue(connection=bspk_connection, by="test")).post(URL)
    assert other.status_code == 202 and other.json()["exports"] == ["customers-acme"]


def test_the_endpoint_refuses_an_unknown_entity_and_starts_a_log_with_nothing_to_export(shop, api):
    unknown = api.post("/api/full-sync/customers/")
    no_token = api.post(URL, token="")

    assert unknown.status_code == 404 and "entities: " in unknown.json()["detail"]
    assert "product_variant" in unknown.json()["detail"]
    assert no_token.status_code == 401
    assert not FullSync.objects.exists() and not OrmQ.objects.exists()

    nothing = api.post("/api/full-sync/price/")  # no scheduled export of prices: the log alone, stamped at once
    assert (nothing.status_code, nothing.json()["exports"]) == (202, [])
    assert SyncLog.objects.get(entity="price").last_full_sync is not None and not OrmQ.objects.exists()


# -- the admin ------------------------------------------------------------------------------------------------------


def test_the_buttons_and_pages_are_refused_without_impex_export_data(client, django_user_model, shop, kore_connection):
    groups, _ = shop
    sync_log_add_errors(connection=kore_connection, entity="customer", errors={"C9": ("bad email", 3)})
    client.force_login(
        staff_user(django_user_model, "viewer", "impex.view_connection", "impex.view_datagroup", "impex.run_import")
    )
    pages = [
        admin_url(Connection, "full_sync", kore_connection.pk),
        admin_url(DataGroup, "full_sync", groups["customers-out"].pk),
    ]

    connection_page = client.get(admin_url(Connection, "change", kore_connection.pk))
    group_page = client.get(admin_url(DataGroup, "change", groups["customers-out"].pk))

    assert b"Trigger a data sync" not in connection_page.content and b"Sync now" in connection_page.content
    assert b"Trigger a data sync" not in group_page.content
    before = table_snapshot()
    for url in pages:
        assert client.get(url).status_code == 403
        assert client.post(url, {"entity": "customer", "post": "yes"}).status_code == 403
    assert table_snapshot() == before
    assert not OrmQ.objects.exists()


def test_the_connection_page_asks_which_data_then_starts_the_full_sync(
    client, django_user_model, shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, _ = shop
    client.force_login(staff_user(django_user_model, "ana", "impex.view_connection", EXPORT_DATA))
    change = admin_url(Connection, "change", kore_connection.pk)
    url = admin_url(Connection, "full_sync", kore_connection.pk)

    assert url.encode() in client.get(change).content
    page = client.get(url).content.decode()
    unchosen = client.post(url, {"post": "yes"}).content.decode()

    assert "Trigger a data sync of kore-erp?" in page
    assert 'value="customer"' in page and "customers-crm, customers-out" in page
    assert 'value="product_variant"' in page and "products-out" in page
    assert "customers-by-hand" not in page
    assert "Choose the data to sync: nothing was started." in unchosen
    assert not FullSync.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"entity": "customer", "post": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == change
    full_sync = FullSync.objects.get()
    assert f"The full sync #{full_sync.pk} of customer for kore-erp has started" in response.content.decode()
    assert (full_sync.entity, full_sync.created_by) == ("customer", "ana")
    assert len(queued()) == 2


def test_the_export_group_page_starts_a_full_sync_of_its_entity(
    client, django_user_model, shop, kore_connection, django_capture_on_commit_callbacks
):
    groups, _ = shop
    client.force_login(staff_user(django_user_model, "ana", "impex.view_datagroup", EXPORT_DATA))
    group = groups["customers-crm"]
    url = admin_url(DataGroup, "full_sync", group.pk)

    assert url.encode() in client.get(admin_url(DataGroup, "change", group.pk)).content
    assert (
        b"Trigger a data sync" not in client.get(admin_url(DataGroup, "change", groups["customers-by-hand"].pk)).content
    )
    page = client.get(url).content.decode()
    assert 'type="hidden" name="entity" value="customer"' in page and "customers-crm, customers-out" in page

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"post": "yes"})

    assert FullSync.objects.get().entity == "customer" and len(queued()) == 2
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(url, {"post": "yes"}, follow=True).content.decode()
    assert "is still under way: it goes on, and nothing was started twice." in again
    assert FullSync.objects.count() == 1 and len(queued()) == 2


def test_the_full_sync_form_needs_its_csrf_token(django_user_model, shop, kore_connection):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user(django_user_model, "ana", "impex.view_connection", EXPORT_DATA))

    response = browser.post(
        admin_url(Connection, "full_sync", kore_connection.pk), {"entity": "customer", "post": "yes"}
    )

    assert response.status_code == 403
    assert not FullSync.objects.exists()


def test_a_full_sync_is_recorded_with_its_runs(admin_client, shop, kore_connection, django_capture_on_commit_callbacks):
    groups, _ = shop
    with django_capture_on_commit_callbacks(execute=True):
        full_sync = full_sync_trigger(connection=kore_connection, entity="customer", by="ana").full_sync
    run = run_queued(groups["customers-out"])

    listed = admin_client.get(admin_url(FullSync, "changelist")).content.decode()
    page = admin_client.get(admin_url(FullSync, "change", full_sync.pk)).content.decode()
    runs = admin_client.get(admin_url(ExportRun, "changelist"), {"full_sync__id__exact": full_sync.pk})
    group_page = admin_client.get(admin_url(DataGroup, "change", groups["customers-crm"].pk)).content.decode()

    assert f"Full sync #{full_sync.pk} of customer" in listed and "customers-crm, customers-out" in listed
    assert f"?full_sync__id__exact={full_sync.pk}" in page
    assert runs.status_code == 200 and f"Export run #{run.pk}" in runs.content.decode()
    assert runs.context["cl"].result_count == 1
    assert f"full sync #{full_sync.pk} asked for every record: the next run writes them all" in group_page
