"""The admin of inbox scans (issue 7): the connections list at a glance, "Sync now", and each inbox file's history."""

import ast
import html
import re
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from django.contrib.messages import get_messages
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule

from impex.models import Connection, ConnectionState, ImportFile, ImportJob, InboxEvent, InboxFile
from impex.services.inbox import inbox_scan
from impex.services.schedules import scan_schedule_name, schedules_sync
from impex.tests.helpers import aged, customer_row, inbox_of, write_kore, write_raw
from syncapp.models import SyncError, SyncLog
from tests.admin_helpers import admin_url, post_data, staff_user, table_snapshot

SCAN_TASK = "impex.tasks.inbox_scan"


@pytest.fixture(autouse=True)
def quiet(settings):
    """Scans take the files at once instead of looking at new ones twice; passwords hash cheaply."""
    settings.IMPEX_INBOX_QUIET_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def kore(code: str, integration: str, **fields) -> Connection:
    return Connection.objects.create(
        code=code, name=code.title(), convention="kore", integration_id=integration, **fields
    )


def closed_window() -> dict:
    """A full-refresh window that opens in two hours (UTC), so that a FULL file is held now."""
    hour = datetime.now(UTC).hour
    return {"full_window_start": clock((hour + 2) % 24, 0), "full_window_end": clock((hour + 3) % 24, 0)}


def row_of(response, conn: Connection) -> tuple[str, str]:
    """Return conn's row of the connections list as HTML and as text (tags dropped, spaces squeezed)."""
    link = f'href="{admin_url(Connection, "change", conn.pk)}'
    rows = [row for row in re.findall(r"<tr[^>]*>.*?</tr>", response.text, re.S) if link in row]
    assert len(rows) == 1, f"{conn.code}: {len(rows)} rows"
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows[0]))).strip()
    return rows[0], text


def queued_scans() -> list[tuple[str, tuple]]:
    """The tasks waiting in django-q2's ORM broker, as (function, arguments)."""
    return [(q.task["func"], q.task["args"]) for q in OrmQ.objects.order_by("pk")]


def messages_of(response) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request)]


@pytest.fixture
def hub(tmp_path, bspk_connection, kore_connection):
    """Connections in every state the list tells apart, brought there by real scans of real inbox folders.

    kore-erp: sequence 1 imported, sequence 3 waiting for 2; kore-held: a FULL file held for its window;
    acme-pos: a file no descriptor matches, rejected, and two open sync errors; kore-broken: an inbox folder that
    is not there; kore-quiet: scans on schedule off; kore-retired: not active.
    """
    write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1")])
    write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 3, [customer_row("C3")])
    held = kore("kore-held", "INT2", **closed_window())
    write_kore(inbox_of(held), "KS_CUSTOMERS", 1, [customer_row("C7")], mode="FULL", integration="INT2")
    write_raw(inbox_of(bspk_connection), "notes.txt", "not a file of any layout\n")
    broken = kore("kore-broken", "INT3", inbox=str(tmp_path / "no-such-folder"))
    quiet = kore("kore-quiet", "INT4", scan_enabled=False, scan_cron="*/10 6-22 * * 1-5")
    retired = kore("kore-retired", "INT5", active=False)
    for conn in (kore_connection, held, bspk_connection):
        for path in inbox_of(conn).iterdir():
            aged(path)
    scans = {conn.code: inbox_scan(connection=conn, run_here=True) for conn in (kore_connection, held, bspk_connection)}
    scans[broken.code] = inbox_scan(connection=broken, run_here=True)
    log = SyncLog.objects.create(connection=bspk_connection, entity="special_order")
    SyncError.objects.bulk_create(SyncError(log=log, external_id=f"SO{n}", message="bad") for n in (1, 2))
    schedules_sync()
    return {
        "kore": kore_connection,
        "held": held,
        "acme": bspk_connection,
        "broken": broken,
        "quiet": quiet,
        "retired": retired,
        "scans": scans,
    }


# The connections list


