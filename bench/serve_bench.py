"""Benchmark the production web server: single-record POSTs per second through gunicorn, and the admin's main pages.

Usage: DATABASE_URL=postgres://... python bench/serve_bench.py [--seconds 20] [--clients 8] [--one-token]
       [--workers N] [--threads N] [--page-runs 20]

Starts gunicorn with config/gunicorn.py (DEBUG off, the deployment's settings, DB_CONN_MAX_AGE=60, static files
collected into a temporary folder) on a free loopback port against the DATABASE_URL database (migrated here; the demo
is loaded for the admin pages to show something), then:
1. queries per POST: one POST /api/events/customers/ made in this process, its SQL statements counted (the token
   lookup, the rate count, the descriptor, the insert, the queued pass), after a warm-up;
2. POSTs/s: --clients processes each send single-record POSTs to /api/events/customers/ over one keep-alive
   connection for --seconds, each with a token of its own (--one-token: all with one token, whose row lock then
   orders them); prints POSTs/s and the latency p50/p95/p99. IMPEX_API_RATE is set to 1000000/s for the server: the
   bench measures the server, not the throttle's refusals (the rate is still counted on every request; a per-second
   window keeps each token's history short);
3. the admin's home, import jobs, connections and orders pages, logged in as a superuser, --page-runs times each:
   p50/p95 ms.
No cluster runs: the received updates stay pending, as they do while a cluster is busy (they are removed after).
The goal on a production machine: >= 500 POSTs/s from 8 clients, admin pages under 200 ms. Client processes run on
the same machine as the server and PostgreSQL here, so the figures are a floor.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ.pop("DEBUG", None)
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, shared with the server started here.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
RATE = "1000000/s"

from tests.fixtures import free_port, server_process  # noqa: E402  (the repository is on the path)

os.environ["IMPEX_API_RATE"] = RATE

SHOW_WORKERS = "import runpy; c = runpy.run_path('config/gunicorn.py'); print(c['workers'], c['threads'])"
CODE = "bench-serve"
ADMIN = "bench-admin"
PATH = "/api/events/customers/"
PAGES = {
    "home": "/admin/",
    "import jobs": "/admin/impex/importjob/",
    "connections": "/admin/impex/connection/",
    "orders": "/admin/orders/order/",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def client(port: int, token: str, number: int, until: float, queue) -> None:
    """Send POSTs over one keep-alive connection until the given time; put (statuses, latencies in ms) on the queue."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies, statuses, i = [], {}, 0
    while time.time() < until:
        body = json.dumps({"customer_id": f"BSV-{number}-{i}", "email": f"bsv{number}.{i}@example.com"})
        began = time.perf_counter()
        conn.request("POST", PATH, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - began) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        i += 1
    conn.close()
    queue.put((statuses, latencies))


def queries_per_post(token: str) -> list[str]:
    """POST once in this process (after a warm-up) and return the SQL statements it ran."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    web = Client(HTTP_HOST="localhost")

    def post(i):
        body = json.dumps({"customer_id": f"BSQ-{i}", "email": f"bsq{i}@example.com"})
        response = web.post(PATH, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 202, response.content

    for i in range(5):
        post(i)
    with CaptureQueriesContext(connection) as queries:
        post(5)
    return [q["sql"] for q in queries.captured_queries]


def log_in(port: int) -> str:
    """Log in to the admin as the bench's superuser; return the session cookie header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/admin/login/")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": ADMIN, "password": ADMIN + "-pw-1", "csrfmiddlewaretoken": token, "next": "/admin/"}
    )
    conn.request(
        "POST",
        "/admin/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookie}",
            "Referer": f"http://127.0.0.1:{port}/admin/login/",
        },
    )
    response = conn.getresponse()
    response.read()
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    if response.status != 302 or not session:
        raise SystemExit(f"could not log in to the admin (status {response.status})")
    return f"sessionid={session.group(1)}; csrftoken={cookie}"


