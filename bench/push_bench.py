"""Benchmark a pushed file end to end: POST /api/files/ of a 3-row customers file until GET /api/jobs/{id}/ says the
job has ended, with a real web server and the django-q2 cluster doing the work (SPEC 10; goal: under 3 s).

Usage: python bench/push_bench.py [--pushes 20] [--every 0.1] [--url http://HOST:PORT] [--token TOKEN] [--no-cluster]
Runs against the DATABASE_URL database (SQLite file by default) with a throwaway IMPEX_ROOT (unless set). A child
process prepares (unless --token is given): migrate, remove an earlier run's connection (its jobs, files and ledger
go with it) and customers, a Kore connection with an API token. Then this starts `manage.py runserver --noreload` on
a free port (or uses --url: a server already running on the same database and IMPEX_ROOT, e.g. gunicorn; give it a
high IMPEX_API_RATE) and `manage.py qcluster` (not with --no-cluster: one running on that database does the work),
waits for the cluster to have taken its start-up tasks, and pushes the files one after another: each push is
followed by a GET of its job every --every seconds until the job has ended. For each push it measures the answer
of the POST, the time until the GET saw the job ended, and from the job's own times: how long the job waited in the
queue (queued_at to started_at, the cluster's pick-up) and how long it ran (started_at to finished_at). Prints the
median and max of each, and the cluster's Q_CLUSTER poll (the ORM broker looks for new tasks that often when idle).
IMPEX_API_RATE is raised for the server it starts, so that polling does not hit the per-token rate.
"""

import argparse
import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from export_bench import script_phase  # noqa: E402  (this folder is on the path when run as a script)
from updates_load_bench import free_port, start, stop, wait_for_cluster, wait_for_server  # noqa: E402

CODE = "bench-push"
INTEGRATION = "BENCHPSH"
FINAL = {"completed", "failed", "errored", "cancelled"}


def phase_prepare() -> dict:
    """Migrate, remove an earlier run's connection and customers, make the connection and its token."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from impex.models import Connection, ImportJob
    from impex.services.tokens import api_token_issue
    from syncapp.models import Customer

    call_command("migrate", verbosity=0)
    Customer.objects.filter(customer_id__startswith="BP-").delete()
    old = Connection.objects.filter(code=CODE).first()
    if old is not None:
        ImportJob.objects.filter(connection=old).delete()
        old.delete()
    conn = Connection.objects.create(code=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False)
    return {"vendor": connection.vendor, "token": api_token_issue(connection=conn, by="bench")}


def customers_file(n: int) -> tuple[str, bytes]:
    """The n-th pushed file: three customers, under the n-th sequence."""
    rows = "".join(f"BP-{n}-{i}\tbp{n}.{i}@example.com\tPush {n}\n" for i in range(3))
    return f"ERP_{n:07d}_{INTEGRATION}_KS_CUSTOMERS.NET", ("customer_id\temail\tfirst_name\n" + rows).encode()


class Client:
    """One keep-alive HTTP connection to the server, with the token."""

    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        self.conn.request(method, path, body, {**self.auth, **(headers or {})})
        answer = self.conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")

    def push(self, name: str, content: bytes) -> tuple[int, dict]:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.call("POST", "/api/files/", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s, max {max(values):.3f} s"


def wait_until_idle(timeout: float = 30) -> None:
    """Wait until the cluster has taken the tasks it queued at its start (overdue schedules), at most timeout s."""
    from django_q.models import OrmQ

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and OrmQ.objects.exists():
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=20, help="Files to push, one after another.")
    parser.add_argument("--every", type=float, default=0.1, help="Seconds between two GETs of a job.")
    parser.add_argument("--url", help="A web server already running on this database (default: start runserver).")
    parser.add_argument(
        "--token", help="A token of a Kore connection of integration id BENCHPSH (default: make the connection)."
    )
    parser.add_argument("--no-cluster", action="store_true", help="Do not start a cluster: one is running already.")
    parser.add_argument("--timeout", type=float, default=120, help="Seconds to wait for one job.")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps({"prepare": phase_prepare}[args.phase[0]]()))
        return
    root = Path(tempfile.mkdtemp(prefix="push-bench-"))
    os.environ.setdefault("IMPEX_ROOT", str(root))
    os.environ["IMPEX_API_RATE"] = "100000/min"  # the GETs of the polling are not what is measured
    token = args.token or script_phase(__file__, "prepare")["token"]
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from impex.models import ImportJob

    procs = []
    try:
        url = args.url
        if not url:
            port = free_port()
            log = root / "runserver.log"
            procs.append(start(["runserver", f"127.0.0.1:{port}", "--noreload"], log))
            wait_for_server(port, procs[-1], log)
            url = f"http://127.0.0.1:{port}"
        if not args.no_cluster:
            log = root / "qcluster.log"
            procs.append(start(["qcluster"], log))
            wait_for_cluster(procs[-1], log)
            wait_until_idle()
        client = Client(url, token)
        answered, ended, waited, ran, statuses = [], [], [], [], {}
        for n in range(1, args.pushes + 1):
            name, content = customers_file(n)
            began = time.monotonic()
            status, body = client.push(name, content)
            answered.append(time.monotonic() - began)
            if status != 202:
                raise SystemExit(f"push {n}: {status} {body}")
            job_id = body["job"]
            deadline = began + args.timeout
            while True:
                status, job = client.call("GET", f"/api/jobs/{job_id}/")
                if status == 200 and job["status"] in FINAL:
                    ended.append(time.monotonic() - began)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job #{job_id} has not ended in {args.timeout} s: {status} {job}")
                time.sleep(args.every)
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
            row = ImportJob.objects.get(pk=job_id)
            waited.append((row.started_at - row.queued_at).total_seconds())
            ran.append((row.finished_at - row.started_at).total_seconds())
    finally:
        stopped = [stop(p) for p in procs]
    print(
        json.dumps(
            {
                "database": connection.vendor,
                "pushes": args.pushes,
                "statuses": statuses,
                "poll_every_s": args.every,
                "q_cluster_poll_s": settings.Q_CLUSTER.get("poll", 0.2),
                "q_workers": settings.Q_CLUSTER.get("workers"),
                "push_answer_s": [round(x, 3) for x in answered],
                "until_ended_s": [round(x, 3) for x in ended],
                "queue_wait_s": [round(x, 3) for x in waited],
                "run_s": [round(x, 3) for x in ran],
                "stopped": stopped,
                "logs": str(root),
            }
        )
    )
    print(f"{connection.vendor}: {args.pushes} pushes of a 3-row customers file, each polled every {args.every} s")
    print(f"  POST /api/files/ answered:         {summary(answered)}")
    print(f"  push until GET says it has ended:  {summary(ended)}   (goal: under 3 s)")
    poll = settings.Q_CLUSTER.get("poll", 0.2)
    print(f"  in the queue (queued -> started):  {summary(waited)}   (Q_CLUSTER poll {poll} s)")
    print(f"  running (started -> finished):     {summary(ran)}")


if __name__ == "__main__":
    main()
