"""Benchmark how soon a file dropped in an inbox scanned every few seconds is imported, with a real cluster.

Usage: python bench/latency_bench.py [--mode local|local-poll|s3] [--drops 10] [--seconds 5] [--quiet 2]
Issue 21: "within 10 s for a local inbox scanned every 5 s". Runs against the DATABASE_URL database (SQLite file by
default) with a throwaway IMPEX_ROOT. It makes a Kore connection scanned every --seconds (the scan loop's schedule
comes with it), starts the django-q2 cluster (manage.py qcluster) and waits until the scan loop runs. Then it drops
--drops files of 3 customer rows into the inbox, one at a time, each after the previous one's job completed and a
random pause (so that drops land at every point of the loop's tick), and measures from the moment before the file
is written to the moment its job is recorded completed (the job's finished_at). Modes: local (the loop's file-system
watch on), local-poll (IMPEX_SCAN_WATCH=0: polling only), s3 (the inbox in a bucket of moto's S3 server on
loopback; polling). The scan's quiet rule holds: a file is taken once it has not changed for --quiet seconds
(IMPEX_INBOX_QUIET_SECONDS, 2 by default as in production). Prints each latency, the median and the maximum; the
cluster's log is kept in the IMPEX_ROOT folder.
"""

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the cluster (which checks
# the signature of the tasks this process queues).
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from updates_load_bench import free_port, start, stop, wait_for_cluster  # noqa: E402  (this folder is on the path)

CODE = "bench-latency"
INTEGRATION = "BENCHLAT"
BUCKET = "bench-latency"
DEADLINE = 120.0


def _file(n: int) -> tuple[str, bytes]:
    rows = "".join(f"LT-{n}-{r}\tlt{n}.{r}@example.com\tName{r}\n" for r in range(3))
    return f"ERP_{n:07d}_{INTEGRATION}_KS_CUSTOMERS.NET", f"customer_id\temail\tfirst_name\n{rows}".encode()


def _prepare(*, seconds: int, inbox: str):
    from django.core.management import call_command

    from impex.models import Connection, ImportedFileName, ScanLoop
    from impex.services.connections import connection_save

    call_command("migrate", verbosity=0)
    # The loop of an earlier run's cluster (stopped by a kill) may still hold a lease: wait for this run's own.
    ScanLoop.objects.all().delete()
    old = Connection.objects.filter(code=CODE).first()
    if old is not None:  # a clean ledger: an earlier run's names would be duplicates
        ImportedFileName.objects.filter(connection=old).delete()
        old.delete()
    conn, _ = connection_save(
        code=CODE, convention="kore", integration_id=INTEGRATION, inbox=inbox, scan_seconds=seconds
    )
    Connection.objects.filter(pk=conn.pk).update(next_expected_sequence=1)
    return conn


def _s3_server(log: Path) -> tuple[subprocess.Popen, object]:
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return proc, client
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"gave up after {DEADLINE:g} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["local", "local-poll", "s3"], default="local")
    parser.add_argument("--drops", type=int, default=10, help="Files dropped, one after the other.")
    parser.add_argument("--seconds", type=int, default=5, help="The connection's scan_seconds (5 to 59).")
    parser.add_argument("--quiet", type=float, default=2.0, help="IMPEX_INBOX_QUIET_SECONDS.")
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    os.environ.update(
        IMPEX_ROOT=str(root),
        IMPEX_INBOX_QUIET_SECONDS=str(args.quiet),
        IMPEX_SCAN_WATCH="0" if args.mode != "local" else "1",
    )
    moto = client = None
    inbox = ""
    if args.mode == "s3":
        moto, client = _s3_server(root / "moto.log")
        os.environ.update(
            AWS_S3_ENDPOINT_URL=client.meta.endpoint_url,
            AWS_S3_REGION_NAME="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        inbox = f"s3://{BUCKET}/inbox"
    import django

    django.setup()
    from impex.models import ImportJob
    from impex.services.scan_loop import scan_loop_running

    conn = _prepare(seconds=args.seconds, inbox=inbox)
    local_inbox = root / CODE / "inbox"
    local_inbox.mkdir(parents=True, exist_ok=True)
    log = root / "qcluster.log"
    cluster = start(["qcluster"], log)
    latencies = []
    try:
        wait_for_cluster(cluster, log)
        started = time.monotonic()
        _wait(scan_loop_running, "the scan loop (its schedule fires at the scheduler's first look)")
        print(f"mode {args.mode}: the scan loop runs {time.monotonic() - started:.1f} s after the cluster started")
        rnd = random.Random(args.seed)
        for n in range(1, args.drops + 1):
            time.sleep(rnd.uniform(0, args.seconds))
            name, body = _file(n)
            dropped = datetime.now(UTC)
            if client is not None:
                client.put_object(Bucket=BUCKET, Key=f"inbox/{name}", Body=body)
            else:
                (local_inbox / name).write_bytes(body)

            def done(name=name):
                return (
                    ImportJob.objects.filter(connection=conn, files__name=name, status="completed")
                    .values_list("finished_at", flat=True)
                    .first()
                )

            finished = _wait(done, f"the job of {name}")
            latencies.append((finished - dropped).total_seconds())
            print(f"  drop {n}: {latencies[-1]:.2f} s")
    finally:
        outcome = stop(cluster)
        if moto is not None:
            stop(moto)
    report = {
        "mode": args.mode,
        "scan_seconds": args.seconds,
        "quiet_seconds": args.quiet,
        "drops": len(latencies),
        "median_s": round(statistics.median(latencies), 2),
        "max_s": round(max(latencies), 2),
        "min_s": round(min(latencies), 2),
        "cluster": outcome,
        "logs": str(root),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
