"""Scheduled exports of export groups (SPEC section 1, channel 3): a file per run in the destination, written in
one step; the watermark taken at the run's start and moved only by a successful run; files sent recorded and sent
again; the schedules derived from the groups; the admin's buttons refused without impex.export_data."""

import csv
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import paramiko
import psycopg
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule

from impex.models import DataDescriptor, DataGroup, ExportRun, ExportRunEvent, ExportState, SentFile
from impex.services.cache import cache_clean
from impex.services.export_runs import export_resend, export_run, export_runs_sweep
from impex.services.exports import export_download
from impex.services.schedules import export_schedule_name, schedules_sync
from impex.storage import hub_storage, list_files, open_file, place_file, storage_for
from impex.tasks import export_group_run
from impex.tests.helpers import lapse, process_env
from syncapp.models import Customer
from tests.admin_helpers import admin_url, staff_user
from tests.fixtures import ssh_on_loopback

EXPORT_DATA = "impex.export_data"


@pytest.fixture
def customers(db):
    """Three customers."""
    return [
        Customer.objects.create(customer_id=f"C{i}", email=f"c{i}@example.com", first_name=name)
        for i, name in ((1, "Åsa"), (2, "Jun"), (3, "Zoë"))
    ]


@pytest.fixture
def outbox(tmp_path):
    """A local destination folder, outside the hub's storage."""
    folder = tmp_path / "receiver" / "in"
    folder.mkdir(parents=True)
    return folder


def export_group(*, code="customers-out", descriptor="KS_CUSTOMERS", **fields) -> DataGroup:
    """An export group of one descriptor."""
    group = DataGroup.objects.create(code=code, name=f"Group {code}", direction="export", **fields)
    group.descriptors.add(DataDescriptor.objects.get(code=descriptor))
    return group


def descriptor_copy(code: str, **fields) -> DataDescriptor:
    """A copy of KS_CUSTOMERS (its columns too) with other settings."""
    base = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    columns = list(base.columns.all())
    base.pk = None
    base.code = code
    base.builtin = False
    for name, value in fields.items():
        setattr(base, name, value)
    base.save()
    for column in columns:
        column.pk = None
        column.descriptor = base
        column.save()
    return base


def ids_in(data: bytes) -> list[str]:
    """The customer ids of a tab-separated export, in order."""
    rows = list(csv.DictReader(io.StringIO(data.decode()), delimiter="\t"))
    return [row["customer_id"] for row in rows]


def everything_in(folder) -> list[str]:
    """Every name in a local folder, hidden ones included."""
    return sorted(os.listdir(folder))


def watermark_of(group: DataGroup):
    return ExportState.objects.get(group=group).watermark


def kept_copies() -> list[str]:
    return [f.name for f in list_files(hub_storage(), "exports")]


# -- runs to a local destination ------------------------------------------------------------------------------------


def test_a_full_run_writes_every_record_in_one_file_and_records_it(customers, outbox):
    group = export_group(destination=str(outbox))

    run = export_run(group_id=group.pk, trigger="schedule")

    assert (run.status, run.error, run.rows, run.since) == ("completed", "", 3, None)
    assert run.watermark == run.started_at
    (sent,) = SentFile.objects.all()
    assert sent.run == run and sent.group == group
    assert sent.name == f"customers-out_{run.started_at:%Y%m%d%H%M%S}.tsv"
    assert everything_in(outbox) == [sent.name]
    data = (outbox / sent.name).read_bytes()
    assert ids_in(data) == ["C1", "C2", "C3"]
    assert "Åsa" in data.decode()
    assert (sent.rows, sent.size, sent.sha256) == (3, len(data), hashlib.sha256(data).hexdigest())
    assert sent.path == str(outbox / sent.name) and sent.location == str(outbox)
    with open_file(hub_storage(), sent.copy_path) as kept:
        assert kept.read() == data
    assert sent.copy_path == f"exports/customers-out/sent/{sent.name}"
    assert watermark_of(group) == run.watermark
    assert list(run.events.values_list("status", flat=True)) == ["queued", "running", "completed"]


def test_an_incremental_run_writes_only_the_record_changed_since_the_last_run(customers, outbox):
    group = export_group(destination=str(outbox), incremental=True)
    first = export_run(group_id=group.pk, trigger="schedule")
    changed = customers[1]
    changed.first_name = "Junko"
    changed.save()

    second = export_run(group_id=group.pk, trigger="schedule")

    assert (first.rows, second.rows) == (3, 1)
    assert second.since == first.watermark
    sent = SentFile.objects.get(run=second)
    data = (outbox / sent.name).read_bytes()
    assert ids_in(data) == ["C2"]
    assert "Junko" in data.decode()
    assert watermark_of(group) == second.watermark > first.watermark


