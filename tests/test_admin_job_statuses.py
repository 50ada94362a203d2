"""Honest job statuses (issue 20): "completed with errors" and "waiting" shown beside the stored statuses on the job
page, the job list (and its filter), the home page and the connections; releasing a sequence wait asks first, naming
what it skips; a job's row errors grouped by message."""

import html
import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from impex.models import Connection, ImportFile, ImportJob
from impex.services.inbox import inbox_scan
from impex.tasks import import_job_run
from impex.tests.helpers import aged, customer_row, inbox_of, run_import, write_kore
from tests.admin_helpers import admin_url, staff_user, table_snapshot


@pytest.fixture(autouse=True)
def quiet(settings):
    """Scans take the files at once; passwords hash cheaply."""
    settings.IMPEX_INBOX_QUIET_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def badge(word: str, label: str | None = None, tone: str | None = None) -> str:
    """The HTML of a shown status's badge."""
    tone = tone or {"completed": "ok", "completed with errors": "warn", "waiting": "warn"}.get(word, "bad")
    label = label or word[:1].upper() + word[1:]
    return f'<span class="impex-badge impex-badge-{tone}" data-status="{word}">{label}</span>'


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


@pytest.fixture
def jobs(tmp_path, kore_connection, bspk_connection):
    """One real job of each shown status: clean, with refused rows, waiting (a scan), failed, errored, queued,
    running."""
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]), connection="kore-erp")
    rows = [customer_row("C2"), customer_row("C3", email=""), customer_row("C4", email="")]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, rows), connection="kore-erp")
    # Sequence 4 arrives by a scan while 3 is missing: it waits.
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 4, [customer_row("C5")]))
    scan = inbox_scan(connection=kore_connection, run_here=True)
    run_import(write_kore(tmp_path, "KS_NOTHING", 9, [{"x": "1"}], integration="INT9"))
    by = dict(
        zip(
            ("completed", "completed with errors", "waiting", "failed"),
            ImportJob.objects.order_by("pk"),
            strict=True,
        )
    )
    assert by["waiting"] == scan.job and by["waiting"].status == "completed"
    assert by["completed with errors"].status == "completed" and by["failed"].status == "failed"
    by["errored"] = ImportJob.objects.create(connection=bspk_connection, status="errored", error="the server went away")
    by["queued"] = ImportJob.objects.create(connection=bspk_connection)
    by["running"] = ImportJob.objects.create(connection=bspk_connection, status="running")
    return by


def test_the_job_list_shows_each_shown_status_as_a_badge_and_filters_by_it(admin_client, jobs):
    changelist = admin_client.get(admin_url(ImportJob, "changelist"))

    for word, job in jobs.items():
        row = re.search(rf"<tr>(?:(?!</tr>).)*?/importjob/{job.pk}/change/.*?</tr>", changelist.text, re.S).group(0)
        if word == "waiting":
            assert badge("waiting", "Waiting for sequence 3") in row
        elif word in ("queued", "running"):
            assert f'data-status="{word}"' in row and "impex-badge-busy" in row
        else:
            assert badge(word) in row, word
        filtered = admin_client.get(admin_url(ImportJob, "changelist"), {"status": word})
        assert [j.pk for j in filtered.context["cl"].result_list] == [job.pk], word
    # The filter offers the words.
    for word in ("completed with errors", "waiting"):
        assert f"?status={word.replace(' ', '+')}" in changelist.text


def test_the_job_page_shows_the_shown_status_in_its_panel_and_fields(admin_client, jobs):
    refused = admin_client.get(admin_url(ImportJob, "change", jobs["completed with errors"].pk))
    clean = admin_client.get(admin_url(ImportJob, "change", jobs["completed"].pk))

    live = re.search(r'<dd id="job-status">(.*?)</dd>', refused.text, re.S).group(1)
    assert badge("completed with errors") in live
    field = re.search(r'<div class="readonly">(<span class="impex-badge.*?</span>)</div>', refused.text).group(1)
    assert field == badge("completed with errors")
    assert badge("completed") in clean.text and "Completed with errors" not in clean.text
    assert 'id="run-again"' not in refused.text


