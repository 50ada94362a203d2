"""Benchmark the order chain: confirming imported orders, the export pass (webhook then file) and the feed pass.

Usage: python bench/orders_bench.py [--orders 5000] [--workers 1]
Runs against the DATABASE_URL database (SQLite file by default) with a throwaway IMPEX_ROOT; it removes the orders,
exporters and events of an earlier run first. Phases: import a KS_ORDERS and a KS_ORDER_LINES file (2 lines per
order; the orders are confirmed in bulk as the lines file finishes); one export pass through a webhook exporter
(to a receiver on loopback) and a file exporter (each order: one POST, two files); N delivery events stored as
POST /api/feeds/shipments/ stores them, then one feed pass on this one worker (every order completed). With
--workers N the export pass runs in N processes at once (PostgreSQL); --feed-only skips the export pass (the feed
takes confirmed orders too). Prints orders/s of each phase and the peak RSS of this process; for the feed, events
applied/s with the queries of the pass, and its floor in the same run: the same rows written set-based (the
shipments and timeline rows as bulk INSERTs, lines, orders and events as one UPDATE each, the state set directly
instead of through the state machine), rolled back.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# The receiver listens on loopback, which the hub calls only when listed (impex.outbound).
os.environ.setdefault("IMPEX_ALLOWED_HOSTS_OUTBOUND", "127.0.0.1")

from export_bench import peak_rss_mb  # noqa: E402  (this folder is on the path when run as a script)

CODE = "bench-orders"
INTEGRATION = "BENCHORD"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--feed-only", action="store_true", help="Skip the export pass (orders stay confirmed).")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="orders-bench-")
    os.environ["IMPEX_ROOT"] = root
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import CaptureQueriesContext

    from impex.models import Connection, ImportedFileName
    from orders.feeds import feed_events_receive, orders_feed_pass
    from orders.models import Exporter, FeedEvent, Order
    from orders.services import exporter_save
    from orders.tests.receiver import start_receiver
    from syncapp.models import Customer, Product

    call_command("migrate", verbosity=0)
    Order.objects.filter(order_id__startswith="BO-").delete()
    FeedEvent.objects.filter(order_ref__startswith="BO-").delete()
    Exporter.objects.filter(code__startswith="bench-").delete()
    Customer.objects.filter(customer_id="BC-1").delete()
    Product.objects.filter(product_id="BP-1").delete()
    conn = Connection.objects.filter(code=CODE).first()
    if conn is not None:
        ImportedFileName.objects.filter(connection=conn).delete()
        conn.delete()
    conn = Connection.objects.create(code=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False)
    receiver, server = start_receiver()
    exporter_save(
        code="bench-hook",
        values={"flag": "bench-hook", "kind": "webhook", "url": receiver.url, "secret": "k", "next_flag": "bench-file"},
    )
    exporter_save(code="bench-file", values={"flag": "bench-file", "kind": "file"})

    folder = Path(root) / "files"
    folder.mkdir()
    n = args.orders
    files = {
        "KS_CUSTOMERS": "customer_id\temail\nBC-1\tbc1@example.com\n",
        "KS_PRODUCTS": "product_id\ttitle\tvariant_id\tsku\nBP-1\tBench\tBV-1\tBS-1\nBP-1\tBench\tBV-2\tBS-2\n",
        "KS_ORDERS": "order_id\tcustomer_id\torder_date\tcurrency\ttotal\n"
        + "".join(f"BO-{i}\tBC-1\t2026-11-01T10:00:00Z\tEUR\t30\n" for i in range(n)),
        "KS_ORDER_LINES": "order_id\tline_no\tsku\tquantity\tunit_price\n"
        + "".join(f"BO-{i}\t{line}\tBS-{line}\t1\t15\n" for i in range(n) for line in (1, 2)),
    }
    paths = []
    for seq, (api, text) in enumerate(files.items(), start=1):
        path = folder / f"ERP_{seq:07d}_{INTEGRATION}_{api}.NET"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))

    results = {"orders": n, "workers": args.workers, "database": django.db.connection.vendor}
    started = time.perf_counter()
    call_command("impex_import", *paths, "--connection", CODE, stdout=open(os.devnull, "w"))
    took = time.perf_counter() - started
    assert Order.objects.filter(order_id__startswith="BO-", state="confirmed").count() == n
    results["import_and_confirm_s"] = round(took, 2)
    results["import_and_confirm_orders_per_s"] = round(n / took)

    started = time.perf_counter()
    if args.feed_only:
        pass
    elif args.workers == 1:
        call_command("orders_export", stdout=open(os.devnull, "w"))
    else:
        env = {**os.environ, "IMPEX_ROOT": root}
        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "orders_export"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
            )
            for _ in range(args.workers)
        ]
        assert all(p.wait() == 0 for p in procs)
    took = time.perf_counter() - started
    if not args.feed_only:
        assert Order.objects.filter(order_id__startswith="BO-", state="exported").count() == n
        assert len(receiver.received) == n
        results["export_pass_s"] = round(took, 2)
        results["export_orders_per_s"] = round(n / took)

    at = datetime(2026, 11, 2, tzinfo=UTC)
    events = [
        {"event_id": f"BE-{i}", "shipment_id": f"BSH-{i}", "order_id": f"BO-{i}", "shipped_at": at} for i in range(n)
    ]
    started = time.perf_counter()
    feed_events_receive(connection=conn, events=events)
    stored = time.perf_counter() - started
    floor = feed_floor(n, at)
    rss_before = current_rss_mb()
    started = time.perf_counter()
    with CaptureQueriesContext(django.db.connection) as queries:
        applied = orders_feed_pass(by="bench")
    took = time.perf_counter() - started
    assert [r.status for r in applied] == ["applied"] * n
    assert Order.objects.filter(order_id__startswith="BO-", state="completed").count() == n
    results["feed_store_events_per_s"] = round(n / stored)
    results["feed_pass_s"] = round(took, 2)
    results["feed_events_per_s"] = round(n / took)
    results["feed_queries_per_event"] = round(len(queries) / n, 3)
    results["feed_floor_s"] = round(floor, 3)
    results["feed_floor_events_per_s"] = round(n / floor)
    results["feed_floor_ratio"] = round(took / floor, 1)
    results["feed_rss_growth_mb"] = round(current_rss_mb() - rss_before, 1)
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    server.shutdown()
    print(json.dumps(results))


def feed_floor(n: int, at) -> float:
    """Write what the feed pass writes for the n bench events, set-based and without the state machine; roll it back;
    return the seconds it took (the floor of the pass)."""
    from django.db import connection, transaction
    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from orders.models import FeedEvent, Order, OrderEvent, OrderLine, Shipment

    with transaction.atomic():
        started = time.perf_counter()
        now = timezone.now()
        orders = list(Order.objects.filter(order_id__startswith="BO-").values_list("pk", "order_id", "connection_id"))
        Shipment.objects.bulk_create(
            Shipment(shipment_id=f"BSH-{ref[3:]}", order_id=pk, connection_id=c, shipped_at=at) for pk, ref, c in orders
        )
        ids = [pk for pk, _, _ in orders]
        OrderLine.objects.filter(order_id__in=ids).update(
            shipped_at=at,
            updated_at=now,
            shipment=Subquery(Shipment.objects.filter(order=OuterRef("order")).values("pk")[:1]),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Order._meta.db_table} SET state = 'completed', state_changed_at = %s, updated_at = %s, "
                "shipped_lines = '1;2' WHERE order_id LIKE 'BO-%%'",
                [now, now],
            )
        OrderEvent.objects.bulk_create(
            OrderEvent(order_id=pk, at=now, kind=kind, transition=t, by="bench", message=m)
            for pk in ids
            for kind, t, m in (
                ("shipment", "", "shipment"),
                ("transition", "ship", "s"),
                ("transition", "complete", "c"),
            )
        )
        FeedEvent.objects.filter(order_ref__startswith="BO-").update(
            status="applied", message="shipment", applied_at=now
        )
        took = time.perf_counter() - started
        transaction.set_rollback(True)
    return took


def current_rss_mb() -> float:
    """Return this process's resident memory now (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
