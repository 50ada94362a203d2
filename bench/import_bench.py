"""Benchmark the import engine on a KS_CUSTOMERS file: rows/s and peak RSS, against a COPY floor.

Usage: python bench/import_bench.py [--rows 1000000] [--iie-rows 20000] [--keep]
       python bench/import_bench.py --workers 1,2,4 [--rows 1000000]
       python bench/import_bench.py --command [--rows 500000] [--mode FULL|NET]
Runs against the DATABASE_URL database (SQLite file by default). Records it writes carry
customer ids starting with BENCH- and are removed first. Each phase runs in its own process
so that its peak RSS is its own.
"""

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

CONNECTION = "bench-kore"
INTEGRATION = "BENCH"


from export_bench import script_phase  # noqa: E402  (this folder is on the path when run as a script)


def header() -> list[str]:
    """Return the KS_CUSTOMERS columns of the built-in descriptor."""
    from impex.builtin import column_names

    return list(column_names("KS_CUSTOMERS"))


def make_file(path: Path, *, rows: int, changed: float = 0.0, seed: int = 7) -> None:
    """Write a KS_CUSTOMERS file of `rows` customers; `changed` of them get a new e-mail."""
    rnd = random.Random(seed)
    change_every = int(1 / changed) if changed else 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("\t".join(header()) + "\n")
        for n in range(rows):
            email = f"customer{n}@example.com"
            if change_every and n % change_every == 0:
                email = f"customer{n}+new@example.com"
            parent = f"BENCH-{n - n % 50:08d}" if n % 50 and n % 7 == 0 else ""
            out.write(
                "\t".join(
                    (
                        f"BENCH-{n:08d}",
                        email,
                        f"First{n % 997}",
                        f"Last{n % 1009}",
                        f"Company {n % 113}" if n % 3 == 0 else "",
                        ("retail", "trade", "vip")[n % 3],
                        f"ACC{n:09d}",
                        ("RETAIL", "TRADE")[n % 2],
                        f"{rnd.randint(0, 30)}.{rnd.randint(0, 99):02d}",
                        ("true", "false")[n % 2],
                        parent,
                        "true",
                    )
                )
                + "\n"
            )


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


def phase_prepare() -> dict:
    """Migrate, create the bench connection and remove earlier bench records."""
    _django()
    from django.core.management import call_command
    from django.db import connection

    from impex.models import Connection, ConnectionState, ImportedFileName
    from impex.services.connections import connection_save

    call_command("migrate", verbosity=0)
    conn, _ = connection_save(code=CONNECTION, convention="kore", integration_id=INTEGRATION)
    ImportedFileName.objects.filter(connection=conn).delete()
    ConnectionState.objects.filter(connection=conn).delete()
    Connection.objects.filter(pk=conn.pk).update(next_expected_sequence=None)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE syncapp_customer SET parent_id = NULL WHERE customer_id LIKE 'BENCH-%%'")
        cursor.execute("DELETE FROM syncapp_customer WHERE customer_id LIKE 'BENCH-%%'")
        if connection.vendor == "postgresql":
            cursor.execute("DROP TABLE IF EXISTS bench_floor_customer")
            # Start every run from the same state: no dead rows left for autovacuum to chew on mid-run.
            cursor.execute("VACUUM ANALYZE syncapp_customer")
            cursor.execute("VACUUM ANALYZE impex_filekey")
    return {"vendor": connection.vendor}


def phase_import(path: str) -> dict:
    """Import a file through the same path as impex_import (job_create + run_job)."""
    _django()
    from impex.models import Connection
    from impex.runner import run_job
    from impex.services.jobs import job_create

    conn = Connection.objects.get(code=CONNECTION)
    start = time.perf_counter()
    job = job_create(paths=[path], connection=conn)
    job = run_job(job.pk)
    seconds = time.perf_counter() - start
    f = job.files.get()
    return {
        "seconds": seconds,
        "status": f.status,
        "rows": f.rows_total,
        "created": f.created,
        "updated": f.updated,
        "unchanged": f.unchanged,
        "failed": f.failed,
        "peak_rss_mb": peak_rss_mb(),
        "error": job.error,
    }


