"""A year of hourly deliveries for two connections: the job list (with its filters), a job page, the row errors, the
files, the ledger, the home page and a connection page run as many queries as with two days of them.

(Their speed is measured by bench/history_bench.py; tests count queries, never time.)
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from impex.models import ImportFile, ImportJob
from impex.selectors.statuses import SHOWN_STATUSES, jobs_of_shown_status, jobs_with_shown_status
from tests.history import history_make, history_pages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("builtin_installed")]

YEAR = 24 * 365
FEW = 48


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    urls = history_pages(history)
    few = queries_of(admin_client, urls)

    history_make(hours=YEAR, first_hour=FEW)
    assert ImportJob.objects.count() == 2 * YEAR

    many = queries_of(admin_client, history_pages(history))
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
