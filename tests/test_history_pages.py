"""A year of hourly deliveries for two connections: the job list (with its filters), a job page, the row errors, the
files, the ledger, the home page and a connection page run as many queries as with two days of them.

(Their speed is measured by bench/history_bench.py; tests count queries, never time.)
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from impex.models import ImportFile, ImportJob
from impex.selectors.statuses import SHOWN_STATUSES, jobs_of_shown_status, jobs_with_shown_status
from tests.history import history_make

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("builtin_installed")]

YEAR = 24 * 365
FEW = 48


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pages(history) -> dict[str, str]:
    conn = history.connections[0]
    job = ImportJob.objects.filter(connection=conn, files__failed__gt=0).order_by("-pk").first()
    urls = {
        "job list": "/admin/impex/importjob/",
        **{f"job list, {status}": f"/admin/impex/importjob/?status={status}" for status in SHOWN_STATUSES},
        "job list, one connection": f"/admin/impex/importjob/?connection__id__exact={conn.pk}",
        "job list, a year": f"/admin/impex/importjob/?created_at__year={job.created_at.year}",
        "job list, a search": "/admin/impex/importjob/?q=KS_CUSTOMERS",
        "job list, dry runs": "/admin/impex/importjob/?dry_run=0",
        "job page": f"/admin/impex/importjob/{job.pk}/change/",
        "row errors": "/admin/impex/rowerror/",
        "row errors of a job": f"/admin/impex/rowerror/?job={job.pk}",
        "files": "/admin/impex/importfile/",
        "ledger": "/admin/impex/importedfilename/",
        "events": "/admin/impex/importevent/",
        "home": "/admin/",
        "connection page": f"/admin/impex/connection/{conn.pk}/change/",
    }
    return urls


def queries_of(client, urls: dict[str, str]) -> dict[str, int]:
    counts = {}
    for name, url in urls.items():
        assert client.get(url).status_code == 200, url  # once to warm the caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, url
        counts[name] = len(queries)
    return counts


def test_a_year_of_hourly_jobs_runs_the_queries_of_two_days(admin_client):
    history = history_make(hours=FEW)
    urls = pages(history)
    few = queries_of(admin_client, urls)

    history_make(hours=YEAR, first_hour=FEW)
    assert ImportJob.objects.count() == 2 * YEAR

    many = queries_of(admin_client, pages(history))
    assert many == few
    assert max(many.values()) <= 15, many


def test_the_status_filter_finds_what_the_shown_status_says(db, builtin_installed):
    history_make(hours=500)
    ImportFile.objects.filter(job=ImportJob.objects.filter(status="completed").first()).update(status="waiting")
    jobs = jobs_with_shown_status(ImportJob.objects.all())
    shown = dict(jobs.values_list("pk", "shown_status"))
    for status in SHOWN_STATUSES:
        found = set(jobs_of_shown_status(jobs, status).values_list("pk", flat=True))
        assert found == {pk for pk, word in shown.items() if word == status}, status
    assert set(shown.values()) == set(SHOWN_STATUSES) - {"queued", "running"}