def test_a_waiting_job_offers_its_waiting_file_and_the_release_not_only_run_again(admin_client, jobs, kore_connection):
    job = jobs["waiting"]
    waiting = ImportFile.objects.get(sequence=4)

    page = admin_client.get(admin_url(ImportJob, "change", job.pk))

    assert page.status_code == 200
    assert badge("waiting", "Waiting for sequence 3") in page.text
    box = text_of(re.search(r'id="job-waiting">(.*?)</div>', page.text, re.S).group(1))
    assert f"{waiting.name} : waiting for sequence 3" in box
    assert f'href="{admin_url(ImportFile, "change", waiting.pk)}"' in page.text
    release = reverse("admin:impex_connection_release_wait", args=[kore_connection.pk])
    assert f'id="release-wait" href="{release}"' in page.text
    assert 'id="run-again"' not in page.text


def test_a_waiting_job_turns_completed_once_another_job_imports_its_file(admin_client, jobs, kore_connection):
    job = jobs["waiting"]
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 3, [customer_row("C6")]))

    inbox_scan(connection=kore_connection, run_here=True)

    assert ImportFile.objects.get(sequence=4).status == "imported"
    page = admin_client.get(admin_url(ImportJob, "change", job.pk))
    assert badge("completed") in page.text and 'id="job-waiting"' not in page.text
    filtered = admin_client.get(admin_url(ImportJob, "changelist"), {"status": "waiting"})
    assert list(filtered.context["cl"].result_list) == []


def test_the_home_page_colours_the_latest_jobs_and_the_connections_last_job(admin_client, jobs, kore_connection):
    home = admin_client.get(reverse("admin:index")).text

    latest = re.search(r'id="hub-latest-jobs">(.*?)</table>', home, re.S).group(1)
    for word in ("completed", "completed with errors", "failed"):
        assert badge(word) in latest, word
    assert badge("waiting", "Waiting for sequence 3") in latest
    assert 'data-status="errored">Errored</span>' in latest
    kore_row = re.search(r'<tr class="connection-kore-erp">(.*?)</tr>', home, re.S).group(1)
    assert badge("waiting", "Waiting for sequence 3") in kore_row


def test_the_connections_list_and_page_say_what_the_last_scans_job_waits_for(admin_client, jobs, kore_connection):
    changelist = admin_client.get(admin_url(Connection, "changelist"))
    page = admin_client.get(admin_url(Connection, "change", kore_connection.pk))

    row = re.search(rf"<tr>(?:(?!</tr>).)*?/connection/{kore_connection.pk}/change/.*?</tr>", changelist.text, re.S)
    row_text = text_of(row.group(0))
    assert f"Waiting for sequence 3 · job #{jobs['waiting'].pk}" in row_text
    assert " ok " not in row_text
    inbox = text_of(re.search(r'id="connection-inbox"(.*?)</dl>', page.text, re.S).group(1))
    assert f"Waiting for sequence 3 · job #{jobs['waiting'].pk}" in inbox


def test_a_scan_whose_job_completed_says_ok_and_the_jobs_status(admin_client, kore_connection):
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email="")]))
    job = inbox_scan(connection=kore_connection, run_here=True).job

    changelist = admin_client.get(admin_url(Connection, "changelist"))

    assert f'ok</span> &middot; <a href="{admin_url(ImportJob, "change", job.pk)}">job #{job.pk}</a>' in changelist.text
    assert badge("completed with errors") in changelist.text


# Releasing a sequence wait: asked first, naming what it skips


@pytest.fixture
def gap(tmp_path, kore_connection):
    """kore-erp expects 40; 42 and 43 wait (40 and 41 are missing), 45 waits behind a further gap."""
    Connection.objects.filter(pk=kore_connection.pk).update(next_expected_sequence=40)
    for sequence in (42, 43, 45):
        run_import(
            write_kore(tmp_path, "KS_CUSTOMERS", sequence, [customer_row(f"C{sequence}")]), connection="kore-erp"
        )
    assert set(ImportFile.objects.values_list("status", flat=True)) == {"waiting"}
    return kore_connection


