"""Benchmark the data-sync APIs: webhook events of a big customer file, single-record updates, extraction.

Usage: python bench/sync_api_bench.py [--customers 100000] [--events 2000] [--phases webhooks,updates,extract]
Runs against the DATABASE_URL database (SQLite file by default) with a throwaway IMPEX_ROOT; it removes the
customers, events and subscriptions of an earlier run first. A KS_CUSTOMERS file of N new customers is imported
first (without any webhook subscriber: the import time without webhooks). Phases:
1. webhooks: the same customers changed by a second file with a subscriber to customer.created/updated and
   file.imported (a receiver on loopback): the import time with webhooks, how many events the file raised and how
   long their delivery took (the point: one event per batch, not one per customer);
2. updates: M single-record updates received (as POST /api/events/customers/ stores them), then applied by one
   pass on one worker (applied/s, and the pass's own peak RSS); its floor in the same run: the same M changes as
   one NET file through impex_import (rows/s), and the ratio of the two;
3. extract: paging through every customer with GET /api/extract/customers/?limit=1000.
Prints rows/s of each phase and the peak RSS of this process.
"""

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# The receiver listens on loopback, which the hub calls only when listed (impex.outbound).
os.environ.setdefault("IMPEX_ALLOWED_HOSTS_OUTBOUND", "127.0.0.1")
# The deliveries are timed on their own, not inside impex_import.
os.environ["IMPEX_WEBHOOK_INLINE_SECONDS"] = "0"

from export_bench import peak_rss_mb  # noqa: E402  (this folder is on the path when run as a script)

CODE = "bench-sync"
INTEGRATION = "BENCHSYN"


