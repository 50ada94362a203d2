"""Benchmark a job's per-file overhead: a zip of many tiny KS_CUSTOMERS files, ms and SQL statements per file.

Usage: python bench/zip_bench.py [--files 500] [--rows 3] [--statements] [--profile N] [--command]
Builds a zip of --files Kore files (sequences 1, 2, 3...: they go in in that order) of 1 to --rows customers
each, imports it as `impex_import ZIP --connection bench-zip` does (job_create, then run_job) and reports the
time and the SQL statements per file (counted in the process with connection.execute_wrapper). On PostgreSQL
it reports in the same run the floor: psql running one transaction per file, each inserting that file's
customers (INSERT ... ON CONFLICT DO UPDATE into a copy of the customer table), through a pipe to one session.
--statements prints the statements of the job grouped by their text, with how many each file runs and the ms
per file spent inside them (the round trip and the database's work);
--profile N prints cProfile's N most expensive functions of the import (BENCH_SORT=cumulative sorts them otherwise,
BENCH_FILTER=regex keeps the matching ones, BENCH_PROFILE_OUT=path also saves the profile for pstats).
Runs against the DATABASE_URL database (SQLite file by default); records it writes carry customer ids
starting with BZIP- and are removed first. Each phase runs in its own process.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

CONNECTION = "bench-zip"
INTEGRATION = "BENCHZ"
PREFIX = "BZIP-"
COLUMNS = ("customer_id", "email", "first_name", "last_name")


from export_bench import script_phase  # noqa: E402  (this folder is on the path when run as a script)


def file_rows(number: int, rows: int) -> list[tuple[str, str, str, str]]:
    """Return the customers of file number: 1 to rows of them, some new, some seen in an earlier file."""
    count = 1 + number % rows
    out = []
    for n in range(count):
        ident = number + n  # the second customer of a file is the first of the next: an update
        out.append((f"{PREFIX}{ident:08d}", f"c{ident}.{number}@example.com", f"First{ident}", f"Last{number}"))
    return out


def make_zip(path: Path, *, files: int, rows: int) -> None:
    """Write a zip of files tiny KS_CUSTOMERS files with contiguous sequences from 1."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number in range(1, files + 1):
            lines = ["\t".join(COLUMNS)] + ["\t".join(r) for r in file_rows(number, rows)]
            archive.writestr(f"BZ_{number:07d}_{INTEGRATION}_KS_CUSTOMERS.NET", "\n".join(lines) + "\n")


def _django():
    import django

    django.setup()


def phase_prepare() -> dict:
    """Migrate, create the bench connection and remove what earlier runs left."""
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
        cursor.execute(f"UPDATE syncapp_customer SET parent_id = NULL WHERE customer_id LIKE '{PREFIX}%%'")
        cursor.execute(f"DELETE FROM syncapp_customer WHERE customer_id LIKE '{PREFIX}%%'")
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE syncapp_customer")
    return {"vendor": connection.vendor}


def _normalise(sql: str) -> str:
    """Group statements that differ only in their numbers, names of temporary tables and parameter lists."""
    sql = re.sub(r"impex_(stage|keys)_\d+", r"impex_\1_N", sql)
    sql = re.sub(r"\b\d+\b", "N", sql)
    sql = re.sub(r"IN \((?:%s, )*%s\)", "IN (...)", sql)
    return sql[:160]


def phase_import(path: str, files: str, statements: str, profile: str) -> dict:
    """Import the zip as impex_import does, counting the SQL statements it runs."""
    _django()
    from django.db import connection

    from impex.models import Connection
    from impex.runner import run_job
    from impex.services.jobs import job_create
    from impex.services.sql import statement_shapes

    conn = Connection.objects.get(code=CONNECTION)
    seen: list[str] = []
    spent: Counter = Counter()  # seconds inside each statement's execute, by its text

    waited = [0.0]

    def count(execute, sql, params, many, context):
        seen.append(sql)
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - began
            waited[0] += took
            spent[sql] += took

    profiler = None
    if int(profile):
        import cProfile

        profiler = cProfile.Profile()
    start = time.perf_counter()
    cpu = time.process_time()
    with connection.execute_wrapper(count):
        if profiler is not None:
            profiler.enable()
        job = job_create(paths=[path], connection=conn)
        job = run_job(job.pk)
        if profiler is not None:
            profiler.disable()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    times = os.times()
    by_status = Counter(job.files.filter(kind="data").values_list("status", flat=True))
    result = {
        "seconds": seconds,
        "cpu": cpu,
        "system_share": times.system / max(times.user + times.system, 1e-9),
        "statements": len(seen),
        "in_statements": waited[0],
        "job": job.status,
        "error": job.error,
        "built_each_time": [str(key) for key, sql in statement_shapes().items() if sql is False],
        "files": dict(by_status),
    }
    if int(statements):
        n = int(files)
        grouped = Counter(_normalise(s) for s in seen)
        took: Counter = Counter()
        for sql, seconds in spent.items():
            took[_normalise(sql)] += seconds
        result["grouped"] = [(c / n, took[s] * 1000 / n, s) for s, c in grouped.most_common()]
    if profiler is not None:
        import io
        import pstats

        if os.environ.get("BENCH_PROFILE_OUT"):
            profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "tottime"))
        stats.print_stats(os.environ.get("BENCH_FILTER", ""), int(profile))
        result["profile"] = out.getvalue()
    return result