def test_a_change_stamped_at_or_after_a_runs_start_goes_in_the_next_run(customers, outbox):
    group = export_group(destination=str(outbox), incremental=True)
    first = export_run(group_id=group.pk, trigger="schedule")
    # As if saved while the first run was reading (stamped after its start) or exactly at its start; C3 before it.
    Customer.objects.filter(customer_id="C1").update(updated_at=first.watermark)
    Customer.objects.filter(customer_id="C2").update(updated_at=first.watermark + timedelta(microseconds=1))
    Customer.objects.filter(customer_id="C3").update(updated_at=first.watermark - timedelta(milliseconds=1))

    second = export_run(group_id=group.pk, trigger="schedule")

    sent = SentFile.objects.get(run=second)
    assert ids_in((outbox / sent.name).read_bytes()) == ["C1", "C2"]


def test_an_empty_incremental_run_writes_no_file_but_moves_the_watermark(customers, outbox):
    group = export_group(destination=str(outbox), incremental=True)
    first = export_run(group_id=group.pk, trigger="schedule")

    second = export_run(group_id=group.pk, trigger="schedule")

    assert (second.status, second.rows) == ("completed", 0)
    assert everything_in(outbox) == [SentFile.objects.get(run=first).name]
    assert not SentFile.objects.filter(run=second).exists()
    assert watermark_of(group) == second.watermark
    assert "no file written" in second.events.get(status="completed").message


def test_an_empty_incremental_run_writes_the_header_when_asked_to(customers, outbox):
    group = export_group(destination=str(outbox), incremental=True, write_empty=True)
    export_run(group_id=group.pk, trigger="schedule")

    second = export_run(group_id=group.pk, trigger="schedule")

    sent = SentFile.objects.get(run=second)
    data = (outbox / sent.name).read_bytes()
    assert data.decode().startswith("customer_id\temail\t")
    assert ids_in(data) == [] and sent.rows == 0


def test_a_group_that_is_not_incremental_writes_every_record_each_time(customers, outbox):
    group = export_group(destination=str(outbox), file_name_pattern="{code}_{run}.{ext}")
    first = export_run(group_id=group.pk, trigger="schedule")

    second = export_run(group_id=group.pk, trigger="schedule")

    assert second.since is None
    assert ids_in((outbox / f"customers-out_{second.pk}.tsv").read_bytes()) == ["C1", "C2", "C3"]
    assert everything_in(outbox) == [f"customers-out_{first.pk}.tsv", f"customers-out_{second.pk}.tsv"]


def test_a_new_destination_gets_every_record_first(customers, outbox, tmp_path):
    group = export_group(destination=str(outbox), incremental=True)
    export_run(group_id=group.pk, trigger="schedule")
    group.destination = str(tmp_path / "elsewhere")
    group.save()

    run = export_run(group_id=group.pk, trigger="schedule")

    assert run.since is None
    sent = SentFile.objects.get(run=run)
    assert ids_in((tmp_path / "elsewhere" / sent.name).read_bytes()) == ["C1", "C2", "C3"]
    assert ExportState.objects.get(group=group).watermark_destination == str(tmp_path / "elsewhere")


def test_without_a_destination_the_file_goes_to_the_connections_outbox_or_the_hubs(customers, kore_connection):
    with_connection = export_group(code="to-kore", connection=kore_connection)
    alone = export_group(code="alone")

    first = export_run(group_id=with_connection.pk, trigger="schedule")
    second = export_run(group_id=alone.pk, trigger="schedule")

    one, two = SentFile.objects.get(run=first), SentFile.objects.get(run=second)
    assert one.path == f"kore-erp/outbox/{one.name}"
    assert two.path == f"outbox/alone/{two.name}"
    with open_file(hub_storage(), one.path) as stream:
        assert ids_in(stream.read()) == ["C1", "C2", "C3"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL shows other sessions' transactions")
def test_on_postgresql_a_write_still_open_when_a_run_starts_holds_the_watermark_back(customers, outbox):
    group = export_group(destination=str(outbox), incremental=True)
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or None
    ) as other:
        # A transaction that has written and not committed: what it stamps is older than the run's start.
        began = other.execute("SELECT now(), txid_current()").fetchone()[0]

        run = export_run(group_id=group.pk, trigger="schedule")

    assert run.started_at > began
    assert run.watermark == began
    assert watermark_of(group) == began


# -- failures -------------------------------------------------------------------------------------------------------


def test_a_run_failing_half_way_leaves_no_file_and_keeps_the_watermark(customers, outbox):
    # Latin-1 cannot write the third customer's name: the file fails after the header and two rows.
    descriptor_copy("KS_CUSTOMERS_LATIN1", encoding="latin-1")
    group = export_group(destination=str(outbox), incremental=True, descriptor="KS_CUSTOMERS_LATIN1")
    Customer.objects.filter(customer_id="C3").update(first_name="Zoë", last_name="山田")
    before = watermark_of(group) if ExportState.objects.filter(group=group).exists() else None

    run = export_run(group_id=group.pk, trigger="schedule")

    assert run.status == "failed"
    assert "'latin-1' codec can't encode" in run.error
    assert run.finished_at is not None
    assert everything_in(outbox) == []
    assert kept_copies() == []
    assert not SentFile.objects.exists()
    state = ExportState.objects.get(group=group)
    assert (state.watermark, state.run) == (before, None)
    assert ExportRunEvent.objects.get(run=run, status="failed").level == "error"