def release_url(conn) -> str:
    return reverse("admin:impex_connection_release_wait", args=[conn.pk])


def test_the_release_confirmation_names_the_sequences_skipped_and_the_files_that_go_in(admin_client, gap):
    before = table_snapshot()

    page = admin_client.get(release_url(gap))

    assert page.status_code == 200
    assert table_snapshot() == before
    text = text_of(page.text)
    assert "Sequences 40 and 41 will be skipped for good" in text
    going_in = text_of(re.search(r'<ul class="release-going-in">(.*?)</ul>', page.text, re.S).group(1))
    assert "ERP_0000042_INT1_KS_CUSTOMERS.NET (sequence 42" in going_in
    assert "ERP_0000043_INT1_KS_CUSTOMERS.NET (sequence 43" in going_in
    assert "ERP_0000045" not in going_in
    assert "ERP_0000045_INT1_KS_CUSTOMERS.NET (sequence 45)" in text_of(page.text.split("release-still-waiting")[1])
    assert f'name="sequence_{gap.pk}" value="42"' in page.text


def test_the_confirmed_release_queues_the_job_and_says_what_was_skipped(admin_client, gap):
    response = admin_client.post(release_url(gap), {"post": "yes", f"sequence_{gap.pk}": "42"})

    job = ImportJob.objects.latest("pk")
    assert response.status_code == 302 and response.url == admin_url(ImportJob, "change", job.pk)
    (message,) = [m.message for m in get_messages(response.wsgi_request)]
    assert message == (
        f"kore-erp: wait released (sequences 40 and 41 skipped for good); import job #{job.pk} is queued to import "
        "the waiting files."
    )
    gap.refresh_from_db()
    assert gap.next_expected_sequence == 42 and job.status == "queued"
    import_job_run(job.pk)
    statuses = dict(ImportFile.objects.values_list("sequence", "status"))
    assert statuses == {42: "imported", 43: "imported", 45: "waiting"}


def test_a_release_refused_changes_nothing(client, django_user_model, admin_client, gap):
    viewer = staff_user(django_user_model, "viewer", "impex.view_connection", "impex.view_importjob")
    client.force_login(viewer)

    page = client.get(release_url(gap))
    post = client.post(release_url(gap), {"post": "yes", f"sequence_{gap.pk}": "42"})
    # Something else arrived since the page named 42: the old confirmation releases nothing.
    Connection.objects.filter(pk=gap.pk).update(next_expected_sequence=41)
    before_stale = table_snapshot()
    stale = admin_client.post(release_url(gap), {"post": "yes", f"sequence_{gap.pk}": "41"})
    unconfirmed = admin_client.post(release_url(gap), {f"sequence_{gap.pk}": "42"})

    assert (page.status_code, post.status_code) == (403, 403)
    assert stale.status_code == 302
    assert "the files waiting have changed since the confirmation was shown; nothing was released" in " ".join(
        m.message for m in get_messages(stale.wsgi_request)
    )
    assert unconfirmed.status_code == 200 and "Sequence 41 will be skipped for good" in unconfirmed.text
    assert table_snapshot() == before_stale
    gap.refresh_from_db()
    assert gap.next_expected_sequence == 41


def test_the_list_action_asks_first_too(admin_client, gap):
    before = table_snapshot()
    data = {"action": "release_sequence_wait", "_selected_action": [gap.pk], "index": "0"}

    asked = admin_client.post(admin_url(Connection, "changelist"), data)

    assert asked.status_code == 200 and table_snapshot() == before
    assert "Sequences 40 and 41 will be skipped for good" in text_of(asked.text)
    assert 'name="action" value="release_sequence_wait"' in asked.text
    done = admin_client.post(admin_url(Connection, "changelist"), {**data, "post": "yes", f"sequence_{gap.pk}": "42"})
    assert done.status_code == 302
    gap.refresh_from_db()
    assert gap.next_expected_sequence == 42