def copy_file(cursor, path: str, statement: str) -> None:
    """Send a file's bytes to PostgreSQL's COPY as they are, a megabyte at a time."""
    with open(path, "rb") as src, cursor.cursor.copy(statement) as copy:
        while data := src.read(1024 * 1024):
            copy.write(data)


def phase_floor(path: str) -> dict:
    """PostgreSQL floor: COPY the file into a staging table, then INSERT ... ON CONFLICT DO UPDATE."""
    _django()
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return {"skipped": "the COPY floor needs PostgreSQL"}
    cols = [c if c != "group" else '"group"' for c in header() if c != "parent_customer_id"]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_floor_customer")
        cursor.execute("CREATE TABLE bench_floor_customer (LIKE syncapp_customer INCLUDING ALL)")
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE floor_stage (customer_id text, email text, first_name text, last_name text, "
            'company_name text, "group" text, accounting_id text, price_list text, discount_percentage numeric, '
            "payment_on_account boolean, parent_customer_id text, active boolean) ON COMMIT DROP"
        )
        copy_file(
            cursor,
            path,
            "COPY floor_stage FROM STDIN WITH (FORMAT csv, DELIMITER E'\\t', HEADER true, "
            'FORCE_NOT_NULL (first_name, last_name, company_name, "group", accounting_id, price_list))',
        )
        names = ", ".join(cols)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        distinct = " OR ".join(f"t.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in cols[1:])
        cursor.execute(
            f"INSERT INTO bench_floor_customer AS t ({names}, created_at, updated_at) "
            f"SELECT {names}, now(), now() FROM floor_stage "
            f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = now() WHERE {distinct}"
        )
        rows = cursor.rowcount
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_floor_customer")
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def phase_iie(path: str, rows: int) -> dict:
    """django-import-export's plain import_data of the first `rows` rows with the admin's Customer resource."""
    _django()
    import tablib
    from django.db import connection

    from syncapp.resources import CustomerResource

    with open(path, encoding="utf-8") as src:
        lines = [next(src) for _ in range(rows + 1)]
    text = "".join(lines).replace("BENCH-", "BENCHIIE-")
    dataset = tablib.Dataset().load(text, format="tsv")
    start = time.perf_counter()
    result = CustomerResource().import_data(dataset, dry_run=False, raise_errors=False)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("UPDATE syncapp_customer SET parent_id = NULL WHERE customer_id LIKE 'BENCHIIE-%%'")
        cursor.execute("DELETE FROM syncapp_customer WHERE customer_id LIKE 'BENCHIIE-%%'")
    return {
        "seconds": seconds,
        "rows": rows,
        "errors": len(result.row_errors()) + len(result.invalid_rows),
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_plain_floor(path: str) -> dict:
    """PostgreSQL floor on a plain table (only the key's unique index): COPY, then INSERT ... ON CONFLICT."""
    _django()
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return {"skipped": "the COPY floor needs PostgreSQL"}
    cols = [c if c != "group" else '"group"' for c in header()]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_customer")
        cursor.execute(
            "CREATE TABLE bench_plain_customer (id bigserial PRIMARY KEY, customer_id text UNIQUE, email text, "
            'first_name text, last_name text, company_name text, "group" text, accounting_id text, price_list text, '
            "discount_percentage numeric, payment_on_account boolean, parent_customer_id text, active boolean)"
        )
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE plain_stage (customer_id text, email text, first_name text, last_name text, "
            'company_name text, "group" text, accounting_id text, price_list text, discount_percentage numeric, '
            "payment_on_account boolean, parent_customer_id text, active boolean) ON COMMIT DROP"
        )
        names = ", ".join(cols)
        copy_file(
            cursor, path, f"COPY plain_stage ({names}) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\t', HEADER true)"
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        cursor.execute(
            f"INSERT INTO bench_plain_customer ({names}) SELECT {names} FROM plain_stage "
            f"ON CONFLICT (customer_id) DO UPDATE SET {updates}"
        )
        rows = cursor.rowcount
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_customer")
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def run_command(path: Path) -> dict:
    """Time the whole impex_import command (a new process, as a user runs it) and its peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "impex_import", str(path), "--connection", CONNECTION],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    return {
        "seconds": time.perf_counter() - start,
        "exit": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def bench_command(work: Path, *, rows: int, keep: bool, mode: str) -> None:
    """The whole impex_import command on a first-import file, then on the same rows again, against COPY + ON CONFLICT
    into a plain table measured in the same run."""
    first = work / f"BENCH_0000001_{INTEGRATION}_KS_CUSTOMERS.{mode}"
    same = work / f"BENCH_0000002_{INTEGRATION}_KS_CUSTOMERS.{mode}"
    make_file(first, rows=rows)
    shutil.copyfile(first, same)
    print(f"file: {rows:,} rows ({mode}), {first.stat().st_size / 1024 / 1024:.0f} MB")
    run_phase("prepare")
    runs = {"first import": run_command(first), "unchanged re-import": run_command(same)}
    floor = run_phase("plain_floor", str(first))
    for label, run in runs.items():
        print(
            f"impex_import, {label:<20} {run['seconds']:6.1f} s {rows / run['seconds']:>10,.0f} rows/s  "
            f"peak RSS {run['peak_rss_mb']:6.0f} MB  (exit {run['exit']})"
        )
    if "skipped" in floor:
        print(f"plain-table floor                  {floor['skipped']}")
    else:
        print(f"COPY + ON CONFLICT (plain table)   {floor['seconds']:6.1f} s {rows / floor['seconds']:>10,.0f} rows/s")
        ratio = runs["first import"]["seconds"] / floor["seconds"]
        print(f"command / floor: {ratio:.2f}x (goal: <= 4x, moonshot 2x)")
    first_s, same_s = runs["first import"]["seconds"], runs["unchanged re-import"]["seconds"]
    print(f"unchanged re-import vs first import: {first_s / same_s:.2f}x as fast (goal: > 1x)")
    if not keep:
        first.unlink(missing_ok=True)
        same.unlink(missing_ok=True)
        work.rmdir()


def phase_queue(path: str) -> dict:
    """Create a queued job for the file (as impex_import --queue does, without the broker)."""
    _django()
    from impex.models import Connection
    from impex.services.jobs import job_create

    job = job_create(paths=[path], connection=Connection.objects.get(code=CONNECTION))
    return {"job": job.pk}


def phase_job_result(job_id: str) -> dict:
    """Read how a job ended."""
    _django()
    from impex.models import ImportJob

    job = ImportJob.objects.get(pk=int(job_id))
    f = job.files.get()
    workers = set(f.chunks.values_list("claimed_by", flat=True))
    return {
        "status": f.status,
        "rows": f.rows_total,
        "created": f.created,
        "updated": f.updated,
        "unchanged": f.unchanged,
        "failed": f.failed,
        "error": job.error,
        "workers": len(workers),
    }


def run_workers(path: Path, workers: int) -> dict:
    """Import one file with `workers` impex_job processes started together; return the time and peak RSS."""
    run_phase("prepare")
    job_id = run_phase("queue", str(path))["job"]
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "manage.py", "impex_job", str(job_id)], cwd=ROOT, stdout=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    peaks = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks.append(usage.ru_maxrss / 1024)
    seconds = time.perf_counter() - start
    result = run_phase("result", str(job_id))
    result.update(seconds=seconds, peak_rss_mb=max(peaks), exit_codes=[p.returncode for p in procs])
    return result


def run_phase(*args: str) -> dict:
    """Run one phase in a child process and return its JSON result."""
    return script_phase(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the KS_CUSTOMERS file.")
    parser.add_argument("--iie-rows", type=int, default=20_000, help="Rows for django-import-export's import_data.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    parser.add_argument(
        "--command",
        action="store_true",
        help="Instead: time the whole impex_import command against COPY + ON CONFLICT into a plain table.",
    )
    parser.add_argument(
        "--mode", choices=("FULL", "NET"), default="FULL", help="With --command: the file's mode (default FULL)."
    )
    parser.add_argument(
        "--workers",
        help="Instead: import one file with each number of impex_job processes given, e.g. 1,2,4.",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = {
            "prepare": lambda: phase_prepare(),
            "import": lambda: phase_import(rest[0]),
            "floor": lambda: phase_floor(rest[0]),
            "queue": lambda: phase_queue(rest[0]),
            "plain_floor": lambda: phase_plain_floor(rest[0]),
            "result": lambda: phase_job_result(rest[0]),
            "iie": lambda: phase_iie(rest[0], int(rest[1])),
        }[name]()
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="impex-bench-"))
    n = args.rows
    if args.command:
        bench_command(work, rows=n, keep=args.keep, mode=args.mode)
        return
    if args.workers:
        bench_workers(work, rows=n, counts=[int(w) for w in args.workers.split(",")], keep=args.keep)
        return
    first = work / f"BENCH_0000001_{INTEGRATION}_KS_CUSTOMERS.NET"
    same = work / f"BENCH_0000002_{INTEGRATION}_KS_CUSTOMERS.NET"
    changed = work / f"BENCH_0000003_{INTEGRATION}_KS_CUSTOMERS.NET"
    t = time.perf_counter()
    make_file(first, rows=n)
    shutil.copyfile(first, same)
    make_file(changed, rows=n, changed=0.1)
    size_mb = first.stat().st_size / 1024 / 1024
    print(f"files: {n:,} rows, {size_mb:.0f} MB each, made in {time.perf_counter() - t:.1f} s ({work})")

    info = run_phase("prepare")
    print(f"database: {info['vendor']}")
    results = {}
    for label, path in (("first import", first), ("re-import, unchanged", same), ("re-import, 10% changed", changed)):
        r = run_phase("import", str(path))
        results[label] = r
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0
        print(
            f"{label:<26} {r['seconds']:8.1f} s {rate:>10,.0f} rows/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
            f"[{r['status']}: created {r['created']:,}, updated {r['updated']:,}, unchanged {r['unchanged']:,}, "
            f"failed {r['failed']:,}]{' ERROR ' + r['error'] if r['error'] else ''}"
        )
    floor = run_phase("floor", str(first))
    if "skipped" in floor:
        print(f"{'COPY + ON CONFLICT floor':<26} {floor['skipped']}")
    else:
        rate = floor["rows"] / floor["seconds"]
        print(
            f"{'COPY + ON CONFLICT floor':<26} {floor['seconds']:8.1f} s {rate:>10,.0f} rows/s  "
            f"peak RSS {floor['peak_rss_mb']:6.0f} MB"
        )
        ratio = results["first import"]["seconds"] / floor["seconds"]
        print(f"first import / floor: {ratio:.2f}x (goal: within 3x)")
    if args.iie_rows:
        iie = run_phase("iie", str(first), str(min(args.iie_rows, n)))
        rate = iie["rows"] / iie["seconds"]
        print(
            f"{'django-import-export':<26} {iie['seconds']:8.1f} s {rate:>10,.0f} rows/s  peak RSS "
            f"{iie['peak_rss_mb']:6.0f} MB  ({iie['rows']:,} rows, {iie['errors']} errors)"
        )
    u, f_ = results["re-import, unchanged"], results["first import"]
    print(f"unchanged re-import vs first import: {f_['seconds'] / u['seconds']:.2f}x as fast (goal: >= 1x)")
    if not args.keep:
        for p in (first, same, changed):
            p.unlink(missing_ok=True)
        try:
            work.rmdir()
        except OSError:
            pass


def bench_workers(work: Path, *, rows: int, counts: list[int], keep: bool) -> None:
    """Import the same first-import file with 1, 2, 4... worker processes sharing its chunks."""
    path = work / f"BENCH_0000001_{INTEGRATION}_KS_CUSTOMERS.NET"
    make_file(path, rows=rows)
    print(f"file: {rows:,} rows, {path.stat().st_size / 1024 / 1024:.0f} MB, {os.cpu_count()} CPU cores")
    for count in counts:
        r = run_workers(path, count)
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0
        print(
            f"{count} worker{'s' if count > 1 else ' '}  {r['seconds']:8.1f} s {rate:>10,.0f} rows/s  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB per worker  [{r['status']}: created {r['created']:,}, "
            f"failed {r['failed']:,}; chunks applied by {r['workers']} worker(s); exit {r['exit_codes']}]"
        )
    if not keep:
        path.unlink(missing_ok=True)
        work.rmdir()


if __name__ == "__main__":
    main()