def test_a_failed_run_keeps_the_watermark_of_the_last_good_one_and_the_next_run_catches_up(customers, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the destination's folder should be")
    group = export_group(destination=str(tmp_path / "good"), incremental=True)
    good = export_run(group_id=group.pk, trigger="schedule")
    Customer.objects.filter(customer_id="C2").update(first_name="Junko")  # update() keeps updated_at: stamp it
    Customer.objects.filter(customer_id="C2").update(updated_at=good.watermark + timedelta(seconds=1))
    group.destination = str(blocker / "in")
    group.save()

    failed = export_run(group_id=group.pk, trigger="schedule")

    assert failed.status == "failed"
    assert str(blocker) in failed.error
    assert blocker.read_text() == "a file where the destination's folder should be"
    assert kept_copies() == [f"exports/customers-out/sent/{SentFile.objects.get(run=good).name}"]
    assert watermark_of(group) == good.watermark
    assert ExportState.objects.get(group=group).watermark_destination == str(tmp_path / "good")

    group.destination = str(tmp_path / "good")
    group.save()
    caught_up = export_run(group_id=group.pk, trigger="schedule")

    assert caught_up.since == good.watermark
    assert ids_in((tmp_path / "good" / SentFile.objects.get(run=caught_up).name).read_bytes()) == ["C2"]


def test_a_group_without_its_one_descriptor_fails_with_a_reason(db, outbox):
    group = DataGroup.objects.create(code="empty", name="Empty", direction="export", destination=str(outbox))

    run = export_run(group_id=group.pk, trigger="admin", by="ana")

    assert run.status == "failed"
    assert run.error == "export group empty must have exactly one descriptor, the layout of its file (it has 0)"
    assert ExportState.objects.get(group=group).run is None


# -- one run at a time ----------------------------------------------------------------------------------------------


def test_a_run_started_while_another_holds_the_group_is_skipped(customers, outbox):
    group = export_group(destination=str(outbox))
    holder = export_run(group_id=group.pk, trigger="schedule")  # a finished run, set back as if still running
    ExportRun.objects.filter(pk=holder.pk).update(status="running")
    ExportState.objects.filter(group=group).update(run=holder, lease_until=holder.finished_at + timedelta(hours=1))
    files = everything_in(outbox)

    run = export_run(group_id=group.pk, trigger="admin", by="ana")

    assert run.status == "skipped"
    assert f"run #{holder.pk} of customers-out is still running" in run.events.get(status="skipped").message
    assert everything_in(outbox) == files
    assert ExportState.objects.get(group=group).run == holder


def test_a_run_whose_worker_died_is_failed_by_the_next_run_which_goes_on(customers, outbox):
    group = export_group(destination=str(outbox))
    dead = export_run(group_id=group.pk, trigger="schedule")
    ExportRun.objects.filter(pk=dead.pk).update(status="running", finished_at=None)
    ExportState.objects.filter(group=group).update(run=dead, lease_until=dead.started_at - timedelta(seconds=1))

    run = export_run(group_id=group.pk, trigger="schedule")

    dead.refresh_from_db()
    assert run.status == "completed"
    assert dead.status == "failed"
    assert dead.error == f"its worker stopped: the lease ran out; run #{run.pk} took over"


# -- the sweeper: runs whose worker died (issue 16, M4) ---------------------------------------------------------------


def died_while_running(run: ExportRun, *, holds_group: bool = True) -> ExportRun:
    """Set a finished run back to where a killed worker leaves it: running, its lease run out, its temporary folder."""
    past = timezone.now() - timedelta(seconds=5)
    ExportRun.objects.filter(pk=run.pk).update(status="running", finished_at=None, lease_until=past)
    if holds_group:
        ExportState.objects.filter(group=run.group).update(run=run, lease_until=past)
    folder = Path(settings.IMPEX_CACHE_DIR) / f"export-run-{run.pk}-k1ll3d_x"
    folder.mkdir(parents=True)
    (folder / "half-written.tsv").write_text("customer_id\temail\nC1\tc1@example.com\n")
    run.refresh_from_db()
    return run


def queued_tasks() -> list[tuple[str, tuple]]:
    return [(q.task["func"], q.task["args"]) for q in OrmQ.objects.order_by("pk")]


def test_the_sweeper_fails_a_run_whose_worker_died_and_runs_the_schedule_again_at_once(
    customers, outbox, django_capture_on_commit_callbacks
):
    group = export_group(destination=str(outbox), schedule_enabled=True, interval_minutes=60)
    dead = died_while_running(export_run(group_id=group.pk, trigger="schedule"))
    lapsed = dead.lease_until
    # The schedule's next run came while the dead run's lease had not run out yet: skipped.
    ExportState.objects.filter(group=group).update(lease_until=timezone.now() + timedelta(minutes=1))
    skipped = export_run(group_id=group.pk, trigger="schedule")
    assert skipped.status == "skipped"
    ExportState.objects.filter(group=group).update(lease_until=dead.lease_until)
    sent_before = everything_in(outbox)

    with django_capture_on_commit_callbacks(execute=True):
        summary = import_string("impex.tasks.export_runs_sweep")()

    assert summary == "1 export run(s) failed, 1 temporary folder(s) removed"
    dead.refresh_from_db()
    assert (dead.status, dead.lease_until) == ("failed", None)
    assert dead.error == (
        f"its worker {dead.worker} stopped: its lease ran out at {lapsed:%Y-%m-%d %H:%M:%S} UTC; failed by the sweeper"
    )
    event = dead.events.get(status="failed")
    assert (event.level, event.message) == ("error", f"failed: {dead.error}")
    assert ExportState.objects.get(group=group).run is None
    assert list(Path(settings.IMPEX_CACHE_DIR).iterdir()) == []
    # The schedule's run is queued at once, not left to the next interval.
    reason = f"run again: run #{dead.pk} stopped with its worker"
    assert queued_tasks() == [("impex.tasks.export_group_run", (group.pk, "schedule", "", reason))]
    assert export_group_run(*OrmQ.objects.get().task["args"]) == "completed"
    again = ExportRun.objects.latest("pk")
    assert again.trigger == "schedule"
    assert again.events.get(status="queued").message == f"queued (schedule): {reason}"
    assert len(everything_in(outbox)) == len(sent_before) + 1
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            import_string("impex.tasks.export_runs_sweep")() == "0 export run(s) failed, 0 temporary folder(s) removed"
        )
    assert not OrmQ.objects.exists()


