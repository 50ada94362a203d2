"""Benchmark the inbox scan: how fast a scan takes many files, or one big file, from an inbox into a job.

Usage: python bench/scan_bench.py [--files 2000] [--big-rows 1000000] [--import]
Runs against the DATABASE_URL database (SQLite file by default) with a throwaway IMPEX_ROOT. Two phases, each in
its own process so that its peak RSS is its own: "many" drops --files small Kore customer files into a local
inbox and times one scan taking them (listing, looking, claiming, copying into the job, removing the originals);
"big" drops one file of --big-rows rows and times the scan taking it (on one local disk the copy is a hard link,
so the time is that of reading it once for its checksum). With --import, each phase also imports the job and
reports rows/s of the whole pass, as impex_scan does it.
"""

import argparse
import json
import os
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

from export_bench import peak_rss_mb  # noqa: E402  (this folder is on the path when run as a script)

CODE = "bench-scan"
INTEGRATION = "BENCHSCAN"


def _setup(root: str):
    os.environ["IMPEX_ROOT"] = root
    os.environ["IMPEX_INBOX_QUIET_SECONDS"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    from impex.models import Connection, ImportedFileName

    call_command("migrate", verbosity=0)
    conn = Connection.objects.filter(code=CODE).first()
    if conn is not None:  # a clean ledger: earlier runs' names would be duplicates
        ImportedFileName.objects.filter(connection=conn).delete()
        conn.delete()
    return Connection.objects.create(
        code=CODE, name=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False
    )


def _write(path: Path, first: int, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write("customer_id\temail\tfirst_name\n")
        for n in range(first, first + rows):
            out.write(f"BS-{n}\tbs{n}@example.com\tName{n}\n")
    past = time.time() - 60
    os.utime(path, (past, past))


def phase(kind: str, count: int, rows: int, do_import: bool) -> dict:
    root = tempfile.mkdtemp(prefix="scan-bench-")
    try:
        conn = _setup(root)
        from impex.services.inbox import inbox_scan

        inbox = Path(root) / CODE / "inbox"
        inbox.mkdir(parents=True)
        names = count if kind == "many" else 1
        per_file = rows if kind == "big" else 5
        for n in range(names):
            _write(inbox / f"ERP_{n + 1:07d}_{INTEGRATION}_KS_CUSTOMERS.NET", n * per_file, per_file)
        size = sum(p.stat().st_size for p in inbox.iterdir())
        started = time.perf_counter()
        result = inbox_scan(connection=conn, run_here=False)
        took = time.perf_counter() - started
        report = {
            "phase": kind,
            "files": len(result.taken),
            "bytes": size,
            "scan_seconds": round(took, 2),
            "files_per_second": round(len(result.taken) / took, 1) if took else None,
            "mb_per_second": round(size / 1e6 / took, 1) if took else None,
            "left_in_inbox": len(list(inbox.iterdir())),
        }
        if do_import and result.job is not None:
            from impex.runner import run_job

            started = time.perf_counter()
            job = run_job(result.job.pk)
            took_import = time.perf_counter() - started
            report.update(
                {
                    "job_status": job.status,
                    "import_seconds": round(took_import, 2),
                    "rows_per_second": round(names * per_file / took_import) if took_import else None,
                }
            )
        report["peak_rss_mb"] = round(peak_rss_mb(), 1)
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="small files for the 'many' phase")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the 'big' phase's file")
    parser.add_argument("--import", dest="do_import", action="store_true", help="also import each job")
    parser.add_argument("--phase", choices=["many", "big"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.files, args.big_rows, args.do_import)))
        return
    for kind in ("many", "big"):
        cmd = [sys.executable, __file__, "--phase", kind, "--files", str(args.files), "--big-rows", str(args.big_rows)]
        if args.do_import:
            cmd.append("--import")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
