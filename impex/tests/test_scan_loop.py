"""Inboxes scanned every few seconds (SPEC section 11): the connection's scan_seconds, the hub's one scan loop, its
lease, and the schedules derived for it."""

import io
import json
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from impex import tasks
from impex.models import Connection, ConnectionState, ImportJob, ScanLoop
from impex.services.scan_loop import (
    LEASE_SECONDS,
    LOOP_TIMEOUT,
    TAKEOVER_SECONDS,
    scan_loop_hold,
    scan_loop_run,
    scan_loop_running,
    scan_loop_take,
)
from impex.services.schedules import LOOP_SCHEDULE, scan_schedule_name, schedules_sync
from impex.tests.helpers import aged, inbox_of
from tests.admin_helpers import admin_url, post_data

DEMO = Path(__file__).resolve().parents[1] / "demo"
ORDERS_FILE = "SPECIAL-ORDERS_V2_Acme_202611010900.csv"


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


@pytest.fixture
def fast(bspk_connection):
    Connection.objects.filter(pk=bspk_connection.pk).update(scan_seconds=5)
    bspk_connection.refresh_from_db()
    return bspk_connection


def connection_command(code: str, *args) -> dict:
    out = io.StringIO()
    call_command("impex_connection", code, "--json", *args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


# -- the field ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", ["4", "60"])
def test_impex_connection_refuses_seconds_outside_5_to_59(bspk_connection, seconds):
    with pytest.raises(CommandError, match="--scan-seconds: Scan every 5 to 59 seconds"):
        connection_command(bspk_connection.code, "--scan-seconds", seconds)

    bspk_connection.refresh_from_db()
    assert bspk_connection.scan_seconds is None


def test_impex_connection_says_how_often_the_inbox_is_scanned(bspk_connection):
    said = []
    for args in (["--scan-seconds", "5"], ["--scan-seconds", "off"], ["--cron", "*/10 * * * *"], ["--scan", "off"]):
        out = io.StringIO()
        call_command("impex_connection", bspk_connection.code, *args, stdout=out)
        said.append(out.getvalue().splitlines()[1])

    assert said == [
        "  its inbox is scanned: every 5 s (by the cluster's scan loop)",
        "  its inbox is scanned: every 5 min",
        "  its inbox is scanned: cron */10 * * * *",
        "  its inbox is scanned: off ('Sync now' and impex_scan only)",
    ]


def test_impex_connection_sets_and_clears_the_seconds_and_the_loop_schedule_follows(
    bspk_connection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert connection_command(bspk_connection.code, "--scan-seconds", "5")["scan_seconds"] == 5
    assert Schedule.objects.filter(name=LOOP_SCHEDULE).exists()
    assert not Schedule.objects.filter(name=scan_schedule_name(bspk_connection)).exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert connection_command(bspk_connection.code, "--interval-seconds", "59")["scan_seconds"] == 59
    with django_capture_on_commit_callbacks(execute=True):
        assert connection_command(bspk_connection.code, "--scan-seconds", "off")["scan_seconds"] is None
    assert not Schedule.objects.filter(name=LOOP_SCHEDULE).exists()
    assert Schedule.objects.get(name=scan_schedule_name(bspk_connection)).minutes == 5

    connection_command(bspk_connection.code, "--scan-seconds", "30")
    assert connection_command(bspk_connection.code, "--scan-seconds", "0")["scan_seconds"] is None


def test_impex_connection_says_what_a_bad_seconds_value_is(bspk_connection):
    with pytest.raises(CommandError, match="not a number of seconds"):
        connection_command(bspk_connection.code, "--scan-seconds", "fast")


@pytest.mark.parametrize(("seconds", "saved"), [("4", False), ("5", True), ("59", True), ("60", False)])
def test_the_admin_form_takes_5_to_59_seconds_only(admin_client, bspk_connection, seconds, saved):
    url = admin_url(Connection, "change", bspk_connection.pk)
    page = admin_client.get(url)
    assert "Scan the inbox every 5 to 59 seconds" in page.content.decode()  # the field's help text

    response = admin_client.post(url, {**post_data(page.context["adminform"].form), "scan_seconds": seconds})

    bspk_connection.refresh_from_db()
    if saved:
        assert response.status_code == 302
        assert bspk_connection.scan_seconds == int(seconds)
    else:
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["scan_seconds"]
        assert errors[0].startswith("Scan every 5 to 59 seconds")
        assert bspk_connection.scan_seconds is None


@pytest.mark.parametrize(("workers", "warned"), [(2, True), (3, False)])
def test_saving_a_fast_connection_warns_when_the_clusters_have_too_few_workers(
    admin_client, bspk_connection, settings, workers, warned
):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": workers}
    url = admin_url(Connection, "change", bspk_connection.pk)
    page = admin_client.get(url)

    response = admin_client.post(url, {**post_data(page.context["adminform"].form), "scan_seconds": "5"}, follow=True)

    shown = [str(m) for m in response.context["messages"]]
    assert any("keeps one cluster worker busy" in m and "Q_WORKERS=2" in m for m in shown) is warned


def test_the_list_and_the_page_say_every_n_seconds(admin_client, fast):
    listing = admin_client.get(admin_url(Connection, "changelist")).content.decode()
    assert "every 5 s" in listing
    assert "when the scan loop starts" in listing

    now = timezone.now()
    ScanLoop.objects.create(pk=1, holder="w", started_at=now, lease_until=now + timedelta(seconds=30))
    page = admin_client.get(admin_url(Connection, "change", fast.pk)).content.decode()
    assert "every 5 s" in page
    assert "within 5 s (scan loop running)" in page


# -- the schedules -------------------------------------------------------------------------------------------------


def test_schedules_sync_adds_the_loop_schedule_for_fast_connections_only_and_removes_it_after(fast, kore_connection):
    schedules_sync()

    loop = Schedule.objects.get(name=LOOP_SCHEDULE)
    assert (loop.func, loop.schedule_type, loop.minutes) == ("impex.tasks.inbox_scan_loop", Schedule.MINUTES, 1)
    assert eval(loop.kwargs) == {"q_options": {"timeout": LOOP_TIMEOUT}}  # noqa: S307 (django-q2's own format)
    from django.conf import settings

    assert LOOP_TIMEOUT < settings.Q_CLUSTER["retry"]
    # The fast connection is the loop's; the other keeps its schedule in minutes.
    assert not Schedule.objects.filter(name=scan_schedule_name(fast)).exists()
    assert Schedule.objects.get(name=scan_schedule_name(kore_connection)).minutes == 5

    Connection.objects.filter(pk=fast.pk).update(scan_seconds=None)
    schedules_sync()
    assert not Schedule.objects.filter(name=LOOP_SCHEDULE).exists()
    assert Schedule.objects.filter(name=scan_schedule_name(fast)).exists()

    Connection.objects.filter(pk=fast.pk).update(scan_seconds=10, active=False)
    schedules_sync()
    assert not Schedule.objects.filter(name=LOOP_SCHEDULE).exists()


# -- the loop and its lease ------------------------------------------------------------------------------------------


def test_a_loop_scans_a_fast_inbox_and_queues_its_job_without_importing_it(
    fast, kore_connection, django_capture_on_commit_callbacks
):
    aged(Path(shutil.copyfile(DEMO / ORDERS_FILE, inbox_of(fast) / ORDERS_FILE)))
    aged(Path(shutil.copyfile(DEMO / ORDERS_FILE, inbox_of(kore_connection) / ORDERS_FILE)))

    with django_capture_on_commit_callbacks(execute=True):
        result = scan_loop_run(seconds=0)

    job = ImportJob.objects.get()
    assert (job.connection, job.status, job.source) == (fast, "queued", "scan")
    assert result.jobs == [job.pk] and result.scans == 1
    assert [q.func() for q in OrmQ.objects.all()] == ["impex.tasks.import_job_run"]
    assert list(inbox_of(fast).iterdir()) == []
    assert [p.name for p in inbox_of(kore_connection).iterdir()] == [ORDERS_FILE]  # scanned by its minutes
    assert not ScanLoop.objects.exclude(holder="").exists()  # let go when it ends


def test_a_pass_that_finds_nothing_queues_no_task(fast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = scan_loop_run(seconds=0)

    assert result.scans == 1 and result.jobs == []
    assert not OrmQ.objects.exists()
    assert ConnectionState.objects.get(connection=fast).last_scan_message == "nothing new"


def test_a_loop_without_fast_connections_ends_at_once(bspk_connection):
    assert tasks.inbox_scan_loop() == "0 scan(s); no connection is scanned every few seconds"


def test_two_loops_at_once_one_scans_the_other_gives_way(fast):
    assert scan_loop_take(worker="first")
    assert scan_loop_running()

    second = scan_loop_run(seconds=0, worker="second")

    assert second.ended == "another scan loop runs" and second.scans == 0
    assert ScanLoop.objects.get().holder == "first"
    assert not ConnectionState.objects.filter(connection=fast, last_scan_at__isnull=False).exists()


def test_the_next_minutes_loop_takes_over_and_the_older_one_stops(fast):
    assert scan_loop_take(worker="older")
    ScanLoop.objects.update(started_at=timezone.now() - timedelta(seconds=TAKEOVER_SECONDS))

    newer = scan_loop_run(seconds=0, worker="newer")

    assert newer.ended == "ran 0 s" and newer.scans == 1
    assert not scan_loop_hold(worker="older")  # at its next tick the older loop finds it lost the lease
    older = ScanLoop.objects.get()
    assert older.holder == ""  # and the newer one let go as it ended


def test_a_killed_loops_lease_is_taken_over(fast):
    assert scan_loop_take(worker="killed")
    # It was killed a moment after it started: nothing renews its lease, which runs out.
    ScanLoop.objects.update(lease_until=timezone.now() - timedelta(seconds=1))

    assert scan_loop_run(seconds=0, worker="next").scans == 1


def test_the_loop_leaves_a_connection_another_scanner_holds_alone(fast):
    ConnectionState.objects.create(
        connection=fast, scan_by="sync-now:1", scan_until=timezone.now() + timedelta(minutes=1)
    )
    aged(Path(shutil.copyfile(DEMO / ORDERS_FILE, inbox_of(fast) / ORDERS_FILE)))

    result = scan_loop_run(seconds=0)

    assert result.jobs == []
    assert [p.name for p in inbox_of(fast).iterdir()] == [ORDERS_FILE]


@pytest.mark.django_db(
    transaction=True
)  # the loop's lease is renewed by a thread of its own (impex.services.heartbeat)
def test_a_loop_asleep_until_its_next_scan_stops_soon_after_a_newer_one_took_over(bspk_connection):
    # With a connection scanned every 59 s the older loop sleeps up to 59 s between ticks; had it only noticed the
    # takeover at its next tick, it would have held a cluster worker for nothing, next to the newer loop's, for the
    # rest of its run (up to LOOP_SECONDS): with Q_WORKERS=2, no worker left for imports meanwhile. Its lease's
    # renewal (every LEASE_SECONDS / 3) finds the lease gone and wakes it.
    Connection.objects.filter(pk=bspk_connection.pk).update(scan_seconds=59)
    ended = {}
    older = threading.Thread(target=lambda: ended.update(result=scan_loop_run(seconds=80, worker="older")))
    older.start()
    try:
        for _ in range(600):  # its first scan, then it sleeps until the next one is due
            if ConnectionState.objects.filter(connection=bspk_connection, last_scan_at__isnull=False).exists():
                break
            time.sleep(0.1)
        ScanLoop.objects.update(holder="newer", started_at=timezone.now())  # the next minute's loop took over

        older.join(timeout=LEASE_SECONDS)  # well before its next scan would be due (59 s)
        assert not older.is_alive()
    finally:
        older.join()
    assert ended["result"].ended == "a newer scan loop took over" and ended["result"].scans == 1
    assert ScanLoop.objects.get().holder == "newer"  # the older one let go of nothing it no longer held