def test_the_list_shows_each_connections_scans_and_what_waits_for_attention(admin_client, hub):
    next_run = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    Schedule.objects.filter(name=scan_schedule_name(hub["kore"])).update(next_run=next_run)
    job = hub["scans"]["kore-erp"].job

    response = admin_client.get(admin_url(Connection, "changelist"))

    assert response.status_code == 200
    kore_html, kore_text = row_of(response, hub["kore"])
    assert "every 5 min" in kore_text
    # The scan went well, but its job's file of sequence 3 waits for sequence 2: the list says so, not "ok".
    assert re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d Waiting for sequence 2 · job #{job.pk}", kore_text), kore_text
    assert " ok " not in kore_text
    assert f'href="{admin_url(ImportJob, "change", job.pk)}"' in kore_html
    assert date_format(timezone.localtime(next_run), "Y-m-d H:i") in kore_text
    assert "1 for a sequence" in kore_text and "held" not in kore_text
    _, held_text = row_of(response, hub["held"])
    assert "1 held" in held_text and "for a sequence" not in held_text
    acme_html, acme_text = row_of(response, hub["acme"])
    rejected_link, errors_link = re.findall(r'<td class="field-(?:files_rejected|sync_errors)">(.*?)</td>', acme_html)
    assert ">1</a>" in rejected_link and ">2</a>" in errors_link
    broken_html, broken_text = row_of(response, hub["broken"])
    assert "failed" in broken_text and "no-such-folder" in broken_text
    assert 'class="impex-scan-failed" title="the inbox ' in broken_html
    _, quiet_text = row_of(response, hub["quiet"])
    assert "off Sync now only" in quiet_text and "never" in quiet_text
    _, retired_text = row_of(response, hub["retired"])
    assert "off not active" in retired_text


def test_the_lists_links_open_the_files_and_errors_they_count(admin_client, hub):
    acme_html, _ = row_of(admin_client.get(admin_url(Connection, "changelist")), hub["acme"])
    kore_html, _ = row_of(admin_client.get(admin_url(Connection, "changelist")), hub["kore"])
    rejected_url, errors_url = (
        html.unescape(url)
        for url in re.findall(r'<td class="field-(?:files_rejected|sync_errors)"><a href="([^"]+)"', acme_html)
    )
    (waiting_url,) = (
        html.unescape(u) for u in re.findall(r'<td class="field-files_waiting"><a href="([^"]+)"', kore_html)
    )

    rejected = admin_client.get(rejected_url)
    errors = admin_client.get(errors_url)
    waiting = admin_client.get(waiting_url)

    assert [f.name for f in rejected.context["cl"].result_list] == ["notes.txt"]
    assert sorted(e.external_id for e in errors.context["cl"].result_list) == ["SO1", "SO2"]
    assert [f.sequence for f in waiting.context["cl"].result_list] == [3]


def test_a_file_rejected_more_than_a_week_ago_is_not_counted(admin_client, hub):
    ImportFile.objects.filter(name="notes.txt").update(finished_at=timezone.now() - timedelta(days=8))

    acme_html, _ = row_of(admin_client.get(admin_url(Connection, "changelist")), hub["acme"])

    assert '<td class="field-files_rejected">-</td>' in acme_html


def test_a_dry_runs_files_are_not_counted(admin_client, hub):
    dry = ImportJob.objects.create(connection=hub["acme"], dry_run=True, status="completed")
    now = timezone.now()
    ImportFile.objects.bulk_create(
        [
            ImportFile(job=dry, connection=hub["acme"], name="a.csv", status="rejected", finished_at=now),
            ImportFile(
                job=dry, connection=hub["acme"], name="b.csv", status="waiting", message="waiting for sequence 9"
            ),
        ]
    )

    acme_html, _ = row_of(admin_client.get(admin_url(Connection, "changelist")), hub["acme"])

    assert re.search(r'<td class="field-files_rejected"><a [^>]+>1</a></td>', acme_html)
    assert '<td class="field-files_waiting">-</td>' in acme_html