def test_the_sweeper_fails_dead_admin_runs_and_resends_without_running_them_again(
    customers, outbox, django_capture_on_commit_callbacks
):
    group = export_group(destination=str(outbox), schedule_enabled=True, interval_minutes=60)
    first = export_run(group_id=group.pk, trigger="schedule")
    resend = died_while_running(
        export_resend(sent_file_id=SentFile.objects.get(run=first).pk, by="ana"), holds_group=False
    )
    alive = export_run(group_id=group.pk, trigger="admin")
    ExportRun.objects.filter(pk=alive.pk).update(status="running", lease_until=timezone.now() + timedelta(minutes=1))
    by_admin = died_while_running(export_run(group_id=group.pk, trigger="admin", by="ana"))

    with django_capture_on_commit_callbacks(execute=True):
        failed = export_runs_sweep()

    assert sorted(failed) == sorted([resend.pk, by_admin.pk])
    assert ExportRun.objects.get(pk=alive.pk).status == "running"
    assert {r.status for r in ExportRun.objects.filter(pk__in=failed)} == {"failed"}
    assert not OrmQ.objects.exists()  # an admin's run and a file sent again are not run again by themselves


def test_the_sweeper_removes_temporary_files_of_ended_runs_and_old_orphans_only(customers, outbox, settings):
    settings.IMPEX_CACHE_ORPHAN_HOURS = 24
    group = export_group(destination=str(outbox))
    ended = export_run(group_id=group.pk, trigger="schedule")
    running = export_run(group_id=group.pk, trigger="admin")
    ExportRun.objects.filter(pk=running.pk).update(status="running", lease_until=timezone.now() + timedelta(minutes=1))
    cache = Path(settings.IMPEX_CACHE_DIR)
    day_ago = timezone.now().timestamp() - 25 * 3600

    def made(name: str, *, old: bool, folder: bool = True) -> Path:
        path = cache / name
        if folder:
            path.mkdir(parents=True)
            (path / "part").write_bytes(b"x" * 10)
            if old:
                os.utime(path / "part", (day_ago, day_ago))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        if old:
            os.utime(path, (day_ago, day_ago))
        return path

    made(f"export-run-{ended.pk}-abcdefgh", old=False)  # its run ended: its worker died before removing it
    made(f"export-run-{running.pk}-abcdefgh", old=True)  # its run is still going
    made("export-run-999999-abcdefgh", old=True)  # a run the database no longer has, long untouched
    made("export-run-999998-abcdefgh", old=False)
    made("tmpab_cd123", old=True)  # an import's or an upload's temporary folder, left by a killed process
    made("tmpzz_zz999", old=False)
    made("keep-this-old-folder", old=True)  # not a name the hub gives its temporary files
    made("tmp12345678.txt", old=True, folder=False)

    removed = cache_clean()

    assert sorted(removed) == sorted([f"export-run-{ended.pk}-abcdefgh", "export-run-999999-abcdefgh", "tmpab_cd123"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [
            f"export-run-{running.pk}-abcdefgh",
            "export-run-999998-abcdefgh",
            "keep-this-old-folder",
            "tmp12345678.txt",
            "tmpzz_zz999",
        ]
    )


# -- manual exports -------------------------------------------------------------------------------------------------


def test_downloads_and_impex_export_never_move_the_watermark(customers, outbox, tmp_path):
    group = export_group(destination=str(outbox), incremental=True)
    first = export_run(group_id=group.pk, trigger="schedule")
    Customer.objects.filter(customer_id="C2").update(updated_at=first.watermark + timedelta(seconds=1))

    b"".join(export_download(descriptor=group.descriptors.get()))
    call_command("impex_export", group.code, "--out", str(tmp_path / "manual.tsv"), stdout=io.StringIO())
    call_command("impex_export", group.code, stdout=io.StringIO())

    assert watermark_of(group) == first.watermark
    assert ids_in((tmp_path / "manual.tsv").read_bytes()) == ["C1", "C2", "C3"]
    second = export_run(group_id=group.pk, trigger="schedule")
    assert ids_in((outbox / SentFile.objects.get(run=second).name).read_bytes()) == ["C2"]


def test_the_task_runs_the_groups_export_as_scheduled(customers, outbox):
    group = export_group(destination=str(outbox))

    assert export_group_run(group.pk) == "completed"

    run = ExportRun.objects.get()
    assert (run.trigger, run.created_by) == ("schedule", "")


# -- S3 -------------------------------------------------------------------------------------------------------------


def test_a_run_to_s3_puts_the_file_in_the_bucket(customers, s3_bucket, s3_client):
    group = export_group(destination=f"s3://{s3_bucket}/kore/in", incremental=True)

    run = export_run(group_id=group.pk, trigger="schedule")

    sent = SentFile.objects.get(run=run)
    key = f"kore/in/{sent.name}"
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [key]
    data = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert ids_in(data) == ["C1", "C2", "C3"]
    assert sent.path == f"s3://{s3_bucket}/kore/in/{sent.name}"
    assert sent.sha256 == hashlib.sha256(data).hexdigest()


def test_a_run_to_a_bucket_that_does_not_exist_fails_and_keeps_the_watermark(customers, s3_bucket, outbox):
    group = export_group(destination=str(outbox), incremental=True)
    good = export_run(group_id=group.pk, trigger="schedule")
    missing = f"impex-missing-{uuid.uuid4().hex[:8]}"
    group.destination = f"s3://{missing}/in"
    group.save()

    run = export_run(group_id=group.pk, trigger="schedule")

    assert run.status == "failed"
    assert "NoSuchBucket" in run.error or "does not exist" in run.error
    assert watermark_of(group) == good.watermark
    assert kept_copies() == [f"exports/customers-out/sent/{SentFile.objects.get(run=good).name}"]


# -- sending again --------------------------------------------------------------------------------------------------


def test_a_sent_file_is_sent_again_with_the_same_bytes_and_recorded(customers, outbox):
    group = export_group(destination=str(outbox))
    run = export_run(group_id=group.pk, trigger="schedule")
    original = SentFile.objects.get(run=run)
    data = (outbox / original.name).read_bytes()
    (outbox / original.name).unlink()  # the receiver took it, and lost it
    Customer.objects.filter(customer_id="C1").update(first_name="Changed since")

    again = export_resend(sent_file_id=original.pk, by="ana")

    assert (again.status, again.resend_of, again.created_by, again.error) == ("completed", original, "ana", "")
    assert (outbox / original.name).read_bytes() == data
    resent = SentFile.objects.get(run=again)
    assert (resent.name, resent.sha256, resent.size, resent.rows) == (
        original.name,
        original.sha256,
        original.size,
        original.rows,
    )
    assert watermark_of(group) == run.watermark


def test_sending_again_beside_the_file_still_there_keeps_both(customers, outbox):
    group = export_group(destination=str(outbox))
    original = SentFile.objects.get(run=export_run(group_id=group.pk, trigger="schedule"))

    again = export_resend(sent_file_id=original.pk)

    resent = SentFile.objects.get(run=again)
    assert resent.name != original.name
    assert (outbox / resent.name).read_bytes() == (outbox / original.name).read_bytes()
    assert [name for name in everything_in(outbox) if name.startswith(".")] == []


def test_a_kept_copy_that_changed_is_not_sent_again(customers, outbox):
    group = export_group(destination=str(outbox))
    original = SentFile.objects.get(run=export_run(group_id=group.pk, trigger="schedule"))
    (outbox / original.name).unlink()
    with open(hub_storage().local_file(original.copy_path), "ab") as kept:
        kept.write(b"tampered\n")

    again = export_resend(sent_file_id=original.pk)

    assert again.status == "failed"
    assert "its SHA-256 differs" in again.error
    assert everything_in(outbox) == []


# -- storage --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "s3"])
def test_place_file_puts_a_local_file_in_place_whole_and_never_replaces_one(where, tmp_path, request):
    if where == "local":
        storage = storage_for(str(tmp_path / "dest"))
    else:
        storage = storage_for(f"s3://{request.getfixturevalue('s3_bucket')}/dest")
    source = tmp_path / "a.csv"
    source.write_bytes(b"one\n")

    first = place_file(storage, "in/a.csv", source)
    second = place_file(storage, "in/a.csv", source)

    assert first == "in/a.csv" and second != first
    assert [f.name for f in list_files(storage)] == sorted([first, second])
    with open_file(storage, second) as stream:
        assert stream.read() == b"one\n"


class OneFolderSFTP(paramiko.SFTPServerInterface):
    """An SFTP server's file system: one local folder. Like OpenSSH, rename refuses a name that is taken."""

    root = ""

    def _local(self, path):
        return os.path.join(self.root, self.canonicalize(path).lstrip("/"))

    def list_folder(self, path):
        local = self._local(path)
        try:
            names = os.listdir(local)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return [paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(local, name)), filename=name) for name in names]

    def stat(self, path):
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._local(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    lstat = stat

    def open(self, path, flags, attr):
        try:
            fd = os.open(self._local(path), flags, 0o644)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        mode = "wb" if flags & os.O_WRONLY else ("r+b" if flags & os.O_RDWR else "rb")
        handle = paramiko.SFTPHandle(flags)
        handle.readfile = handle.writefile = os.fdopen(fd, mode)
        return handle

    def remove(self, path):
        os.remove(self._local(path))
        return paramiko.SFTP_OK

    def rename(self, oldpath, newpath):
        if os.path.exists(self._local(newpath)):
            return paramiko.SFTP_FAILURE
        os.rename(self._local(oldpath), self._local(newpath))
        return paramiko.SFTP_OK

    def mkdir(self, path, attr):
        os.mkdir(self._local(path))
        return paramiko.SFTP_OK


class LetEveryoneIn(paramiko.ServerInterface):
    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED


@pytest.fixture
def sftp_folder(tmp_path, settings):
    """Serve a local folder over SFTP on loopback; return the sftp:// location of its root and the folder."""
    folder = tmp_path / "sftp-root"
    folder.mkdir()
    root = type("Root", (OneFolderSFTP,), {"root": str(folder)})

    def sftp(transport):
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, root)

    with ssh_on_loopback(LetEveryoneIn, prepare=sftp) as host:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(host.known_hosts_line)
        settings.SFTP_KNOWN_HOST_FILE = str(known_hosts)
        settings.SFTP_PASSWORD = "secret"
        settings.SFTP_KEY_FILE = None
        yield f"sftp://tester@127.0.0.1:{host.port}/", folder


