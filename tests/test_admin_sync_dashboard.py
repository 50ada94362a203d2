"""The sync-log dashboard (SPEC section 8): a connection's entity with its last syncs, open errors (searchable, with
the job and row behind each), and rows synced and errors per day over the last 30 days, linked to the jobs."""

import re

import pytest
from django.utils import timezone

from impex.models import ImportJob
from impex.tests.helpers import customer_row, run_import, write_kore
from syncapp.models import SyncError, SyncLog
from syncapp.record_events import record_events_pass
from tests.admin_helpers import admin_url, staff_user


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def synced(tmp_path, kore_connection):
    """A FULL file of 4 customers, one refused (no e-mail)."""
    rows = [customer_row("C-1"), customer_row("C-2", email=""), customer_row("C-3"), customer_row("C-4")]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows, mode="FULL"))
    assert code == 0, report
    return SyncLog.objects.get(connection=kore_connection, entity="customer")


def test_the_dashboard_shows_the_last_syncs_the_open_errors_and_their_job(admin_client, synced):
    response = admin_client.get(admin_url(SyncLog, "change", synced.pk))

    assert response.status_code == 200
    page = response.text
    assert 'id="last-full-sync">never<' not in page  # a FULL file stamps the full sync
    assert 'id="last-partial-sync">never<' in page
    assert re.search(r'id="open-error-count">\s*1\s*<', page)
    (error,) = response.context["errors_page"].object_list
    job = ImportJob.objects.get()
    assert (error.external_id, error.row, error.job_id) == ("C-2", 3, job.pk)
    assert f'href="{admin_url(ImportJob, "change", job.pk)}"' in page
    assert "first_seen" not in page  # shown as columns, not field names
    assert "First seen" in page and "Last seen" in page


def test_the_chart_counts_today_and_links_to_that_days_jobs(admin_client, synced, api):
    api.post("/api/events/customers/", {"customer_id": "C-1", "last_name": "New"})
    record_events_pass(by="test")

    response = admin_client.get(admin_url(SyncLog, "change", synced.pk))

    days = response.context["days"]
    assert len(days) == 30
    today = days[-1]
    assert today.day == timezone.localdate()
    assert (today.rows, today.errors, today.files, today.events) == (4, 1, 1, 1)
    assert all(d.rows == 0 for d in days[:-1])
    assert response.context["totals"] == {"rows": 4, "errors": 1}
    chart = response.text.index('id="sync-chart"')
    svg = response.text[chart : response.text.index("</svg>", chart)]
    assert svg.count('class="chart-day"') == 30
    assert f'data-day="{today.day:%Y-%m-%d}" data-rows="4" data-errors="1"' in svg
    jobs = admin_client.get(today.jobs_url.replace("&amp;", "&"))
    assert jobs.status_code == 200
    assert [j.pk for j in jobs.context["cl"].result_list] == [ImportJob.objects.get().pk]


def test_the_open_errors_are_searchable_and_paged(admin_client, synced):
    SyncError.objects.bulk_create(
        SyncError(log=synced, external_id=f"X-{n:03}", message="price list unknown" if n % 2 else "bad e-mail")
        for n in range(120)
    )
    url = admin_url(SyncLog, "change", synced.pk)

    first = admin_client.get(url)
    found = admin_client.get(url, {"q": "price list"})
    by_id = admin_client.get(url, {"q": "X-007"})
    last = admin_client.get(url, {"p": "3"})

    assert first.context["errors_page"].paginator.count == 121
    assert len(first.context["errors_page"].object_list) == 50
    assert found.context["errors_page"].paginator.count == 60
    assert [e.external_id for e in by_id.context["errors_page"].object_list] == ["X-007"]
    assert len(last.context["errors_page"].object_list) == 21
    assert "page 3 of 3" in last.text


def test_the_list_links_each_log_to_its_dashboard(admin_client, synced):
    response = admin_client.get(admin_url(SyncLog, "changelist"))

    assert f'href="{admin_url(SyncLog, "change", synced.pk)}">Dashboard</a>' in response.text


def test_staff_need_the_view_permission_and_cannot_post(client, django_user_model, synced):
    client.force_login(staff_user(django_user_model, "nobody"))
    assert client.get(admin_url(SyncLog, "change", synced.pk)).status_code == 403

    client.force_login(staff_user(django_user_model, "viewer", "syncapp.view_synclog"))
    assert client.get(admin_url(SyncLog, "change", synced.pk)).status_code == 200
    assert client.post(admin_url(SyncLog, "change", synced.pk), {}).status_code == 403
    assert SyncLog.objects.filter(pk=synced.pk).exists()


def test_a_partial_sync_keeps_errors_and_resolves_those_now_clean(admin_client, synced, tmp_path):
    code, report = run_import(
        write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C-2"), customer_row("C-5", email="")])
    )
    assert code == 0, report

    response = admin_client.get(admin_url(SyncLog, "change", synced.pk))

    assert [e.external_id for e in response.context["errors_page"].object_list] == ["C-5"]
    assert 'id="last-partial-sync">never<' not in response.text