def test_a_scan_in_progress_shows_who_runs_it(admin_client, hub):
    ConnectionState.objects.filter(connection=hub["kore"]).update(
        scan_by="host-1:123", scan_until=timezone.now() + timedelta(minutes=5)
    )

    _, text = row_of(admin_client.get(admin_url(Connection, "changelist")), hub["kore"])

    assert "scanning now host-1:123" in text


def add_connections(count: int, tag: str) -> None:
    """Add count connections with every column filled: a scan's state, schedules, waiting, held and rejected files,
    and sync errors."""
    now = timezone.now()
    conns = Connection.objects.bulk_create(
        Connection(code=f"c-{tag}{n:03d}", convention="kore", integration_id=f"I{tag}{n:03d}") for n in range(count)
    )
    jobs = ImportJob.objects.bulk_create(ImportJob(connection=c, status="completed") for c in conns)
    ConnectionState.objects.bulk_create(
        ConnectionState(
            connection=c, last_scan_at=now, last_scan_ok=n % 2 == 0, last_scan_message="1 file taken", last_scan_job=j
        )
        for n, (c, j) in enumerate(zip(conns, jobs, strict=True))
    )
    ImportFile.objects.bulk_create(
        ImportFile(job=j, connection=c, name=f"{c.code}-{status}-{n}", status=status, message=message, finished_at=now)
        for c, j in zip(conns, jobs, strict=True)
        for n, (status, message) in enumerate(
            [
                ("waiting", "waiting for sequence 2"),
                ("waiting", "held until the full-refresh window"),
                ("rejected", "bad"),
            ]
        )
    )
    logs = SyncLog.objects.bulk_create(SyncLog(connection=c, entity="customer") for c in conns)
    SyncError.objects.bulk_create(SyncError(log=log, external_id="X", message="bad") for log in logs)
    schedules_sync()


def test_the_lists_queries_do_not_grow_with_the_connections(admin_client, django_assert_max_num_queries):
    url = admin_url(Connection, "changelist")
    add_connections(3, "a")
    admin_client.get(url)
    with CaptureQueriesContext(db) as few:
        admin_client.get(url)

    add_connections(27, "b")

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(url)
    assert len(response.context["cl"].result_list) == 30
    _, text = row_of(response, Connection.objects.get(code="c-b026"))
    assert "1 for a sequence" in text and "1 held" in text and "every 5 min" in text
    assert "not scheduled yet" not in text  # the next scan came from its schedule


# The connection's form


def test_the_form_has_the_inbox_schedule_and_folders(admin_client, kore_connection):
    page = admin_client.get(admin_url(Connection, "change", kore_connection.pk))

    sets = {name: list(options["fields"]) for name, options in page.context["adminform"].model_admin.fieldsets}
    assert sets["Inbox and schedule"] == [
        "inbox",
        "scan_enabled",
        "interval_minutes",
        "scan_cron",
        "scan_seconds",
        "timezone",
        "contacts",
    ]
    assert sets["Folders"] == ["archive_folder", "error_folder", "outbox"]


def test_saving_and_deleting_a_connection_bring_its_schedule_in_line(
    admin_client, kore_connection, django_capture_on_commit_callbacks
):
    name = scan_schedule_name(kore_connection)
    page = admin_client.get(admin_url(Connection, "change", kore_connection.pk))
    data = {**post_data(page.context["adminform"].form), "scan_cron": "*/10 6-22 * * 1-5", "_save": "Save"}

    with django_capture_on_commit_callbacks(execute=True):
        saved = admin_client.post(admin_url(Connection, "change", kore_connection.pk), data)
    assert saved.status_code == 302
    assert Schedule.objects.get(name=name).cron == "*/10 6-22 * * 1-5"

    with django_capture_on_commit_callbacks(execute=True):
        deleted = admin_client.post(admin_url(Connection, "delete", kore_connection.pk), {"post": "yes"})
    assert deleted.status_code == 302
    assert not Schedule.objects.filter(name=name).exists()


