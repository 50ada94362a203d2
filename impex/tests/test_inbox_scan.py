"""The inbox scan (SPEC sections 1, 4, 9): what it takes, leaves, holds, moves out, mails and schedules."""

import io
import json
import os
import shutil
import threading
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from impex import tasks
from impex.models import Connection, ConnectionState, ImportedFileName, ImportFile, ImportJob, InboxEvent, InboxFile
from impex.services.connections import connection_delete, connection_save
from impex.services.inbox import inbox_scan
from impex.services.schedules import scan_schedule_name, schedules_sync, system_schedules
from impex.services.waits import wait_alerts_send
from impex.storage import resolve_path
from impex.tests.helpers import aged, inbox_of, write_kore
from syncapp.models import Customer, SpecialOrder

DEMO = Path(__file__).resolve().parents[1] / "demo"
BSPK_FILES = sorted(p.name for p in DEMO.glob("SPECIAL-ORDER*_V2_Acme_*.csv"))
ORDERS_FILE = "SPECIAL-ORDERS_V2_Acme_202611010900.csv"


@pytest.fixture(autouse=True)
def quiet(settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


def folder_of(conn: Connection, kind: str) -> Path:
    from django.conf import settings

    return Path(settings.IMPEX_ROOT) / conn.code / kind


def drop_bspk(conn: Connection) -> list[Path]:
    return [aged(Path(shutil.copyfile(DEMO / name, inbox_of(conn) / name))) for name in BSPK_FILES]


def scan_command(*args) -> tuple[dict, int]:
    out = io.StringIO()
    code = 0
    try:
        call_command("impex_scan", "--json", *args, stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    return json.loads(out.getvalue().strip().splitlines()[-1]), code


@pytest.fixture
def acme(bspk_connection):
    Connection.objects.filter(pk=bspk_connection.pk).update(contacts="ops@example.com")
    bspk_connection.refresh_from_db()
    return bspk_connection


def test_the_schedule_task_takes_the_files_into_a_job_that_the_cluster_runs(acme, django_capture_on_commit_callbacks):
    drop_bspk(acme)
    (inbox_of(acme) / "README.txt").write_text("not data")
    (inbox_of(acme) / ".hidden.csv").write_text("x")
    (inbox_of(acme) / "sub").mkdir()
    aged(Path(shutil.copyfile(DEMO / BSPK_FILES[0], inbox_of(acme) / "sub" / BSPK_FILES[0])))

    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.inbox_scan(acme.pk)

    job = ImportJob.objects.get()
    assert summary == f"3 files taken, job #{job.pk}"
    assert (job.source, job.status, job.connection) == ("scan", "queued", acme)
    assert sorted(os.listdir(inbox_of(acme))) == [".hidden.csv", "README.txt", "sub"]
    assert tasks.import_job_run(job.pk) == "completed"
    assert sorted(os.listdir(folder_of(acme, "archive"))) == sorted(BSPK_FILES)
    assert SpecialOrder.objects.count() == 5
    assert ImportedFileName.objects.filter(connection=acme).count() == 3
    history = InboxFile.objects.get(name=BSPK_FILES[0])
    assert history.status == "taken" and history.job == job and history.import_file.status == "imported"
    assert history.left_inbox_at is not None
    assert [e.status for e in history.events.all()] == ["seen", "claimed", "taken"]
    state = ConnectionState.objects.get(connection=acme)
    assert state.last_scan_ok is True and state.last_scan_job == job and state.scan_by == ""


def test_impex_scan_imports_now_and_prints_the_spec_json(acme):
    drop_bspk(acme)

    payload, code = scan_command()

    (entry,) = payload["connections"]
    assert entry["connection"] == acme.code and entry["job"] == ImportJob.objects.get().pk
    assert [f["name"] for f in entry["files"]] == [
        "SPECIAL-ORDERS_V2_Acme_202611010900.csv",
        "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv",
        "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv",
    ]
    assert {f["status"] for f in entry["files"]} == {"imported"}
    assert set(entry["files"][0]) == {
        "name", "descriptor", "status", "created", "updated", "unchanged", "retired", "failed", "errors"
    }  # fmt: skip
    assert code == 0
    assert os.listdir(inbox_of(acme)) == []

    again, code = scan_command("--connection", acme.code)
    assert again == {"connections": [{"connection": acme.code, "job": None, "files": []}]}
    assert code == 0


def test_files_still_being_written_are_left_for_the_next_pass(acme, settings):
    inbox = inbox_of(acme)
    aged(Path(shutil.copyfile(DEMO / BSPK_FILES[0], inbox / (BSPK_FILES[0] + ".part"))))
    aged(Path(shutil.copyfile(DEMO / BSPK_FILES[1], inbox / (BSPK_FILES[1] + ".tmp"))))

    payload, code = scan_command()

    assert payload["connections"][0]["job"] is None and code == 0
    assert sorted(os.listdir(inbox)) == sorted([BSPK_FILES[0] + ".part", BSPK_FILES[1] + ".tmp"])
    # The writer gives the file its name when done: the next pass takes it.
    os.rename(inbox / (BSPK_FILES[0] + ".part"), inbox / BSPK_FILES[0])
    payload, code = scan_command()
    assert [f["name"] for f in payload["connections"][0]["files"]] == [BSPK_FILES[0]]


def test_a_file_growing_while_the_scan_looks_waits_until_it_stops(kore_connection, settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0.5
    inbox = inbox_of(kore_connection)
    path = inbox / "ERP_0000001_INT1_KS_CUSTOMERS.NET"
    path.write_text("customer_id\temail\n", encoding="utf-8")
    stop = threading.Event()

    def write_line(n: int) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"C{n}\tc{n}@example.com\n")

    def write_slowly():
        n = 0
        while not stop.is_set():  # a line every 50 ms while the scan looks, and no more once it has returned
            write_line(n)
            n += 1
            stop.wait(0.05)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        first = inbox_scan(connection=kore_connection, run_here=True)
    finally:
        stop.set()
        writer.join()

    assert first.job is None and path.exists()
    assert first.left == [(path.name, "still being written (it changed while the scan looked)")]
    # The writer writes one more line after the scan's last look: the next scan leaves it again, the one after that
    # (nothing changed since) takes it.
    write_line(-1)
    second = inbox_scan(connection=kore_connection, run_here=True)
    assert second.job is None
    ((name, why),) = second.left
    assert name == path.name and why.startswith("still being written (size ")
    assert why.endswith(f" -> {path.stat().st_size:,} bytes since the last look)")
    rows = path.read_text().count("\n") - 1
    third = inbox_scan(connection=kore_connection, run_here=True)
    assert third.job.status == "completed"
    assert Customer.objects.count() == rows > 1
    history = InboxFile.objects.get(name=path.name)
    assert "still being written" in " ".join(history.events.values_list("message", flat=True))


def test_imported_files_go_to_the_archive_and_rejected_ones_to_the_error_folder_with_the_reason(
    acme, django_capture_on_commit_callbacks
):
    drop_bspk(acme)
    bad = inbox_of(acme) / "SPECIAL-ORDERS_V3_Acme_202611011000.csv"
    bad.write_text("special_order_id\nX\n")
    aged(bad)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        payload, code = scan_command()

    statuses = {f["name"]: f["status"] for f in payload["connections"][0]["files"]}
    assert statuses[bad.name] == "rejected" and code == 1
    assert os.listdir(inbox_of(acme)) == []
    errors = folder_of(acme, "error")
    assert sorted(os.listdir(errors)) == [bad.name, bad.name + ".reason.txt"]
    reason = (errors / (bad.name + ".reason.txt")).read_text()
    assert "V3" in reason and "version" in reason.lower()
    assert sorted(os.listdir(folder_of(acme, "archive"))) == sorted(BSPK_FILES)
    # The one summary mail of the scan, with the rows in error attached.
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
    assert bad.name in message.body and "SPECIAL-ORDER-EVENTS" in message.body
    ((attached_name, content, mimetype),) = message.attachments
    assert attached_name.endswith(".csv") and mimetype == "text/csv"
    text = (content.decode("utf-8") if isinstance(content, bytes) else content).lstrip("\ufeff")
    lines = text.strip().splitlines()
    assert lines[0] == "file,row,column,value,message,external_id"
    assert any("SO-9999" in line and "unknown special order" in line for line in lines)
    assert any(line.startswith(bad.name) for line in lines)


def test_a_scan_where_all_went_well_mails_nobody(acme, django_capture_on_commit_callbacks):
    shutil.copyfile(DEMO / BSPK_FILES[2], inbox_of(acme) / BSPK_FILES[2])
    aged(inbox_of(acme) / BSPK_FILES[2])
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        payload, _ = scan_command()
    assert payload["connections"][0]["files"][0]["status"] == "imported"
    assert mail.outbox == []


def test_archive_and_error_folders_elsewhere_receive_the_files_and_the_job_page_finds_them(acme, tmp_path, client):
    Connection.objects.filter(pk=acme.pk).update(
        archive_folder=str(tmp_path / "done"), error_folder=str(tmp_path / "failed")
    )
    acme.refresh_from_db()
    drop_bspk(acme)
    (inbox_of(acme) / "nonsense.csv").write_text("a\n")
    aged(inbox_of(acme) / "nonsense.csv")

    scan_command()

    assert sorted(os.listdir(tmp_path / "done")) == sorted(BSPK_FILES)
    assert sorted(os.listdir(tmp_path / "failed")) == ["nonsense.csv", "nonsense.csv.reason.txt"]
    imported = ImportFile.objects.get(name=BSPK_FILES[0])
    assert imported.path == str(tmp_path / "done" / BSPK_FILES[0])
    storage, name = resolve_path(imported.path)
    assert storage.open(name).read() == (DEMO / BSPK_FILES[0]).read_bytes()


def test_two_scanners_never_take_one_file_the_second_finds_the_scan_held(acme):
    drop_bspk(acme)
    ConnectionState.objects.create(
        connection=acme, scan_by="other-machine:42", scan_until=timezone.now() + timedelta(minutes=5)
    )

    held = inbox_scan(connection=acme, run_here=True)

    assert held.job is None and held.busy_with == "other-machine:42"
    assert len(os.listdir(inbox_of(acme))) == 3
    # The other scanner died: its hold runs out, and the next scan takes the files.
    ConnectionState.objects.filter(connection=acme).update(scan_until=timezone.now() - timedelta(seconds=1))
    taken = inbox_scan(connection=acme, run_here=True)
    assert taken.job.status == "completed" and len(taken.taken) == 3


def test_a_file_taken_by_a_scan_stopped_before_removing_it_is_removed_not_imported_again(acme):
    drop_bspk(acme)
    first = inbox_scan(connection=acme, run_here=True)
    assert first.job.status == "completed"
    # The state a scanner killed between recording the file and removing it leaves: the original still there.
    name = BSPK_FILES[0]
    shutil.copyfile(folder_of(acme, "archive") / name, inbox_of(acme) / name)
    original = InboxFile.objects.get(name=name)
    stat = os.stat(inbox_of(acme) / name)
    InboxFile.objects.filter(pk=original.pk).update(
        left_inbox_at=None, size=stat.st_size, modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)
    )

    second = inbox_scan(connection=acme, run_here=True)

    assert second.job is None
    assert os.listdir(inbox_of(acme)) == []
    assert ImportFile.objects.filter(name=name).count() == 1
    assert InboxFile.objects.filter(name=name).count() == 1


def test_a_name_sent_again_later_is_a_duplicate_and_leaves_the_inbox(acme):
    drop_bspk(acme)
    inbox_scan(connection=acme, run_here=True)
    shutil.copyfile(DEMO / BSPK_FILES[0], inbox_of(acme) / BSPK_FILES[0])
    aged(inbox_of(acme) / BSPK_FILES[0])

    payload, code = scan_command()

    assert [f["status"] for f in payload["connections"][0]["files"]] == ["duplicate"] and code == 0
    assert os.listdir(inbox_of(acme)) == []
    assert InboxFile.objects.filter(name=BSPK_FILES[0]).count() == 2


def test_a_file_removed_from_the_inbox_before_it_was_taken_is_marked_gone(acme):
    path = inbox_of(acme) / BSPK_FILES[0]
    aged(Path(shutil.copyfile(DEMO / BSPK_FILES[0], path)))
    ConnectionState.objects.create(connection=acme)
    # A job the cluster has queued and not started yet holds the new files back.
    ImportJob.objects.create(connection=acme, source="scan", queued_at=timezone.now())

    held = inbox_scan(connection=acme)

    assert held.left == [(BSPK_FILES[0], f"waits for job #{ImportJob.objects.get().pk} to finish")]
    path.unlink()
    inbox_scan(connection=acme)
    assert InboxFile.objects.get().status == "gone"


def test_full_files_are_held_outside_the_window_and_imported_by_a_scan_once_it_opens(kore_connection):
    now = timezone.now().astimezone(timezone.get_fixed_timezone(0)).time()
    closed_start = clock((now.hour + 2) % 24, 0)
    closed_end = clock((now.hour + 3) % 24, 0)
    Connection.objects.filter(pk=kore_connection.pk).update(full_window_start=closed_start, full_window_end=closed_end)
    write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [{"customer_id": "C1", "email": "a@x"}], mode="FULL")
    aged(inbox_of(kore_connection) / "ERP_0000001_INT1_KS_CUSTOMERS.FULL")

    payload, code = scan_command()

    (f,) = payload["connections"][0]["files"]
    assert f["status"] == "waiting" and code == 1
    assert ImportFile.objects.get().message.startswith("held until the full-refresh window")
    assert os.listdir(inbox_of(kore_connection)) == []  # held by the hub, not left in the inbox
    assert inbox_scan(connection=kore_connection, run_here=True).job is None  # still closed: nothing to do

    Connection.objects.filter(pk=kore_connection.pk).update(
        full_window_start=clock((now.hour + 23) % 24, 0), full_window_end=clock((now.hour + 1) % 24, 59)
    )
    opened = inbox_scan(connection=kore_connection, run_here=True)
    assert opened.job is not None and opened.job.status == "completed"
    assert ImportFile.objects.get().status == "imported"
    assert Customer.objects.get().email == "a@x"