# Row errors grouped by message


def test_row_errors_are_grouped_by_column_and_message_with_counts_leading_to_their_rows(admin_client, tmp_path):
    Connection.objects.create(code="kore-erp", convention="kore", integration_id="INT1")
    rows = [customer_row(f"C{n}", email="") for n in range(5)] + [customer_row("C9", discount_percentage="lots")]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows + [customer_row("C10")]), connection="kore-erp")
    job = ImportJob.objects.get()

    page = admin_client.get(admin_url(ImportJob, "change", job.pk))

    groups = page.context["error_groups"]
    assert [(g["column"], g["rows"]) for g in groups] == [("email", 5), ("discount_percentage", 1)]
    table = re.search(r'id="job-error-groups">(.*?)</table>', page.text, re.S).group(1)
    assert "5 rows" in text_of(table) and "1 row" in text_of(table)
    link = html.unescape(re.findall(r'<a href="\?([^"]+)#job-errors">', table)[0])
    rows_of_group = admin_client.get(admin_url(ImportJob, "change", job.pk) + "?" + link)
    assert rows_of_group.context["errors_page"].paginator.count == 5
    assert {e.column for e in rows_of_group.context["errors_page"]} == {"email"}
    # The individual rows stay: the whole table pages through all six.
    assert page.context["errors_page"].paginator.count == 6


# The live page's data and the lists' queries


def test_the_progress_json_says_the_shown_status(admin_client, jobs):
    progress = admin_client.get(reverse("admin:impex_importjob_progress", args=[jobs["completed with errors"].pk]))

    data = progress.json()
    assert (data["shown_status"], data["status_label"], data["status_tone"]) == (
        "completed with errors",
        "Completed with errors",
        "warn",
    )


def test_the_job_list_and_home_run_as_many_queries_for_many_jobs_as_for_few(
    admin_client, jobs, tmp_path, django_assert_max_num_queries
):
    urls = [admin_url(ImportJob, "changelist"), reverse("admin:index")]
    counts = []
    for url in urls:
        admin_client.get(url)
        with django_assert_max_num_queries(100) as few:
            admin_client.get(url)
        counts.append(len(few))

    for n in range(20):
        (tmp_path / str(n)).mkdir()
        conn = Connection.objects.create(code=f"k{n}", convention="kore", integration_id=f"I{n}")
        rows = [customer_row(f"X{n}"), customer_row(f"Y{n}", email="")]
        run_import(write_kore(tmp_path / str(n), "KS_CUSTOMERS", 1, rows, integration=f"I{n}"), connection=conn.code)
        run_import(write_kore(tmp_path / str(n), "KS_CUSTOMERS", 3, rows, integration=f"I{n}"), connection=conn.code)

    for url, count in zip(urls, counts, strict=True):
        with django_assert_max_num_queries(count):
            response = admin_client.get(url)
        assert response.status_code == 200


def test_a_failed_scan_job_with_a_waiting_file_offers_both_run_again_and_the_wait(admin_client, kore_connection):
    Connection.objects.filter(pk=kore_connection.pk).update(next_expected_sequence=40)
    aged(write_kore(inbox_of(kore_connection), "KS_CUSTOMERS", 41, [customer_row("C1")]))
    aged(write_kore(inbox_of(kore_connection), "KS_NOTHING", 42, [{"x": "1"}]))
    job = inbox_scan(connection=kore_connection, run_here=True).job
    job.refresh_from_db()

    page = admin_client.get(admin_url(ImportJob, "change", job.pk))

    # A file was rejected: the job failed (stored and shown); the one that waits is still named, with the release.
    assert job.status == "failed"
    assert badge("failed", "Failed") in page.text
    assert 'id="run-again"' in page.text
    assert "ERP_0000041_INT1_KS_CUSTOMERS.NET" in text_of(
        re.search(r'id="job-waiting">(.*?)</div>', page.text, re.S)[1]
    )
    assert 'id="release-wait"' in page.text