# "Sync now"


def sync_now(client, conn: Connection):
    return client.post(admin_url(Connection, "sync_now", conn.pk))


def sync_action(client, *conns: Connection):
    data = {"action": "sync_now", "_selected_action": [c.pk for c in conns], "index": "0"}
    return client.post(admin_url(Connection, "changelist"), data)


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(staff_user(django_user_model, "operator", "impex.view_connection", "impex.run_import"))
    return client


def test_sync_now_queues_a_scan_that_takes_the_inbox_into_a_job(
    operator, kore_connection, django_capture_on_commit_callbacks
):
    path = write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1")])
    aged(path)
    page = operator.get(admin_url(Connection, "change", kore_connection.pk))

    with django_capture_on_commit_callbacks(execute=True):
        response = sync_now(operator, kore_connection)

    assert 'id="sync-now"' in page.text
    assert response.status_code == 302
    assert response.url == admin_url(Connection, "change", kore_connection.pk)
    (message,) = messages_of(response)
    assert message.startswith("Scan of kore-erp queued: ")
    assert queued_scans() == [(SCAN_TASK, (kore_connection.pk, "operator"))]
    # What a worker of the cluster does with the task: the file goes into a job, queued in its turn.
    func, args = queued_scans()[0]
    with django_capture_on_commit_callbacks(execute=True):
        summary = import_string(func)(*args)
    assert summary.startswith("1 file taken")
    assert InboxFile.objects.get().status == "taken"
    assert list(inbox_of(kore_connection).iterdir()) == []
    # Who asked for the scan: on its job, in the job's log, on the connection's last scan (the list shows it).
    job = ImportJob.objects.get()
    assert (job.source, job.created_by) == ("scan", "operator")
    assert job.events.filter(kind="note", message__endswith="(Sync now by operator)").exists()
    assert ConnectionState.objects.get(connection=kore_connection).last_scan_message.endswith("(Sync now by operator)")
    _, row = row_of(operator.get(admin_url(Connection, "changelist")), kore_connection)
    assert "(Sync now by operator)" in row


def test_a_scan_on_schedule_names_no_user(kore_connection, django_capture_on_commit_callbacks):
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1")]))
    schedules_sync()
    schedule = Schedule.objects.get(name=scan_schedule_name(kore_connection))

    with django_capture_on_commit_callbacks(execute=True):
        summary = import_string(schedule.func)(*ast.literal_eval(schedule.args))  # the schedule's own call

    assert "Sync now" not in summary
    assert ImportJob.objects.get().created_by == "scan"


@pytest.mark.parametrize(
    ("off", "why"), [({"scan_enabled": False}, "no scans on schedule"), ({"active": False}, "not active")]
)
def test_sync_now_scans_a_connection_that_is_off_and_says_so(
    operator, kore_connection, off, why, django_capture_on_commit_callbacks
):
    path = write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1")])
    aged(path)
    Connection.objects.filter(pk=kore_connection.pk).update(**off)

    with django_capture_on_commit_callbacks(execute=True):
        response = sync_now(operator, kore_connection)

    (message,) = messages_of(response)
    assert message.startswith("Scan of kore-erp queued: ")
    assert f"kore-erp is switched off ({why}): this scan runs because you asked, and it stays off." in message
    assert queued_scans() == [(SCAN_TASK, (kore_connection.pk, "operator"))]
    func, args = queued_scans()[0]
    with django_capture_on_commit_callbacks(execute=True):
        assert import_string(func)(*args).startswith("1 file taken")


def test_the_sync_now_action_queues_a_scan_of_each_selected_connection(
    operator, kore_connection, bspk_connection, django_capture_on_commit_callbacks
):
    changelist = operator.get(admin_url(Connection, "changelist"))

    with django_capture_on_commit_callbacks(execute=True):
        response = sync_action(operator, kore_connection, bspk_connection)

    assert "sync_now" in [name for name, _ in changelist.context["action_form"].fields["action"].choices]
    assert response.status_code == 302
    assert sorted(m.split(":")[0] for m in messages_of(response)) == [
        "Scan of acme-pos queued",
        "Scan of kore-erp queued",
    ]
    assert sorted(queued_scans()) == sorted(
        [(SCAN_TASK, (kore_connection.pk, "operator")), (SCAN_TASK, (bspk_connection.pk, "operator"))]
    )