def test_a_sequence_gap_waits_alerts_once_and_the_missing_file_releases_it(
    kore_connection, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=kore_connection.pk).update(contacts="ops@example.com")
    inbox = inbox_of(kore_connection)
    aged(write_kore(inbox, "KS_CUSTOMERS", 1, [{"customer_id": "C1", "email": "one@x"}]))
    aged(write_kore(inbox, "KS_CUSTOMERS", 3, [{"customer_id": "C1", "email": "three@x"}]))

    first, _ = scan_command()

    assert [f["status"] for f in first["connections"][0]["files"]] == ["imported", "waiting"]
    mail.outbox.clear()
    later = timezone.now() + timedelta(minutes=61)
    with django_capture_on_commit_callbacks(execute=True):  # the problem's mail goes once its transaction commits
        assert wait_alerts_send(now=later) == 1
        assert wait_alerts_send(now=later) == 0
    assert "waiting for sequence 2" in mail.outbox[0].body
    aged(write_kore(inbox, "KS_CUSTOMERS", 2, [{"customer_id": "C1", "email": "two@x"}]))

    second, code = scan_command()

    assert {f["name"]: f["status"] for f in second["connections"][0]["files"]} == {
        "ERP_0000002_INT1_KS_CUSTOMERS.NET": "imported",
        "ERP_0000003_INT1_KS_CUSTOMERS.NET": "imported",
    }
    assert code == 0
    assert Customer.objects.get().email == "three@x"