def test_place_file_on_sftp_writes_a_hidden_part_file_and_renames_it(sftp_folder, tmp_path, monkeypatch):
    location, folder = sftp_folder
    storage = storage_for(location + "out")
    (folder / "out").mkdir()
    source = tmp_path / "a.csv"
    source.write_bytes(b"one\n" * 1000)
    seen = []
    real_rename = OneFolderSFTP.rename

    def watching_rename(self, oldpath, newpath):
        seen.append((sorted(os.listdir(folder / "out")), os.path.basename(oldpath)))
        return real_rename(self, oldpath, newpath)

    # The test server's rename (not ours) looks at the folder when the file is renamed.
    monkeypatch.setattr(OneFolderSFTP, "rename", watching_rename)
    first = place_file(storage, "a.csv", source)
    second = place_file(storage, "a.csv", source)
    storage.close()

    assert first == "a.csv" and second.startswith("a_") and second.endswith(".csv")
    assert sorted(os.listdir(folder / "out")) == sorted([first, second])
    assert (folder / "out" / second).read_bytes() == source.read_bytes()
    # Each file was complete under a hidden name before it got its own.
    (before, part), *_ = seen
    assert before == [part] and part.startswith(".a.csv.") and part.endswith(".part")


def test_a_run_to_sftp_puts_the_file_in_place(customers, sftp_folder):
    location, folder = sftp_folder
    (folder / "kore").mkdir()
    group = export_group(destination=location + "kore")

    run = export_run(group_id=group.pk, trigger="schedule")

    assert (run.status, run.error) == ("completed", "")
    sent = SentFile.objects.get(run=run)
    assert os.listdir(folder / "kore") == [sent.name]
    assert ids_in((folder / "kore" / sent.name).read_bytes()) == ["C1", "C2", "C3"]
    assert sent.path == f"{location}kore/{sent.name}"