def reset_peak_rss() -> None:
    """Start this process's peak resident memory over from now (Linux: clear_refs 5), so a phase reports its own."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def changes_file(folder: Path, seq: int, m: int) -> str:
    """Write the changes of the updates phase as one NET file: M customers' last names (new values), e-mails as
    they are."""
    path = folder / f"ERP_{seq:07d}_{INTEGRATION}_KS_CUSTOMERS.NET"
    with path.open("w", encoding="utf-8") as out:
        out.write("customer_id\temail\tlast_name\n")  # a file carries every required column
        for i in range(m):
            out.write(f"BS-{i:07d}\tbs{i}@example.com\tF{i}\n")
    return str(path)


def customers_file(folder: Path, seq: int, n: int, name: str) -> str:
    path = folder / f"ERP_{seq:07d}_{INTEGRATION}_KS_CUSTOMERS.NET"
    with path.open("w", encoding="utf-8") as out:
        out.write("customer_id\temail\tfirst_name\n")
        for i in range(n):
            out.write(f"BS-{i:07d}\tbs{i}@example.com\t{name}\n")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--phases", default="webhooks,updates,extract", help="Comma-separated: webhooks, updates, extract."
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    root = tempfile.mkdtemp(prefix="sync-api-bench-")
    os.environ["IMPEX_ROOT"] = root
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from impex.models import Connection, ImportedFileName, WebhookDelivery, WebhookSubscription
    from impex.services.tokens import api_token_issue
    from impex.services.webhooks import webhooks_deliver_pass
    from orders.tests.receiver import start_receiver
    from syncapp.models import Customer, RecordEvent, SyncLog
    from syncapp.record_events import record_event_receive, record_events_pass

    call_command("migrate", verbosity=0)
    WebhookSubscription.objects.filter(code="bench").delete()
    Customer.objects.filter(customer_id__startswith="BS-").delete()
    conn = Connection.objects.filter(code=CODE).first()
    if conn is not None:
        ImportedFileName.objects.filter(connection=conn).delete()
        SyncLog.objects.filter(connection=conn).delete()
        RecordEvent.objects.filter(connection=conn).delete()
        conn.delete()
    conn = Connection.objects.create(code=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False)
    folder = Path(root) / "files"
    folder.mkdir()
    n, m = args.customers, args.events
    if m > n:
        parser.error("--events may be at most --customers: the floor's file changes each customer once")
    devnull = open(os.devnull, "w")
    results = {"customers": n, "events": m, "database": django.db.connection.vendor}
    peak = 0.0

    started = time.perf_counter()
    call_command("impex_import", customers_file(folder, 1, n, "First"), "--connection", CODE, stdout=devnull)
    took = time.perf_counter() - started
    results["import_without_webhooks_s"] = round(took, 2)
    results["import_without_webhooks_rows_per_s"] = round(n / took)

    server = None
    if "webhooks" in phases:
        # The receiver answers until the end: the later phases' imports deliver their events too.
        receiver, server = start_receiver()
        WebhookSubscription.objects.create(
            code="bench",
            url=receiver.url,
            events=["customer.created", "customer.updated", "file.imported"],
            secret="k",
        )
        started = time.perf_counter()
        call_command("impex_import", customers_file(folder, 2, n, "Second"), "--connection", CODE, stdout=devnull)
        took = time.perf_counter() - started
        results["import_with_webhooks_s"] = round(took, 2)
        results["import_with_webhooks_rows_per_s"] = round(n / took)
        results["webhook_events_of_the_file"] = WebhookDelivery.objects.filter(subscription__code="bench").count()
        started = time.perf_counter()
        webhooks_deliver_pass()
        took = time.perf_counter() - started
        ids = sum(len(r.json["data"].get("customer_ids", [])) for r in receiver.received)
        assert ids == n, (ids, n)
        results["webhook_delivery_s"] = round(took, 2)
        results["webhook_ids_announced"] = ids

    if "updates" in phases:
        started = time.perf_counter()
        for i in range(m):
            record_event_receive(
                connection=conn, kind="customers", body={"customer_id": f"BS-{i:07d}", "last_name": f"L{i}"}
            )
        took = time.perf_counter() - started
        results["events_received_per_s"] = round(m / took)
        peak = peak_rss_mb()
        reset_peak_rss()
        results["events_pass_start_rss_mb"] = round(peak_rss_mb(), 1)
        started = time.perf_counter()
        reports = record_events_pass(by="bench")
        took = time.perf_counter() - started
        assert len(reports) == m and {r.status for r in reports} == {"applied"}, {r.status for r in reports}
        applied = m / took
        results["events_pass_s"] = round(took, 3)
        results["events_applied_per_s"] = round(applied)
        results["events_pass_peak_rss_mb"] = round(peak_rss_mb(), 1)
        results["webhook_events_of_the_updates"] = WebhookDelivery.objects.filter(
            subscription__code="bench", payload__data__source="api"
        ).count()
        # The floor: the same changes as one NET file through the import, in this run.
        path = changes_file(folder, 3 if "webhooks" in phases else 2, m)
        started = time.perf_counter()
        call_command("impex_import", path, "--connection", CODE, stdout=devnull)
        took = time.perf_counter() - started
        assert Customer.objects.filter(customer_id__startswith="BS-", last_name__startswith="F").count() == m
        results["floor_file_s"] = round(took, 3)
        results["floor_file_rows_per_s"] = round(m / took)
        results["floor_over_updates_ratio"] = round((m / took) / applied, 2)

    if server is not None:
        server.shutdown()
        server.server_close()

    if "extract" in phases:
        client = Client()
        token = api_token_issue(connection=conn, by="bench")
        started = time.perf_counter()
        cursor, seen = None, 0
        while True:
            query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            body = client.get(
                "/api/extract/customers/", query, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost"
            ).json()
            seen += len(body["results"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        took = time.perf_counter() - started
        assert seen >= n
        results["extract_records"] = seen
        results["extract_records_per_s"] = round(seen / took)
    results["peak_rss_mb"] = round(max(peak, peak_rss_mb()), 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