def test_an_inbox_that_cannot_be_read_fails_the_scan_says_why_and_mails_once(
    acme, tmp_path, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=acme.pk).update(inbox=str(tmp_path / "not-there"))
    acme.refresh_from_db()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        payload, code = scan_command()

    assert payload["connections"][0]["job"] is None and code == 1
    state = ConnectionState.objects.get(connection=acme)
    assert state.last_scan_ok is False and "not-there" in state.last_scan_message
    with django_capture_on_commit_callbacks(execute=True):
        scan_command()
    (message,) = mail.outbox
    assert "cannot be scanned" in message.subject and "not-there" in message.body
    # Fixed: the next scan is fine again.
    (tmp_path / "not-there").mkdir()
    scan_command()
    state.refresh_from_db()
    assert state.last_scan_ok is True


def test_a_zip_in_the_inbox_is_unpacked_and_imported(acme):
    archive = shutil.make_archive(str(inbox_of(acme) / "batch"), "zip", root_dir=DEMO, base_dir=BSPK_FILES[2])
    aged(Path(archive))
    shutil.copyfile(DEMO / BSPK_FILES[0], inbox_of(acme) / BSPK_FILES[0])
    aged(inbox_of(acme) / BSPK_FILES[0])

    payload, code = scan_command()

    assert {f["name"]: f["status"] for f in payload["connections"][0]["files"]} == {
        BSPK_FILES[0]: "imported",
        BSPK_FILES[2]: "imported",
    }
    assert code == 0 and os.listdir(inbox_of(acme)) == []