# -- the group's rules and schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"schedule_enabled": True}, "schedule_enabled", "needs an interval in minutes or a cron expression"),
        ({"schedule_enabled": True, "interval_minutes": 5, "cron": "0 2 * * *"}, "schedule_enabled", "not both"),
        ({"interval_minutes": 0}, "interval_minutes", "Export every 1 to 44640 minutes"),
        ({"interval_minutes": 44641}, "interval_minutes", "Export every 1 to 44640 minutes"),
        ({"cron": "every night"}, "cron", "is not a cron expression of five fields"),
        ({"destination": "smb://host/in"}, "destination", "Unknown scheme 'smb://'"),
        ({"file_name_pattern": "{code}.{ext}"}, "file_name_pattern", "needs {timestamp} or {run}"),
        ({"file_name_pattern": "{code}_{when}.csv"}, "file_name_pattern", "Unknown placeholder {when}"),
        ({"file_name_pattern": "{timestamp:>20}.csv"}, "file_name_pattern", "Unknown placeholder {timestamp:>20}"),
        ({"file_name_pattern": "out/{timestamp}.csv"}, "file_name_pattern", "may not hold a folder"),
        ({"file_name_pattern": ".{timestamp}.csv"}, "file_name_pattern", "may not start with a dot"),
        ({"file_name_pattern": "{timestamp}}.csv"}, "file_name_pattern", "is not a file name pattern"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_with_its_reason(db, fields, field, message):
    group = DataGroup(code="out", name="Out", direction="export", **fields)

    with pytest.raises(ValidationError) as caught:
        group.full_clean(exclude=["descriptors"])

    assert message in " ".join(caught.value.message_dict[field])


def test_only_an_export_group_runs_on_a_schedule(db):
    group = DataGroup(code="in", name="In", direction="import", schedule_enabled=True, interval_minutes=5)

    with pytest.raises(ValidationError) as caught:
        group.full_clean()

    assert caught.value.message_dict == {
        "direction": ["Only export groups run on a schedule: turn 'Export on schedule' off first."]
    }


def test_a_good_schedule_passes_and_names_its_files(db):
    group = DataGroup(
        code="out", name="Out", direction="export", schedule_enabled=True, cron="0 2 * * 1-5", destination="s3://b-1/x"
    )
    group.full_clean()
    group.file_name_pattern = "{code}-{date}-{time}-{run}.{ext}"

    from datetime import UTC, datetime

    assert group.export_file_name(at=datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC), run=7, ext="tsv") == (
        "out-20261102-030405-7.tsv"
    )