@pytest.mark.parametrize(
    "perms",
    [
        ["impex.view_connection"],
        ["impex.view_connection", "impex.change_connection", "impex.delete_connection", "impex.view_inboxfile"],
        ["impex.run_import"],
    ],
    ids=["view-only", "every-connection-permission", "run-import-without-the-connections"],
)
def test_sync_now_needs_run_import(
    client, django_user_model, kore_connection, perms, django_capture_on_commit_callbacks
):
    client.force_login(staff_user(django_user_model, "clerk", *perms))
    before = table_snapshot()

    page = client.get(admin_url(Connection, "change", kore_connection.pk))
    changelist = client.get(admin_url(Connection, "changelist"))
    with django_capture_on_commit_callbacks(execute=True):
        button = sync_now(client, kore_connection)
        action = sync_action(client, kore_connection)

    if "impex.view_connection" in perms:
        assert 'id="sync-now"' not in page.text and "sync-now" not in page.text
        assert "sync_now" not in changelist.text
    assert button.status_code == 403
    assert action.status_code in (200, 302, 403)
    assert not [m for m in messages_of(action) if "queued" in m]
    assert queued_scans() == []
    assert table_snapshot() == before


def test_sync_now_is_a_post_with_the_csrf_token(admin_user, kore_connection, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    url = admin_url(Connection, "sync_now", kore_connection.pk)
    token = str(client.get(admin_url(Connection, "change", kore_connection.pk)).context["csrf_token"])

    with django_capture_on_commit_callbacks(execute=True):
        get = client.get(url)
        forged = client.post(url)
    assert (get.status_code, forged.status_code) == (405, 403)
    assert queued_scans() == []

    with django_capture_on_commit_callbacks(execute=True):
        real = client.post(url, {"csrfmiddlewaretoken": token})
    assert real.status_code == 302
    assert queued_scans() == [(SCAN_TASK, (kore_connection.pk, admin_user.get_username()))]


# Each inbox file's history


def test_an_inbox_files_page_shows_its_history_job_and_outcome(admin_client, hub):
    taken = InboxFile.objects.get(connection=hub["kore"], name__contains="_0000001_")
    job = hub["scans"]["kore-erp"].job

    page = admin_client.get(admin_url(InboxFile, "change", taken.pk))

    assert page.status_code == 200
    (inline,) = page.context["inline_admin_formsets"]
    steps = [(form.instance.status, form.instance.message) for form in inline.formset.forms]
    assert [status for status, _ in steps] == ["seen", "claimed", "taken"]
    assert steps[-1][1] == f"taken into import job #{job.pk}"
    assert f'href="{admin_url(ImportJob, "change", job.pk)}"' in page.text
    assert f'href="{admin_url(ImportFile, "change", taken.import_file_id)}"' in page.text
    assert "imported" in page.context["adminform"].form.instance.import_file.status
    assert not page.context["has_change_permission"]
    assert 'name="_save"' not in page.text and "deletelink" not in page.text


def test_the_inbox_files_list_tells_what_became_of_each(admin_client, hub):
    response = admin_client.get(admin_url(InboxFile, "changelist"))

    assert response.status_code == 200
    outcomes = {
        f.name: row_text for f, row_text in zip(response.context["cl"].result_list, rows_of(response), strict=True)
    }
    assert "imported" in outcomes["ERP_0000001_INT1_KS_CUSTOMERS.NET"]
    assert "waiting: waiting for sequence 2" in outcomes["ERP_0000003_INT1_KS_CUSTOMERS.NET"]
    assert "waiting: held until the full-refresh window" in outcomes["ERP_0000001_INT2_KS_CUSTOMERS.FULL"]
    assert re.search(r"rejected: notes\.txt: \S", outcomes["notes.txt"]), outcomes["notes.txt"]
    assert "job #" in outcomes["notes.txt"]


def rows_of(response) -> list[str]:
    """The text of each result row of a changelist, in order."""
    body = response.text.split('id="result_list"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))).strip() for row in rows]


def test_the_inbox_files_list_filters_by_connection_and_status_and_finds_by_name(admin_client, hub):
    url = admin_url(InboxFile, "changelist")

    by_connection = admin_client.get(url, {"connection__id__exact": hub["kore"].pk})
    by_status = admin_client.get(url, {"status__exact": "taken", "q": "INT2"})

    assert sorted(f.name for f in by_connection.context["cl"].result_list) == [
        "ERP_0000001_INT1_KS_CUSTOMERS.NET",
        "ERP_0000003_INT1_KS_CUSTOMERS.NET",
    ]
    assert [f.name for f in by_status.context["cl"].result_list] == ["ERP_0000001_INT2_KS_CUSTOMERS.FULL"]


def test_the_view_permission_reads_the_history_and_nobody_writes_it(client, django_user_model, admin_client, hub):
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_inboxfile"))
    f = InboxFile.objects.order_by("pk").first()
    before = table_snapshot()

    listed = client.get(admin_url(InboxFile, "changelist"))
    page = client.get(admin_url(InboxFile, "change", f.pk))
    writes = [
        admin_client.get(admin_url(InboxFile, "add")),
        admin_client.post(admin_url(InboxFile, "add"), {"name": "x", "connection": hub["kore"].pk}),
        admin_client.post(admin_url(InboxFile, "change", f.pk), {"name": "x", "_save": "Save"}),
        admin_client.post(admin_url(InboxFile, "delete", f.pk), {"post": "yes"}),
    ]
    action = admin_client.post(
        admin_url(InboxFile, "changelist"), {"action": "delete_selected", "_selected_action": [f.pk], "post": "yes"}
    )

    assert (listed.status_code, page.status_code) == (200, 200)
    assert [r.status_code for r in writes] == [403, 403, 403, 403]
    assert action.status_code == 200  # no such action: the list again, nothing deleted
    assert table_snapshot() == before
    assert InboxEvent.objects.filter(inbox_file=f).exists()


def test_a_connections_page_shows_its_latest_inbox_files(admin_client, hub):
    page = admin_client.get(admin_url(Connection, "change", hub["kore"].pk))

    inbox = page.text.split('id="connection-inbox"', 1)[1].split("</fieldset>", 1)[0]
    assert inbox.count('class="inbox-file"') == 2
    assert "ERP_0000003_INT1_KS_CUSTOMERS.NET" in inbox and "waiting for sequence 2" in inbox
    assert f"?connection__id__exact={hub['kore'].pk}" in inbox
    assert f"job #{hub['scans']['kore-erp'].job.pk}" in inbox


def test_a_connections_page_lists_at_most_twenty_inbox_files(admin_client, kore_connection):
    now = timezone.now()
    InboxFile.objects.bulk_create(
        InboxFile(connection=kore_connection, name=f"f{n:02d}", status="gone", first_seen=now - timedelta(minutes=n))
        for n in range(25)
    )

    page = admin_client.get(admin_url(Connection, "change", kore_connection.pk))

    names = re.findall(r'<tr class="inbox-file">\s*<td class="wrap"><a href="[^"]+">([^<]+)</a>', page.text)
    assert names == [f"f{n:02d}" for n in range(20)]  # the latest first


def test_the_inbox_section_needs_the_inbox_files_view_permission(client, django_user_model, hub):
    client.force_login(staff_user(django_user_model, "clerk", "impex.view_connection"))

    page = client.get(admin_url(Connection, "change", hub["kore"].pk))

    assert page.status_code == 200
    assert 'id="connection-inbox"' not in page.text