@pytest.mark.django_db
def test_saving_a_connection_creates_updates_and_removes_its_schedule(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        conn, _ = connection_save(code="erp", convention="kore", integration_id="INT9", interval_minutes=15)
    schedule = Schedule.objects.get(name=scan_schedule_name(conn))
    assert (schedule.func, schedule.args, schedule.schedule_type, schedule.minutes) == (
        "impex.tasks.inbox_scan",
        f"({conn.pk},)",
        Schedule.MINUTES,
        15,
    )
    assert schedule.next_run <= timezone.now()

    conn.scan_cron = "*/10 6-22 * * 1-5"
    conn.save()
    schedules_sync()
    schedules_sync()
    schedule = Schedule.objects.get(name=scan_schedule_name(conn))
    assert (schedule.schedule_type, schedule.cron, schedule.minutes) == (Schedule.CRON, "*/10 6-22 * * 1-5", None)

    conn.scan_enabled = False
    conn.save()
    schedules_sync()
    assert not Schedule.objects.filter(name=scan_schedule_name(conn)).exists()
    conn.scan_enabled = True
    conn.save()
    schedules_sync()
    assert Schedule.objects.filter(name=scan_schedule_name(conn)).count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        connection_delete(connection=conn, confirm=True)
    assert not Schedule.objects.filter(name__contains="scan the inbox").exists()
    # Never hand-made duplicates: a second schedule of the same name is removed.
    schedules_sync()
    assert Schedule.objects.filter(name__startswith="impex: ").count() == len(system_schedules())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"interval_minutes": 44641}, "interval_minutes", "at least once a month"),
        ({"scan_cron": "every minute"}, "scan_cron", "not a cron expression"),
        ({"scan_cron": "* * * *"}, "scan_cron", "not a cron expression"),
        ({"archive_folder": "smb://host/x"}, "archive_folder", "Unknown scheme 'smb://' in the archive folder"),
        ({"error_folder": "sftp://user:pw@host/x"}, "error_folder", "Keep the password out of the error folder URL"),
        ({"outbox": "s3://"}, "outbox", "An S3 outbox needs a bucket name"),
    ],
)
def test_schedule_and_folder_values_that_cannot_work_are_refused(values, field, message):
    from django.core.exceptions import ValidationError

    conn = Connection(code="x", convention="kore", integration_id="INT7", **values)
    with pytest.raises(ValidationError) as refused:
        conn.full_clean()
    assert message in " ".join(refused.value.message_dict[field])


