"""Benchmark the admin pages over a year of hourly deliveries: the job list (and its filters), a job page, the row
errors, the files, the ledger, the home page and a connection page, and impex_purge over that history.

Usage: python bench/history_bench.py [--days 365] [--connections 2] [--purge]
Runs against the DATABASE_URL database (SQLite file by default); it removes the history of an earlier run first,
then writes one job per connection each hour (tests/history.py: a file each, four events, every tenth file with 20
refused rows) with bulk INSERTs. Prints, per page, the median time of 5 loads and the number of queries; on
PostgreSQL, the plan's top nodes of the page's slowest query. --purge then runs impex_purge with the default
retention (dry, then for real) and prints its time and what it removed.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--purge", action="store_true", help="Then purge what is older than the retention.")
    args = parser.parse_args()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from impex.models import Connection, ImportJob, RowError
    from impex.services.purge import history_purge
    from tests.history import history_make, history_pages

    call_command("migrate", verbosity=0)
    Connection.objects.filter(code__startswith="history-").delete()
    ImportJob.objects.filter(connection__isnull=True, source="scan").delete()
    started = time.perf_counter()
    history = history_make(hours=24 * args.days, connections=args.connections)
    took = time.perf_counter() - started
    print(
        f"history: {history.jobs:,} jobs, {history.files:,} files, {history.events:,} events, "
        f"{history.row_errors:,} row errors written in {took:.1f} s ({connection.vendor})"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    user = get_user_model().objects.filter(username="history-bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("history-bench", "bench@example.com", secrets.token_hex(8))
    client = Client()
    client.force_login(user)
    pages = history_pages(history)
    print(f"{'page':36} {'median ms':>10} {'queries':>8}  slowest query (ms)")
    for name, url in pages.items():
        times, slowest = [], (0.0, "")
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            for q in queries.captured_queries:
                if float(q["time"]) * 1000 > slowest[0]:
                    slowest = (float(q["time"]) * 1000, q["sql"])
        print(f"{name:36} {statistics.median(times):10.1f} {len(queries):8}  {slowest[0]:.1f}")
        if connection.vendor == "postgresql" and slowest[1].lstrip().upper().startswith("SELECT"):
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + slowest[1])
                plan = [row[0] for row in cursor.fetchall()]
            nodes = [line.strip() for line in plan if "Scan" in line or "Sort" in line][:4]
            print("    " + "\n    ".join(nodes))
    print(f"row errors: {RowError.objects.count():,}")
    if args.purge:
        for dry in (True, False):
            started = time.perf_counter()
            report = history_purge(dry_run=dry)
            took = time.perf_counter() - started
            removed = ", ".join(f"{count:,} {kind}" for kind, count in report.removed.items() if count)
            print(f"purge{' (dry run)' if dry else ''}: {took:.1f} s: {removed}")


if __name__ == "__main__":
    main()
