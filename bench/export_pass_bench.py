"""Benchmark the order export pass against its floor: a file exporter, then a webhook exporter (loopback receiver).

Usage: python bench/export_pass_bench.py [--orders 2000]
Runs against the DATABASE_URL database (SQLite file by default) with a throwaway IMPEX_ROOT; it removes the orders
and exporters of an earlier run first. For each exporter kind: N confirmed orders (2 lines each) and one
`orders_export_pass` (one worker); then, in the same run, the floor: for each order one query (the order and its
lines), and one file written (or one signed POST to the same receiver). Prints orders/s, the floor, their ratio,
statements per order, and the peak RSS of this process.
"""

import argparse
import cProfile
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("IMPEX_ALLOWED_HOSTS_OUTBOUND", "127.0.0.1")

from export_bench import peak_rss_mb  # noqa: E402  (this folder is on the path when run as a script)

CODE = "bench-export"
INTEGRATION = "BENCHEXP"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="print where each pass spends its time (cProfile)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="export-pass-bench-")
    os.environ["IMPEX_ROOT"] = root
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from impex.models import Connection, ImportedFileName
    from impex.services.signed_post import json_body, signed_post
    from orders.chain import orders_export_pass
    from orders.models import Exporter, Order
    from orders.services import exporter_save
    from orders.tests.receiver import start_receiver
    from syncapp.models import Customer, Product

    call_command("migrate", verbosity=0)
    receiver, server = start_receiver()
    n = args.orders
    results = {"orders": n, "database": connection.vendor}

    def fresh(prefix: str) -> list[int]:
        """Import n new confirmed orders (2 lines each) with the exporters of this phase set; return their keys."""
        Order.objects.filter(order_id__startswith="BX").delete()
        Customer.objects.filter(customer_id="BXC-1").delete()
        Product.objects.filter(product_id="BXP-1").delete()
        conn = Connection.objects.filter(code=CODE).first()
        if conn is not None:
            ImportedFileName.objects.filter(connection=conn).delete()
            conn.delete()
        Connection.objects.create(code=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False)
        folder = Path(root) / prefix
        folder.mkdir()
        files = {
            "KS_CUSTOMERS": "customer_id\temail\nBXC-1\tbx@example.com\n",
            "KS_PRODUCTS": "product_id\ttitle\tvariant_id\tsku\nBXP-1\tB\tBXV-1\tBXS-1\nBXP-1\tB\tBXV-2\tBXS-2\n",
            "KS_ORDERS": "order_id\tcustomer_id\torder_date\tcurrency\ttotal\n"
            + "".join(f"BX{prefix}-{i}\tBXC-1\t2026-11-01T10:00:00Z\tEUR\t30\n" for i in range(n)),
            "KS_ORDER_LINES": "order_id\tline_no\tsku\tquantity\tunit_price\n"
            + "".join(f"BX{prefix}-{i}\t{line}\tBXS-{line}\t1\t15\n" for i in range(n) for line in (1, 2)),
        }
        paths = []
        for seq, (api, text) in enumerate(files.items(), start=1):
            path = folder / f"ERP_{seq:07d}_{INTEGRATION}_{api}.NET"
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        call_command("impex_import", *paths, "--connection", CODE, stdout=open(os.devnull, "w"))
        ids = list(
            Order.objects.filter(order_id__startswith=f"BX{prefix}-", state="confirmed").values_list("pk", flat=True)
        )
        assert len(ids) == n, len(ids)
        return ids

    def measure(kind: str) -> None:
        profile = cProfile.Profile() if args.profile else None
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            if profile:
                profile.enable()
            orders_export_pass(by="bench")
            took = time.perf_counter() - started
        if profile:
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        assert Order.objects.filter(order_id__startswith="BX", state="exported").count() == n
        results[f"{kind}_orders_per_s"] = round(n / took)
        results[f"{kind}_statements_per_order"] = round(len(queries) / n, 2)

    def floor(kind: str, ids: list[int]) -> None:
        out = Path(root) / f"floor-{kind}"
        out.mkdir()
        started = time.perf_counter()
        for pk in ids:
            order = Order.objects.prefetch_related("lines").get(pk=pk)
            text = f"{order.order_id}\t{order.total}\n" + "".join(
                f"{x.line_no}\t{x.quantity}\n" for x in order.lines.all()
            )
            if kind == "file":
                (out / f"{order.order_id}.csv").write_text(text)
            else:
                signed_post(
                    url=receiver.url,
                    body=json_body({"order": text}),
                    secret="k",
                    event_id=str(pk),
                    timeout=10,
                    user_agent="bench",
                )
        took = time.perf_counter() - started
        results[f"{kind}_floor_orders_per_s"] = round(n / took)
        results[f"{kind}_ratio"] = round(results[f"{kind}_floor_orders_per_s"] / results[f"{kind}_orders_per_s"], 1)

    Exporter.objects.filter(code__startswith="bench-").delete()
    exporter_save(code="bench-file", values={"flag": "bench-file", "kind": "file"})
    ids = fresh("F")
    measure("file")
    floor("file", ids)

    Exporter.objects.filter(code__startswith="bench-").delete()
    exporter_save(
        code="bench-hook", values={"flag": "bench-hook", "kind": "webhook", "url": receiver.url, "secret": "k"}
    )
    ids = fresh("W")
    measure("webhook")
    floor("webhook", ids)
    assert len(receiver.received) == 2 * n

    Exporter.objects.filter(code__startswith="bench-").delete()
    Order.objects.filter(order_id__startswith="BX").delete()
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    server.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