def test_inbox_events_record_every_step(acme):
    drop_bspk(acme)
    inbox_scan(connection=acme, run_here=True)
    assert InboxEvent.objects.filter(status="taken").count() == 3
    assert set(InboxEvent.objects.values_list("worker", flat=True)) != {""}


@pytest.mark.django_db
def test_impex_connection_sets_the_schedule_and_folders_and_its_schedule_follows(
    django_capture_on_commit_callbacks, settings
):
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = ["/srv/erp"]
    settings.SFTP_HOSTS = {"93.184.216.34": {}}

    def connection_command(*args):
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("impex_connection", "erp", "--json", *args, stdout=out)
        return json.loads(out.getvalue().strip().splitlines()[-1])

    made = connection_command(
        "--convention", "kore", "--integration", "INT5", "--cron", "*/15 * * * *", "--archive", "s3://done-bucket/erp",
        "--error-folder", "/srv/erp/error", "--outbox", "sftp://hub@93.184.216.34/out",
    )  # fmt: skip
    assert (made["cron"], made["archive"], made["error_folder"], made["outbox"], made["scan"]) == (
        "*/15 * * * *",
        "s3://done-bucket/erp",
        "/srv/erp/error",
        "sftp://hub@93.184.216.34/out",
        True,
    )
    conn = Connection.objects.get(code="erp")
    assert Schedule.objects.get(name=scan_schedule_name(conn)).cron == "*/15 * * * *"

    # An interval given alone is the one used: it clears the cron expression.
    assert connection_command("--interval", "30")["cron"] == ""
    assert Schedule.objects.get(name=scan_schedule_name(conn)).minutes == 30

    assert connection_command("--scan", "off")["scan"] is False
    assert not Schedule.objects.filter(name=scan_schedule_name(conn)).exists()


