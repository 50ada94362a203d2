"""Benchmark single-record updates end to end: N POSTs from C clients to a real web server, applied by the cluster.

Usage: python bench/updates_load_bench.py [--clients 4] [--posts 2000] [--customers 500] [--pattern rounds|bursts]
       [--rate 100000/min] [--token-per-client] [--drain-timeout 120]
Issue 18: "2,000 POSTs from 4 clients answered without the queue falling behind". Runs against the DATABASE_URL
database (SQLite file by default) with a throwaway IMPEX_ROOT. A child process prepares: migrate, remove the rows of
an earlier run (customers with ids starting UL-, the bench connection with its events and tokens), a Kore
connection with an API token, and the customers, so that every POST is an update. Then it starts the web server
(manage.py runserver --noreload, DEBUG as set, off by default) and the django-q2 cluster (manage.py qcluster), both
on that database, waits for the cluster's start-up tasks to leave the queue, and C client threads POST their share of
single-customer updates to /api/events/customers/ as fast as the server answers, each over a new connection. Each
customer belongs to one client, which sends its updates in order: "rounds" sends every customer's first update,
then every second one, ...; "bursts" sends a customer's updates back to back. Updates alternate between two sets of
columns (so a batch has two groups) and every one changes the record.
Every 0.25 s (while posting and after) it counts the backlog (the connection's events not finished yet) and the
django-q2 tasks waiting in the ORM broker (all, and those of the single-record updates pass). It prints POSTs/s,
latency percentiles, non-2xx answers, the backlog, the seconds from the last POST until every update was applied,
applied/s, and two verdicts: "queue kept up" (drained within 10 s of the last POST, never more than one waiting task
of the pass besides the every-minute schedule's) and "correct" (every customer holds the values of its last POST,
every event applied, none failed). It also sums up what the cluster's tasks did meanwhile (django-q2's results).
IMPEX_API_RATE is raised for the server (--rate) so that the throttle (600/min per token by default) does not
shape the load; the server's and the cluster's peak RSS are printed too. Logs are kept in the IMPEX_ROOT folder.
"""

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings require a SECRET_KEY with DEBUG off: a throwaway one unless set, inherited by the processes started here
# (the cluster signs its tasks with it, and this process reads them).
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("IMPEX_ALLOWED_HOSTS_OUTBOUND", "127.0.0.1")

CODE = "bench-updates"
INTEGRATION = "BENCHUPD"
PREFIX = "UL-"
PASS_FUNC = "syncapp.tasks.record_events"
POLL = 0.25
KEPT_UP_SECONDS = 10.0


from export_bench import script_phase  # noqa: E402  (this folder is on the path when run as a script)


def _django():
    import django

    django.setup()


def customer_id(n: int) -> str:
    return f"{PREFIX}{n:06d}"


def update_body(n: int, rnd: int) -> dict:
    """The rnd-th update of customer n: every one changes the record; odd ones send first_name as well."""
    body = {"customer_id": customer_id(n), "email": f"ul{n}.r{rnd}@example.com", "last_name": f"Last-{n}-r{rnd}"}
    if rnd % 2:
        body["first_name"] = f"First-{n}-r{rnd}"
    return body