def test_schedules_sync_creates_updates_and_removes_an_export_groups_schedule(db):
    group = export_group(schedule_enabled=True, interval_minutes=15)

    schedules_sync()
    schedules_sync()

    (schedule,) = Schedule.objects.filter(name=export_schedule_name(group))
    assert schedule.name == "impex: export customers-out"
    assert (schedule.func, schedule.args, schedule.schedule_type, schedule.minutes) == (
        "impex.tasks.export_group_run",
        f"({group.pk},)",
        Schedule.MINUTES,
        15,
    )

    group.interval_minutes, group.cron = None, "30 1 * * *"
    group.save()
    schedules_sync()

    schedule = Schedule.objects.get(name=export_schedule_name(group))
    assert (schedule.schedule_type, schedule.cron, schedule.minutes) == (Schedule.CRON, "30 1 * * *", None)

    group.schedule_enabled = False
    group.save()
    schedules_sync()

    assert not Schedule.objects.filter(name__startswith="impex: export").exists()
    assert Schedule.objects.filter(name__startswith="impex: ").exists()  # the system's schedules stay


# -- the admin ------------------------------------------------------------------------------------------------------


def run_export_url(group):
    return admin_url(DataGroup, "run_export", group.pk)


def test_run_export_now_is_refused_without_impex_export_data(client, django_user_model, customers, outbox):
    group = export_group(destination=str(outbox))
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_datagroup", "impex.change_datagroup"))

    page = client.get(admin_url(DataGroup, "change", group.pk))
    refused = client.post(run_export_url(group))

    assert page.status_code == 200
    assert b"Run export now" not in page.content
    assert b'id="export-runs"' in page.content
    assert refused.status_code == 403
    assert not OrmQ.objects.exists() and not ExportRun.objects.exists()


def test_run_export_now_queues_a_run_that_a_worker_does(
    client, django_user_model, customers, outbox, django_capture_on_commit_callbacks
):
    group = export_group(destination=str(outbox))
    client.force_login(staff_user(django_user_model, "ana", "impex.view_datagroup", EXPORT_DATA))
    page = client.get(admin_url(DataGroup, "change", group.pk))
    assert b"Run export now" in page.content
    assert client.get(run_export_url(group)).status_code == 405

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_export_url(group), follow=True)

    assert "A run of customers-out is queued" in response.content.decode()
    task = OrmQ.objects.get().task
    assert (task["func"], task["args"]) == ("impex.tasks.export_group_run", (group.pk, "admin", "ana"))
    assert export_group_run(*task["args"]) == "completed"
    run = ExportRun.objects.get()
    assert (run.trigger, run.created_by) == ("admin", "ana")
    page = client.get(admin_url(DataGroup, "change", group.pk)).content.decode()
    assert SentFile.objects.get().name in page and f"#{run.pk}" in page