def test_a_job_a_stopped_scanner_was_filling_is_started_by_the_next_scan_before_newer_files(acme):
    from impex.services.jobs import job_create

    # What a scanner killed after taking a file, before starting its job, leaves: a scan job never queued.
    abandoned = job_create(paths=[DEMO / BSPK_FILES[2]], connection=acme, source="scan")
    newer = inbox_of(acme) / BSPK_FILES[0]
    shutil.copyfile(DEMO / BSPK_FILES[0], newer)
    aged(newer)

    first = inbox_scan(connection=acme)  # as the schedule's task: it queues the job it found

    assert first.job.pk == abandoned.pk
    assert first.left == [(newer.name, f"waits for job #{abandoned.pk} to finish")] and newer.exists()
    abandoned.refresh_from_db()
    assert abandoned.queued_at is not None
    # impex_scan runs the open job here first, then takes the newer file.
    second = inbox_scan(connection=acme, run_here=True)
    abandoned.refresh_from_db()
    assert abandoned.status == "completed"
    assert second.job.pk != abandoned.pk and second.taken == [newer.name] and second.job.status == "completed"
    assert SpecialOrder.objects.count() == 5


def _zip_leaving_its_folder(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../SPECIAL-ORDERS_V2_Acme_202611011200.csv", (DEMO / BSPK_FILES[2]).read_bytes())


@pytest.mark.parametrize(
    ("name", "write", "reason"),
    [
        ("escape.zip", _zip_leaving_its_folder, "leaves its folder"),
        (
            "SPECIAL-ORDERS_V2_Acme_202611011100.csv",
            lambda p: p.write_bytes("special_order_id,customer_name\nSO-1,Caf\xe9\n".encode("latin-1")),
            "UTF-8",
        ),
        ("SPECIAL-ORDERS_V2_Globex_202611011100.csv", lambda p: p.write_text("special_order_id\nSO-1\n"), "Globex"),
        ("SPECIAL-ORDERS_V2_Acme_202611011100.csv", lambda p: p.write_text(""), "empty"),
    ],
    ids=["zip-slip", "not-utf8", "wrong-company", "empty"],
)
def test_a_bad_file_in_the_inbox_goes_to_the_error_folder_with_its_reason_and_changes_nothing(
    acme, name, write, reason
):
    good = inbox_of(acme) / ORDERS_FILE
    shutil.copyfile(DEMO / ORDERS_FILE, good)
    aged(good)
    bad = inbox_of(acme) / name
    write(bad)
    aged(bad)

    payload, code = scan_command()

    statuses = {f["name"]: f["status"] for f in payload["connections"][0]["files"]}
    assert statuses[ORDERS_FILE] == "imported" and code == 1
    assert statuses.get(name, "rejected") == "rejected"
    assert os.listdir(inbox_of(acme)) == []
    errors = folder_of(acme, "error")
    assert sorted(os.listdir(errors)) == [name, name + ".reason.txt"]
    assert reason in (errors / (name + ".reason.txt")).read_text()
    assert SpecialOrder.objects.count() == 5  # only the good file's orders
    assert not SpecialOrder.objects.filter(special_order_id="SO-1").exists()


def test_times_are_compared_to_the_second_so_a_coarser_look_does_not_keep_a_file_waiting(acme):
    path = inbox_of(acme) / ORDERS_FILE
    shutil.copyfile(DEMO / ORDERS_FILE, path)
    aged(path)
    stat = os.stat(path)
    # The last look came from a listing that gave milliseconds; this one gives the same second.
    looked = datetime.fromtimestamp(int(stat.st_mtime), tz=UTC) + timedelta(milliseconds=123)
    InboxFile.objects.create(connection=acme, name=ORDERS_FILE, size=stat.st_size, modified=looked)

    result = inbox_scan(connection=acme, run_here=True)

    assert result.taken == [ORDERS_FILE] and result.job.status == "completed"


def test_a_symbolic_link_in_a_local_inbox_is_never_taken_nor_its_target_moved(acme, tmp_path):
    outside = tmp_path / "secret.csv"
    shutil.copyfile(DEMO / ORDERS_FILE, outside)
    aged(outside)
    (inbox_of(acme) / ORDERS_FILE).symlink_to(outside)

    result = inbox_scan(connection=acme, run_here=True)

    assert result.job is None and result.taken == []
    assert outside.read_bytes() == (DEMO / ORDERS_FILE).read_bytes()
    assert (inbox_of(acme) / ORDERS_FILE).is_symlink()
    assert SpecialOrder.objects.count() == 0
