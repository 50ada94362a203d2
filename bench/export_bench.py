"""Benchmark the browser download of an export: rows/s and peak RSS of export_download over many customers.

Usage: python bench/export_bench.py [--rows 200000] [--format tsv|csv|xml] [--keep]
Runs against the DATABASE_URL database (SQLite file by default). The customers it writes carry ids starting
with BENCHX- and are removed first (and at the end, unless --keep). Each phase runs in its own process so that
its peak RSS is its own: "stream" reads the download piece by piece as a StreamingHttpResponse sends it;
"whole" joins the same pieces into one file in memory, to show what streaming spares.
"""

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

PREFIX = "BENCHX-"
BATCH = 5000


def peak_rss_mb() -> float:
    """Return this process's peak resident memory (VmHWM: its own, not inherited across fork and exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _django():
    import django

    django.setup()


def _remove(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM syncapp_customer WHERE customer_id LIKE '{PREFIX}%%'")


def phase_prepare(rows: int) -> dict:
    """Migrate, remove earlier bench customers and create `rows` new ones (some with formulas in text cells)."""
    _django()
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection

    from syncapp.models import Customer

    call_command("migrate", verbosity=0)
    _remove(connection)
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        Customer.objects.bulk_create(
            Customer(
                customer_id=f"{PREFIX}{n:08d}",
                email=f"customer{n}@example.com",
                first_name=f"=First{n % 997}" if n % 100 == 0 else f"First{n % 997}",
                last_name=f"Last{n % 1009}",
                company_name=f"Company {n % 113}, Ltd." if n % 3 == 0 else "",
                group=("retail", "trade", "vip")[n % 3],
                accounting_id=f"ACC{n:09d}",
                price_list=("RETAIL", "TRADE")[n % 2],
                discount_percentage=Decimal(n % 3000) / 100 - 5,
                payment_on_account=bool(n % 2),
            )
            for n in range(start, min(start + BATCH, rows))
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE syncapp_customer")
    return {"vendor": connection.vendor, "created": rows, "seconds": round(time.perf_counter() - started, 1)}


def phase_export(fmt: str, whole: bool) -> dict:
    """Download the bench customers with KS_CUSTOMERS as the admin does; keep the file whole in memory if asked."""
    _django()
    from django.db import connection

    from impex.models import DataDescriptor
    from impex.services.exports import export_download
    from syncapp.models import Customer

    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    records = Customer.objects.filter(customer_id__startswith=PREFIX)
    connection.ensure_connection()
    before = peak_rss_mb()
    started = time.perf_counter()
    pieces = export_download(descriptor=descriptor, fmt=fmt, records=records)
    if whole:
        data = b"".join(list(pieces))
        size, chunks, lines = len(data), 1, data.count(b"\n")
    else:
        size = chunks = lines = 0
        for piece in pieces:
            size += len(piece)
            chunks += 1
            lines += piece.count(b"\n")
    seconds = time.perf_counter() - started
    rows = records.count()
    return {
        "rows": rows,
        "lines": lines,
        "megabytes": round(size / 2**20, 1),
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def phase_cleanup() -> dict:
    _django()
    from django.db import connection

    _remove(connection)
    return {"removed": True}


def script_phase(script: str, *args: str, env: dict | None = None) -> dict:
    """Run a phase of a bench script (`script --phase ARGS`) in a child process and return its JSON result; the
    benches of this folder share it."""
    out = subprocess.run(
        [sys.executable, script, "--phase", *args], capture_output=True, text=True, check=False, cwd=ROOT, env=env
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"phase {args[0]} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_phase(*args: str) -> dict:
    """Run one phase in a child process and return its JSON result."""
    return script_phase(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="Customers to export.")
    parser.add_argument("--format", default="tsv", choices=["csv", "tsv", "xml"], help="Format of the download.")
    parser.add_argument("--keep", action="store_true", help="Keep the bench customers afterwards.")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = {
            "prepare": lambda: phase_prepare(int(rest[0])),
            "stream": lambda: phase_export(rest[0], whole=False),
            "whole": lambda: phase_export(rest[0], whole=True),
            "cleanup": lambda: phase_cleanup(),
        }[name]()
        print(json.dumps(result))
        return

    prepared = run_phase("prepare", str(args.rows))
    print(f"{prepared['vendor']}: {prepared['created']} customers created in {prepared['seconds']} s")
    for phase in ("stream", "whole"):
        r = run_phase(phase, args.format)
        print(
            f"{phase:>6}: {r['rows']} rows ({r['lines']} lines, {r['megabytes']} MB {args.format}, {r['chunks']} "
            f"pieces) in {r['seconds']} s = {r['rows_per_second']} rows/s; peak RSS {r['peak_rss_mb']} MB "
            f"({r['rss_before_mb']} MB before the export)"
        )
    if not args.keep:
        run_phase("cleanup")


if __name__ == "__main__":
    main()
