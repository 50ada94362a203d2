"""Benchmark /metrics and /healthz on big tables: milliseconds per scrape and probe, and the plan of each query.

Usage: python bench/ops_bench.py [--rows 1000000] [--scrapes 20]
Runs against the DATABASE_URL database, which should be an empty PostgreSQL database made for it (it is migrated
and filled): --rows finished import jobs, files, chunks, webhook deliveries and single-record updates, a tenth as
many resolved problems, and a few hundred rows waiting in each queue, as years of use leave them. Each table is
filled from one row copied by INSERT ... SELECT with generate_series, then vacuumed and analyzed.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))


def _copy(cursor, model, pk: int, count: int, **changes) -> None:
    """Insert count copies of one row of model, with changes (column -> SQL expression of n, the copy's number)."""
    table = model._meta.db_table
    columns = [f.column for f in model._meta.concrete_fields if f.column != "id"]
    values = [changes.get(c, f'"{c}"') for c in columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor.execute(
        f'INSERT INTO "{table}" ({quoted}) SELECT {", ".join(values)} FROM "{table}", generate_series(1, %s) AS n '
        f"WHERE id = %s",
        [count, pk],
    )


def fill(rows: int) -> None:
    """Fill the tables /metrics reads as years of use would."""
    from django.db import connection
    from django.utils import timezone

    from impex.models import (
        Connection,
        DataDescriptor,
        ImportChunk,
        ImportFile,
        ImportJob,
        Problem,
        WebhookDelivery,
        WebhookSubscription,
    )
    from syncapp.models import RecordEvent

    now = timezone.now()
    descriptor = DataDescriptor.objects.filter(entity="customer").first()
    conn = Connection.objects.create(code="bench", name="Bench", convention="kore", integration_id="B1")
    job = ImportJob.objects.create(status="completed", connection=conn)
    file = ImportFile.objects.create(job=job, name="f.csv", descriptor=descriptor, status="imported", created=10)
    chunk = ImportChunk.objects.create(file=file, index=0, first_record=0, record_count=10, status="done")
    sub = WebhookSubscription.objects.create(code="bench", url="https://example.com/hook", events=[])
    delivery = WebhookDelivery.objects.create(
        subscription=sub, event="customer.created", payload={}, status="delivered"
    )
    event = RecordEvent.objects.create(
        connection=conn, entity="customer", descriptor_code="KS_CUSTOMERS", record_key="C", payload={}, status="applied"
    )
    problem = Problem.objects.create(kind="inbox", key="bench:0", message="m", resolved_at=now)
    with connection.cursor() as cursor:
        _copy(cursor, ImportJob, job.pk, rows)
        _copy(cursor, ImportJob, job.pk, 300, status="'queued'")
        _copy(cursor, ImportFile, file.pk, rows)
        _copy(cursor, ImportChunk, chunk.pk, rows, index="n")
        _copy(cursor, ImportChunk, chunk.pk, 300, index=f"{rows} + n", status="'pending'")
        _copy(cursor, WebhookDelivery, delivery.pk, rows)
        _copy(cursor, WebhookDelivery, delivery.pk, 300, status="'pending'")
        _copy(cursor, RecordEvent, event.pk, rows)
        _copy(cursor, RecordEvent, event.pk, 300, status="'pending'")
        _copy(cursor, Problem, problem.pk, rows // 10, key="'bench:' || n")
        _copy(cursor, Problem, problem.pk, 50, key="'open:' || n", resolved_at="NULL")
        cursor.execute("VACUUM ANALYZE")  # as autovacuum leaves an append-mostly table: index-only scans work
    ImportJob.objects.filter(status="queued").update(queued_at=now - timedelta(minutes=1))


def measure(scrapes: int) -> None:
    """Time scrapes and probes, and print the plan of every query a scrape runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from impex.services.health import health_report
    from impex.services.metrics import metrics_text

    for name, call in (("/metrics", metrics_text), ("/healthz", health_report)):
        call()  # warm: imports, the first connection
        times = []
        for _ in range(scrapes):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
        with CaptureQueriesContext(connection) as queries:
            call()
        print(
            f"{name}: {len(queries)} queries, median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms over {scrapes}"
        )
    with CaptureQueriesContext(connection) as queries:
        metrics_text()
    with connection.cursor() as cursor:
        for query in queries:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON) " + query["sql"])
            plan = [line for (line,) in cursor.fetchall()]
            nodes = [line.strip() for line in plan if "Scan" in line or "Execution Time" in line]
            print(f"\n{query['sql'][:150]}\n  " + "\n  ".join(nodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished rows in each big table")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes and probes timed")
    args = parser.parse_args()
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    if connection.vendor != "postgresql":
        sys.exit("bench/ops_bench.py needs a PostgreSQL DATABASE_URL (an empty database made for it)")
    call_command("migrate", verbosity=0)
    start = time.perf_counter()
    fill(args.rows)
    print(f"filled {args.rows} rows per big table in {time.perf_counter() - start:.0f} s")
    measure(args.scrapes)


if __name__ == "__main__":
    main()