def phase_floor(files: str, rows: str) -> dict:
    """psql, one session, one transaction per file inserting its customers into a copy of the customer table."""
    _django()
    from django.db import connection

    if connection.vendor != "postgresql":
        return {"skipped": "the psql floor needs PostgreSQL"}
    db = connection.settings_dict
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_zip_floor")
        cursor.execute("CREATE TABLE bench_zip_floor (LIKE syncapp_customer INCLUDING ALL)")
    script = []
    for number in range(1, int(files) + 1):
        values = ", ".join(
            f"('{c}', '{e}', '{f}', '{la}', '', '', '', '', 0, false, true, now(), now())"
            for c, e, f, la in file_rows(number, int(rows))
        )
        script.append(
            "BEGIN;\n"
            'INSERT INTO bench_zip_floor AS t (customer_id, email, first_name, last_name, company_name, "group", '
            "accounting_id, price_list, discount_percentage, payment_on_account, active, created_at, updated_at) "
            f"VALUES {values} ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, "
            "first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, updated_at = now() "
            "WHERE (t.email, t.first_name, t.last_name) IS DISTINCT FROM "
            "(EXCLUDED.email, EXCLUDED.first_name, EXCLUDED.last_name);\n"
            "COMMIT;\n"
        )
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    command = [
        "psql",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        db["HOST"] or "localhost",
        "-p",
        str(db["PORT"] or 5432),
        "-U",
        db["USER"] or "postgres",
        "-d",
        db["NAME"],
    ]
    start = time.perf_counter()
    subprocess.run(command, input="".join(script), text=True, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_zip_floor")
        stored = cursor.fetchone()[0]
        cursor.execute("DROP TABLE IF EXISTS bench_zip_floor")
    return {"seconds": seconds, "rows": stored}


def run_phase(*args: str, env: dict | None = None) -> dict:
    """Run one phase in a child process and return its JSON result."""
    return script_phase(__file__, *args, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500, help="Files in the zip.")
    parser.add_argument("--rows", type=int, default=3, help="Most customers in a file (each has 1 to this many).")
    parser.add_argument("--statements", action="store_true", help="Print the statements per file, grouped.")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="Print cProfile's N top functions.")
    parser.add_argument("--keep", action="store_true", help="Keep the zip and the hub's folders of the run.")
    parser.add_argument(
        "--command",
        action="store_true",
        help="Then import the zip again (its records gone) by `manage.py impex_import`, start-up included.",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = {
            "prepare": lambda: phase_prepare(),
            "import": lambda: phase_import(*rest),
            "floor": lambda: phase_floor(*rest),
        }[name]()
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="impex-zip-bench-"))
    # The hub's folders (the job's copies, the connection's archive) go to the run's own folder.
    env = {**os.environ, "IMPEX_ROOT": str(work / "root"), "IMPEX_CACHE_DIR": str(work / "cache")}
    path = work / "bench.zip"
    make_zip(path, files=args.files, rows=args.rows)
    info = run_phase("prepare", env=env)
    print(f"database: {info['vendor']}; zip: {args.files} files of 1-{args.rows} customers ({work})")
    r = run_phase("import", str(path), str(args.files), str(int(args.statements)), str(args.profile), env=env)
    per_file = 1000 * r["seconds"] / args.files
    print(
        f"impex_import of the zip  {r['seconds']:7.2f} s  {per_file:7.2f} ms/file  "
        f"{r['statements'] / args.files:6.1f} statements/file  {args.files / r['seconds']:6.0f} files/s  "
        f"(this process's CPU {1000 * r['cpu'] / args.files:.2f} ms/file ({r['system_share']:.0%} in the kernel), "
        "in statements "
        f"{1000 * r['in_statements'] / args.files:.2f} ms/file)  "
        f"[job {r['job']}, files {r['files']}]{' ERROR ' + r['error'] if r['error'] else ''}"
        + "".join(f"\n  built by the ORM each time (its parameters differ): {key}" for key in r["built_each_time"])
    )
    if args.command:
        run_phase("prepare", env=env)
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "impex_import", str(path), "--connection", CONNECTION],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - began
        outcome = "exit 0" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
        print(
            f"manage.py impex_import   {seconds:7.2f} s  {1000 * seconds / args.files:7.2f} ms/file  "
            f"(the command, start-up included; {outcome})"
        )
    floor = run_phase("floor", str(args.files), str(args.rows), env=env)
    if "skipped" in floor:
        print(f"psql floor               {floor['skipped']}")
    else:
        floor_ms = 1000 * floor["seconds"] / args.files
        print(
            f"psql floor               {floor['seconds']:7.2f} s  {floor_ms:7.2f} ms/file  "
            f"(one transaction per file, {floor['rows']} customers)"
        )
        print(f"zip / floor: {per_file / floor_ms:.1f}x (goal: <= 10 ms/file, within 5x)")
    if r.get("grouped"):
        print("per file:  runs      ms  statement")
    for share, ms, sql in r.get("grouped", []):
        print(f"        {share:6.2f} {ms:7.3f}  {sql}")
    if r.get("profile"):
        print(r["profile"])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