def phase_prepare(customers: int, tokens: int) -> dict:
    """Migrate, remove an earlier run's rows, make the connection, its token(s) and the customers."""
    _django()
    from django.core.management import call_command
    from django.db import connection

    from impex.models import Connection
    from impex.services.tokens import api_token_issue
    from syncapp.models import Customer, RecordEvent, SyncLog

    call_command("migrate", verbosity=0)
    Customer.objects.filter(customer_id__startswith=PREFIX).delete()
    old = Connection.objects.filter(code=CODE).first()
    if old is not None:
        RecordEvent.objects.filter(connection=old).delete()
        SyncLog.objects.filter(connection=old).delete()
        old.delete()
    conn = Connection.objects.create(code=CODE, convention="kore", integration_id=INTEGRATION, scan_enabled=False)
    raw = [api_token_issue(connection=conn, by="bench") for _ in range(tokens)]
    Customer.objects.bulk_create(
        Customer(
            customer_id=customer_id(n),
            email=f"ul{n}@example.com",
            first_name=f"First-{n}",
            last_name=f"Last-{n}",
            connection=conn,
        )
        for n in range(customers)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE syncapp_customer")
    return {"vendor": connection.vendor, "connection": conn.pk, "tokens": raw}


def run_phase(*args: str) -> dict:
    """Run one phase in a child process and return its JSON result."""
    return script_phase(__file__, *args)


# -- processes -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path) -> subprocess.Popen:
    """Start a manage.py command in its own process group (its children are stopped with it)."""
    out = log.open("w")
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> str:
    """Terminate the process (it stops its own children: a SIGTERM to each of django-q2's workers would leave its
    cluster waiting for ever); kill its whole group if it has not ended after 15 s."""
    if proc.poll() is not None:
        return f"had ended ({proc.returncode})"
    proc.terminate()
    try:
        proc.wait(15)
        outcome = "terminated"
    except subprocess.TimeoutExpired:
        outcome = "killed"
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left
        outcome += " (its group killed)"
    except ProcessLookupError:
        pass
    proc.wait()
    return outcome


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except OSError:
            pass
    return pids


def peak_rss_tree_mb(pid: int) -> float:
    """The largest peak resident memory (VmHWM) among the process and its descendants."""
    peak = 0.0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return round(peak, 1)


def wait_for_server(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the web server ended ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the web server did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def wait_for_cluster(proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the cluster ended ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if "running" in log.read_text():
            return
        time.sleep(0.2)
    raise SystemExit(f"the cluster did not start in {timeout} s:\n{log.read_text()[-3000:]}")


# -- the queue -----------------------------------------------------------------------------------------------


class QueueWatch:
    """Counts, every POLL seconds, the connection's unfinished events and the django-q2 tasks waiting (not taken)."""

    def __init__(self, connection_id: int):
        self.connection_id = connection_id
        self.samples: list[dict] = []
        self.tasks: dict[int, dict] = {}
        self.crowded: list[dict] = []  # the queue whenever more than one task of the pass waited (up to 5)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        from django.utils import timezone
        from django_q.models import OrmQ

        from syncapp.choices import RECORD_EVENT_FINISHED
        from syncapp.models import RecordEvent

        now = timezone.now()
        backlog = RecordEvent.objects.filter(connection_id=self.connection_id).exclude(status__in=RECORD_EVENT_FINISHED)
        waiting = taken = pass_waiting = pass_taken = ticket_waiting = 0
        rows = list(OrmQ.objects.values_list("pk", "lock"))
        for pk, lock in rows:
            if pk not in self.tasks:
                task = OrmQ.objects.filter(pk=pk).first()
                self.tasks[pk] = task.task if task is not None else {}
            task = self.tasks[pk]
            is_pass = task.get("func") == PASS_FUNC
            if lock is None or lock <= now:
                waiting += 1
                pass_waiting += is_pass
                ticket_waiting += is_pass and not task.get("group")  # a schedule's task carries its group
            else:
                taken += 1
                pass_taken += is_pass
        if pass_waiting > 1 and len(self.crowded) < 5:
            from impex.models import WorkPass

            self.crowded.append(
                {
                    "now": now.isoformat(),
                    "tasks": [
                        [pk, str(lock), self.tasks[pk].get("name"), self.tasks[pk].get("group")] for pk, lock in rows
                    ],
                    "passes": list(WorkPass.objects.values("name", "queued_at", "runners")),
                }
            )
        return {
            "t": time.time(),
            "backlog": backlog.count(),
            "waiting": waiting,
            "taken": taken,
            "pass_waiting": pass_waiting,
            "pass_taken": pass_taken,
            "ticket_waiting": ticket_waiting,
        }

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self.done.is_set():
                started = time.monotonic()
                self.samples.append(self.sample())
                self.done.wait(max(0.0, POLL - (time.monotonic() - started)))
        finally:
            connection.close()


# -- the clients ---------------------------------------------------------------------------------------------


def plan(clients: int, posts: int, customers: int, pattern: str) -> list[list[tuple[int, int]]]:
    """Each client's (customer, update number) in the order it sends them; customer n belongs to client n % C."""
    per_customer, extra = divmod(posts, customers)
    rounds = {n: per_customer + (n < extra) for n in range(customers)}
    shares = []
    for c in range(clients):
        mine = [n for n in range(customers) if n % clients == c]
        if pattern == "bursts":
            shares.append([(n, r) for n in mine for r in range(rounds[n])])
        else:
            shares.append([(n, r) for r in range(max(rounds.values())) for n in mine if r < rounds[n]])
    return shares


def client(port: int, token: str, share: list[tuple[int, int]], barrier: threading.Barrier, out: list) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    barrier.wait()
    for n, rnd in share:
        body = json.dumps(update_body(n, rnd))
        started = time.time()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/api/events/customers/", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            status = response.status
            event = json.loads(data).get("event") if status == 202 else None
            error = "" if status == 202 else data[:300].decode("utf-8", "replace")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status, event, error = 0, None, f"{exc.__class__.__name__}: {exc}"
        out.append(
            {"n": n, "r": rnd, "start": started, "end": time.time(), "status": status, "event": event, "error": error}
        )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the run -------------------------------------------------------------------------------------------------


def verify(connection_id: int, results: list[dict]) -> dict:
    """Compare every customer with its last accepted update, and count the events by status."""
    from django.db.models import Count, Max

    from syncapp.models import Customer, RecordEvent

    expected: dict[int, dict] = {}
    last_event: dict[int, int] = {}
    for r in sorted((r for r in results if r["status"] == 202), key=lambda r: (r["n"], r["r"])):
        expected.setdefault(r["n"], {}).update(update_body(r["n"], r["r"]))
        last_event[r["n"]] = r["event"]
    stored = {
        c["customer_id"]: c
        for c in Customer.objects.filter(customer_id__startswith=PREFIX).values(
            "customer_id", "email", "first_name", "last_name"
        )
    }
    wrong = []
    for n, values in expected.items():
        row = stored.get(customer_id(n), {})
        if any(row.get(k) != v for k, v in values.items()):
            wrong.append({"expected": values, "found": row})
    events = RecordEvent.objects.filter(connection_id=connection_id)
    by_status = dict(events.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    per_record = events.values("record_key").annotate(n=Count("pk"), newest=Max("pk"))
    newest = {row["record_key"]: row["newest"] for row in per_record}
    # A client sends a customer's updates one after the other: its last POST must have made the record's newest event.
    out_of_order = sum(newest.get(customer_id(n)) != pk for n, pk in last_event.items())
    failed = list(events.filter(status="failed").values_list("record_key", "message")[:5])
    return {
        "customers_checked": len(expected),
        "customers_wrong": len(wrong),
        "wrong_examples": wrong[:3],
        "events_by_status": by_status,
        "events_per_record_max": max((row["n"] for row in per_record), default=0),
        "last_post_not_newest_event": out_of_order,
        "failed_examples": failed,
    }


def cluster_tasks(since: float) -> dict:
    """What the cluster's tasks since the first POST did (django-q2 keeps their results): the updates pass's tasks
    that applied some, found none, or were left for later (no place free), and every other task with its time."""
    from datetime import UTC, datetime

    from django_q.models import Task

    tasks = Task.objects.filter(started__gte=datetime.fromtimestamp(since, UTC)).order_by("started")
    passes = {"applied_some": 0, "applied_none": 0, "left_for_later": 0}
    others = []
    for task in tasks:
        result = str(task.result)
        if task.func == PASS_FUNC:
            key = "left_for_later" if "left for later" in result else "applied_none" if result[:2] == "0 " else None
            passes[key or "applied_some"] += 1
        else:
            seconds = (task.stopped - task.started).total_seconds()
            others.append(f"{task.started:%H:%M:%S} {task.func} {seconds:.1f} s: {result[:60]}")
    return {"pass_tasks_done": passes, "other_tasks": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=500, help="Distinct customers the POSTs update.")
    parser.add_argument("--pattern", choices=["rounds", "bursts"], default="rounds")
    parser.add_argument("--rate", default="100000/min", help="IMPEX_API_RATE of the web server.")
    parser.add_argument("--token-per-client", action="store_true", help="A token of its own for each client.")
    parser.add_argument("--drain-timeout", type=float, default=120, help="Seconds to wait for the backlog after.")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = {"prepare": lambda: phase_prepare(int(rest[0]), int(rest[1]))}[name]()
        print(json.dumps(result))
        return
    if args.customers > args.posts:
        parser.error("--customers may be at most --posts")

    root = Path(tempfile.mkdtemp(prefix="updates-load-bench-"))
    os.environ["IMPEX_ROOT"] = str(root)
    os.environ["IMPEX_API_RATE"] = args.rate
    prepared = run_phase("prepare", str(args.customers), str(args.clients if args.token_per_client else 1))
    tokens = prepared["tokens"]
    _django()
    from django.db import connection

    port = free_port()
    server_log, cluster_log = root / "runserver.log", root / "qcluster.log"
    server = start(["runserver", f"127.0.0.1:{port}", "--noreload"], server_log)
    cluster = start(["qcluster"], cluster_log)
    watch = QueueWatch(prepared["connection"])
    report: dict = {"database": prepared["vendor"], "clients": args.clients, "posts": args.posts}
    report.update(customers=args.customers, pattern=args.pattern, tokens=len(tokens), logs=str(root))
    try:
        wait_for_server(port, server, server_log)
        wait_for_cluster(cluster, cluster_log)
        # The cluster queues its overdue schedules at start: let them leave the queue first (at most 30 s).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and watch.sample()["waiting"]:
            time.sleep(POLL)
        first = watch.sample()
        report["tasks_waiting_before"], report["tasks_taken_before"] = first["waiting"], first["taken"]

        shares = plan(args.clients, args.posts, args.customers, args.pattern)
        results: list[dict] = []
        barrier = threading.Barrier(args.clients + 1)
        threads = [
            threading.Thread(target=client, args=(port, tokens[c % len(tokens)], shares[c], barrier, results))
            for c in range(args.clients)
        ]
        for t in threads:
            t.start()
        watch.thread.start()
        barrier.wait()
        began = time.time()
        for t in threads:
            t.join()
        last_post = max(r["end"] for r in results)
        # After the last POST: until the backlog is empty (or the timeout).
        drained_at = None
        while time.time() - last_post < args.drain_timeout:
            time.sleep(POLL)
            if watch.samples and watch.samples[-1]["t"] > last_post and watch.samples[-1]["backlog"] == 0:
                drained_at = watch.samples[-1]["t"]
                break
        time.sleep(2 * POLL)  # a follow-up task queued at the end shows in the samples too
        watch.done.set()
        watch.thread.join()
        report["server_peak_rss_mb"] = peak_rss_tree_mb(server.pid)
        report["cluster_peak_rss_mb"] = peak_rss_tree_mb(cluster.pid)
    finally:
        watch.done.set()
        report["server_stop"] = stop(server)
        report["cluster_stop"] = stop(cluster)

    from django.db.models import Max

    from syncapp.models import RecordEvent

    answered = last_post - began
    latencies = [r["end"] - r["start"] for r in results]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    posting = [s for s in watch.samples if s["t"] <= last_post]
    after = [s for s in watch.samples if s["t"] > last_post]
    at_last = posting[-1] if posting else (after[0] if after else {})
    last_applied = RecordEvent.objects.filter(connection_id=prepared["connection"]).aggregate(m=Max("applied_at"))
    applied_end = last_applied["m"].timestamp() if last_applied["m"] else None
    report.update(
        posts_answered=len(results),
        posts_per_s=round(len(results) / answered, 1),
        posting_s=round(answered, 2),
        latency_ms_p50=round(1000 * statistics.median(latencies), 1),
        latency_ms_p95=round(1000 * percentile(latencies, 95), 1),
        latency_ms_max=round(1000 * max(latencies), 1),
        answers=statuses,
        non_2xx=sum(1 for r in results if not 200 <= r["status"] < 300),
        error_examples=sorted({r["error"] for r in results if r["error"]})[:3],
        backlog_max_while_posting=max((s["backlog"] for s in posting), default=None),
        backlog_at_last_post=at_last.get("backlog"),
        drain_s_polled=round(drained_at - last_post, 2) if drained_at else None,
        drain_s_applied_at=round(applied_end - last_post, 2) if applied_end else None,
        applied_per_s_overall=round(len(results) / (max(applied_end, last_post) - began), 1) if applied_end else None,
        samples=len(watch.samples),
        tasks_waiting_max=max((s["waiting"] for s in watch.samples), default=0),
        pass_tasks_waiting_max=max((s["pass_waiting"] for s in watch.samples), default=0),
        pass_tickets_waiting_max=max((s["ticket_waiting"] for s in watch.samples), default=0),
        pass_tasks_taken_max=max((s["pass_taken"] for s in watch.samples), default=0),
        pass_tasks_seen=sum(1 for t in watch.tasks.values() if t.get("func") == PASS_FUNC),
        tasks_seen=len(watch.tasks),
        pass_tasks_crowded=watch.crowded,
    )
    report.update(cluster_tasks(began))
    report["verify"] = verify(prepared["connection"], results)
    connection.close()
    print(json.dumps(report, default=str))

    v = report["verify"]
    kept_up = drained_at is not None and drained_at - last_post <= KEPT_UP_SECONDS
    # The hub's rule: one task of the pass waits at most (its ticket); the every-minute schedule's own task may wait
    # beside it for a moment, shown apart.
    one_task = report["pass_tickets_waiting_max"] <= 1
    print(
        f"{report['database']}: {len(results)} POSTs from {args.clients} clients in {answered:.2f} s = "
        f"{report['posts_per_s']} POSTs/s; latency p50 {report['latency_ms_p50']} ms, p95 "
        f"{report['latency_ms_p95']} ms, max {report['latency_ms_max']} ms; answers {statuses}"
    )
    print(
        f"backlog: max {report['backlog_max_while_posting']} while posting, {report['backlog_at_last_post']} at the "
        f"last POST, empty {report['drain_s_polled']} s after it (last applied_at {report['drain_s_applied_at']} "
        f"s after it); {report['applied_per_s_overall']} applied/s from the first POST to the last applied; "
        f"django-q2 tasks waiting: max {report['tasks_waiting_max']} in all, {report['pass_tasks_waiting_max']} of "
        f"the updates pass ({report['pass_tasks_seen']} pass tasks seen in all); the pass's tasks: "
        f"{report['pass_tasks_done']}; other tasks: {len(report['other_tasks'])}"
    )
    print(
        f"{'PASS' if kept_up and one_task else 'FAIL'}: the queue kept up (empty within {KEPT_UP_SECONDS:g} s of "
        f"the last POST: {'yes' if kept_up else 'no'}; at most one waiting task of the pass: "
        f"{'yes' if one_task else 'no'}, max {report['pass_tickets_waiting_max']}, with the schedule's "
        f"{report['pass_tasks_waiting_max']})"
    )
    correct = (
        v["customers_wrong"] == 0
        and report["non_2xx"] == 0
        and v["last_post_not_newest_event"] == 0
        and set(v["events_by_status"]) <= {"applied"}
        and sum(v["events_by_status"].values()) == len(results)
    )
    print(
        f"{'PASS' if correct else 'FAIL'}: correct ({v['customers_checked']} customers checked, "
        f"{v['customers_wrong']} not at their last update; events {v['events_by_status']}; non-2xx {report['non_2xx']})"
    )


if __name__ == "__main__":
    main()