def test_send_again_is_refused_without_impex_export_data(client, django_user_model, customers, outbox):
    group = export_group(destination=str(outbox))
    sent = SentFile.objects.get(run=export_run(group_id=group.pk, trigger="schedule"))
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_sentfile"))

    page = client.get(admin_url(SentFile, "changelist"))
    client.post(admin_url(SentFile, "changelist"), {"action": "send_again", "_selected_action": [sent.pk]})

    assert page.status_code == 200 and b'value="send_again"' not in page.content
    assert ExportRun.objects.count() == 1
    assert everything_in(outbox) == [sent.name]


def test_send_again_sends_the_chosen_file_again(client, django_user_model, customers, outbox):
    group = export_group(destination=str(outbox))
    sent = SentFile.objects.get(run=export_run(group_id=group.pk, trigger="schedule"))
    (outbox / sent.name).unlink()
    client.force_login(staff_user(django_user_model, "ana", "impex.view_sentfile", EXPORT_DATA))

    response = client.post(
        admin_url(SentFile, "changelist"), {"action": "send_again", "_selected_action": [sent.pk]}, follow=True
    )

    assert f"Sent {sent.name} again: {outbox / sent.name}." in response.content.decode()
    again = ExportRun.objects.get(resend_of=sent)
    assert (again.status, again.created_by) == ("completed", "ana")
    assert everything_in(outbox) == [sent.name]


def test_an_import_groups_page_has_no_export_runs(admin_client, db):
    page = admin_client.get(admin_url(DataGroup, "change", DataGroup.objects.get(code="kore-inbound").pk))

    assert page.status_code == 200
    assert b'id="export-runs"' not in page.content and b"Run export now" not in page.content
    assert b"Scheduled export" not in page.content


def test_saving_a_group_in_the_admin_brings_its_schedule(admin_client, db, django_capture_on_commit_callbacks):
    group = export_group()
    data = {
        "code": group.code,
        "name": group.name,
        "direction": "export",
        "descriptors": [group.descriptors.get().pk],
        "connection": "",
        "schedule_enabled": "on",
        "interval_minutes": "60",
        "cron": "",
        "destination": "",
        "file_name_pattern": "{code}_{timestamp}.{ext}",
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(admin_url(DataGroup, "change", group.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Schedule.objects.get(name="impex: export customers-out").minutes == 60


# -- a scheduled export killed mid-run, then the sweeper (issue 16, M4) -----------------------------------------------

MANY = 100_000


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="another process shares the database here: PostgreSQL only (CI runs it)",
)
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_export_killed_mid_run_is_failed_by_the_sweeper_run_again_and_its_temporary_file_removed(
    builtin_installed, tmp_path, outbox
):
    Customer.objects.bulk_create(
        [Customer(customer_id=f"M{n:06d}", email=f"m{n:06d}@example.com") for n in range(MANY)], batch_size=10_000
    )
    group = export_group(destination=str(outbox), schedule_enabled=True, interval_minutes=60)
    cache = Path(settings.IMPEX_CACHE_DIR)

    def half_written() -> list[Path]:
        return [p for p in cache.glob("export-run-*/*") if p.stat().st_size > 0] if cache.exists() else []

    log = tmp_path / "export.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                f"from impex.tasks import export_group_run as r; r({group.pk})",
            ],
            cwd=settings.BASE_DIR,
            env=process_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not half_written() and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    (partial,) = half_written() or pytest.fail(log.read_text())
    dead = ExportRun.objects.get()
    assert dead.status == "running", "the run ended before the kill: give it more records"
    assert partial.parent.name.startswith(f"export-run-{dead.pk}-")
    assert everything_in(outbox) == []
    # Both leases of the dead worker (60 s by default), the run's and its hold on the group, run out, as a machine
    # whose clock is past them sees them.
    assert lapse(ExportRun.objects.filter(pk=dead.pk)) == 1
    assert lapse(ExportState.objects.filter(run=dead)) == 1

    summary = import_string("impex.tasks.export_runs_sweep")()

    assert summary == "1 export run(s) failed, 1 temporary folder(s) removed"
    dead.refresh_from_db()
    assert dead.status == "failed" and dead.error.startswith(f"its worker {dead.worker} stopped: its lease ran out at")
    assert dead.events.get(status="failed").message == f"failed: {dead.error}"
    assert not partial.parent.exists()
    assert ExportState.objects.get(group=group).run is None
    (task,) = OrmQ.objects.all()  # the schedule's run, at once
    assert export_group_run(*task.task["args"]) == "completed"
    again = ExportRun.objects.exclude(pk=dead.pk).get()
    assert (again.status, again.rows) == ("completed", MANY)
    (sent,) = everything_in(outbox)
    assert len(ids_in((outbox / sent).read_bytes())) == MANY
    assert watermark_of(group) == again.watermark
    assert list(cache.iterdir()) == []