def page_times(port: int, cookie: str, runs: int) -> dict[str, list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = {}
    for name, path in PAGES.items():
        times[name] = []
        for run in range(runs + 2):
            began = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{path} answered {response.status}")
            if run >= 2:  # the first two warm the worker's caches up
                times[name].append((time.perf_counter() - began) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--one-token", action="store_true", help="every client sends the same token")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: config/gunicorn.py's)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: config/gunicorn.py's)")
    parser.add_argument("--page-runs", type=int, default=20)
    args = parser.parse_args()

    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "manage.py", "impex_demo"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    static_root = tempfile.mkdtemp(prefix="serve-bench-static-")
    env = {**os.environ, "STATIC_ROOT": static_root, "DB_CONN_MAX_AGE": os.environ.get("DB_CONN_MAX_AGE", "60")}
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection as db

    from impex.models import Connection
    from impex.services.tokens import api_token_issue
    from syncapp.models import RecordEvent

    RecordEvent.objects.filter(connection__code=CODE).delete()
    conn, _ = Connection.objects.get_or_create(
        code=CODE, defaults={"name": "Serve bench", "convention": "kore", "integration_id": "BENCHSRV"}
    )
    tokens = [api_token_issue(connection=conn, by="serve_bench") for _ in range(1 if args.one_token else args.clients)]
    User = get_user_model()
    admin = User.objects.filter(username=ADMIN).first() or User(username=ADMIN, is_staff=True, is_superuser=True)
    admin.set_password(ADMIN + "-pw-1")
    admin.save()

    statements = queries_per_post(tokens[0])
    db.close()

    port = free_port()
    server_env = {**env, "ADDR": f"127.0.0.1:{port}"}
    if args.workers:
        server_env["GUNICORN_WORKERS"] = str(args.workers)
    if args.threads:
        server_env["GUNICORN_THREADS"] = str(args.threads)
    with server_process(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        port,
        name="gunicorn",
        timeout=60,
        cwd=ROOT,
        env=server_env,
    ):
        config = subprocess.run(
            [sys.executable, "-c", SHOW_WORKERS],
            cwd=ROOT,
            env=server_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        # Every worker and thread connects and warms up before the clock starts.
        warm = multiprocessing.Queue()
        client(port, tokens[0], -1, time.time() + 2, warm)
        warm.get()

        queue = multiprocessing.Queue()
        until = time.time() + args.seconds
        clients = [
            multiprocessing.Process(target=client, args=(port, tokens[n % len(tokens)], n, until, queue))
            for n in range(args.clients)
        ]
        began = time.perf_counter()
        for process in clients:
            process.start()
        results = [queue.get() for _ in clients]
        took = time.perf_counter() - began
        for process in clients:
            process.join()
        statuses, latencies = {}, []
        for got, times in results:
            latencies += times
            for status, count in got.items():
                statuses[status] = statuses.get(status, 0) + count

        cookie = log_in(port)
        pages = page_times(port, cookie, args.page_runs)

    RecordEvent.objects.filter(connection__code=CODE).delete()
    print(f"database: {db.vendor}; CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}")
    print(f"gunicorn: {config[0]} workers x {config[1]} threads (gthread); IMPEX_API_RATE={RATE} for the bench")
    print(f"queries per POST: {len(statements)}")
    for sql in statements:
        print(f"    {sql[:110]}")
    print(
        f"POSTs: {args.clients} clients, {len(tokens)} token(s), {args.seconds:.0f} s: "
        f"{sum(statuses.values()) / took:.0f} POSTs/s; statuses {statuses}; "
        f"latency p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms"
    )
    for name, times in pages.items():
        print(
            f"admin {name:<12} {PAGES[name]:<28} p50 {statistics.median(times):6.1f} ms  "
            f"p95 {percentile(times, 95):6.1f} ms"
        )


if __name__ == "__main__":
    main()
