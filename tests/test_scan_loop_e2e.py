"""Inboxes scanned every few seconds, as real processes: the scan loop in a process of its own takes a file dropped
in a local inbox (by polling, and woken by the file-system watch), and a `qcluster` runs the loop from its schedule
and imports what lands in a local and an S3 inbox scanned every 5 s.

Nothing asserts a duration: each wait polls up to a generous deadline. The watch test relies on an order of
events only: a loop that runs 20 s and polls its inbox every 59 s can take a file dropped after its first scan
only if the watch woke it.
"""

import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

import impex.demo
from impex.models import ConnectionState, ImportJob, ScanLoop
from impex.services.connections import connection_save
from impex.services.schedules import LOOP_SCHEDULE
from tests import test_inbox_scan_e2e as e2e
from tests.test_inbox_scan_e2e import explain, jobs_ended, s3_env, wait_for

# The processes of e2e's tests, on this test's database: its fixtures, used here by their names.
shared_db, mail_dir, env, cluster = e2e.shared_db, e2e.mail_dir, e2e.env, e2e.cluster

pytestmark = [pytest.mark.django_db(transaction=True)]

DEMO = Path(impex.demo.__file__).parent
ORDERS = DEMO / "SPECIAL-ORDERS_V2_Acme_202611010900.csv"
# Well under the loop's run (LOOP_SECONDS, 80 s), which is how long a stopping cluster waited for it before.
STOP_BOUND = 40


def loop_process(env: dict, *, seconds: int, log: Path, **extra) -> subprocess.Popen:
    """Start the scan loop for `seconds` in a manage.py process of its own (as a cluster worker runs it)."""
    code = f"from impex.services.scan_loop import scan_loop_run; print(scan_loop_run(seconds={seconds}).summary)"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=settings.BASE_DIR,
            env={**env, **{k: str(v) for k, v in extra.items()}},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def scanned(code: str):
    return ConnectionState.objects.filter(connection__code=code, last_scan_at__isnull=False).exists()


def fast_connection(code: str, company: str, seconds: int, **fields):
    conn, _ = connection_save(code=code, convention="bspk", company_name=company, scan_seconds=seconds, **fields)
    return conn


@contextmanager
def loop_with_a_drop(env: dict, log: Path, *, code: str, every: int, seconds: int, watch: int):
    """Run the loop for `seconds` in a process over a connection scanned `every` seconds; once it has scanned the
    inbox, drop a file there; yield the connection, its inbox and the process (killed at the end if still there)."""
    conn = fast_connection(code, "Acme", every)
    inbox = Path(settings.IMPEX_ROOT) / conn.code / "inbox"
    loop = loop_process(env, seconds=seconds, log=log, IMPEX_SCAN_WATCH=watch)
    try:
        assert wait_for(lambda: scanned(conn.code), seconds=60), log.read_text()
        shutil.copyfile(ORDERS, inbox / ORDERS.name)
        yield conn, inbox, loop
    finally:
        loop.kill()
        loop.wait(timeout=30)


def test_a_loop_process_polls_a_local_inbox_and_queues_a_job_for_a_file_dropped_in_it(env, tmp_path):
    log = tmp_path / "loop.log"
    with loop_with_a_drop(env, log, code="acme-fast", every=5, seconds=40, watch=0) as (conn, inbox, _):
        job = wait_for(lambda: ImportJob.objects.filter(connection=conn).first(), seconds=60)
        assert job is not None, f"{explain(None, conn.code)}\n{log.read_text()}"
        # The loop queued it for the cluster (none runs here): it never imports.
        assert (job.source, job.status) == ("scan", "queued")
        assert wait_for(lambda: not any(inbox.iterdir()), seconds=30)


def test_the_watch_wakes_the_loop_for_a_file_dropped_between_two_polls(env, tmp_path):
    log = tmp_path / "loop.log"
    with loop_with_a_drop(env, log, code="acme-watched", every=59, seconds=20, watch=1) as (conn, inbox, loop):
        loop.wait(timeout=120)

    output = log.read_text()
    # Its next poll would have come 59 s after the first, long after the loop's 20 s: the watch woke it.
    assert "job(s) #" in output, output
    job = ImportJob.objects.get(connection=conn)
    assert (job.source, job.status) == ("scan", "queued")
    assert not any(inbox.iterdir())


def test_the_cluster_runs_the_loop_from_its_schedule_and_imports_local_and_s3_inboxes_every_5_s(
    cluster, s3_bucket, s3_server, s3_client
):
    local = fast_connection("acme-local", "Acme", 5)
    remote = fast_connection("beta-s3", "Beta", 5, inbox=f"s3://{s3_bucket}/beta/inbox")
    slow, _ = connection_save(code="kore-slow", convention="kore", integration_id="INT1", interval_minutes=5)
    # The loop's schedule was made as the connections were saved, due at once; the slow one has its own.
    assert Schedule.objects.get(name=LOOP_SCHEDULE).next_run <= timezone.now()
    inbox = Path(settings.IMPEX_ROOT) / local.code / "inbox"

    cluster.start(Q_SCHEDULER_AT_START=1, **s3_env(s3_server))
    for code in (local.code, remote.code):
        assert wait_for(lambda code=code: scanned(code)), explain(cluster, code)
    shutil.copyfile(ORDERS, inbox / ORDERS.name)
    key = "beta/inbox/SPECIAL-ORDERS_V2_Beta_202611010900.csv"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=ORDERS.read_bytes())

    for code in (local.code, remote.code):
        (job,) = wait_for(lambda code=code: jobs_ended(code, 1)) or pytest.fail(explain(cluster, code))
        assert job.status == "completed", explain(cluster, code)
    assert not any(inbox.iterdir())
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="beta/inbox/")
    assert not ImportJob.objects.filter(connection=slow).exists()


def test_a_cluster_asked_to_stop_ends_its_scan_loop_at_once_instead_of_waiting_for_its_run_to_end(cluster):
    # django-q2 gives a running task no stop signal: the loop sees its cluster's "Stopping" heartbeat and ends, so
    # the cluster stops within seconds, not after the loop's 80 s run (make run / make serve killed it at 10 s).
    fast_connection("acme-stop", "Acme", 59)
    cluster.start(Q_SCHEDULER_AT_START=1)
    assert wait_for(lambda: ScanLoop.objects.exclude(holder="").exists(), seconds=60), cluster.output()[-4000:]
    assert wait_for(lambda: scanned("acme-stop"), seconds=60), cluster.output()[-4000:]

    os.kill(cluster.process.pid, signal.SIGTERM)  # the main process only, as make and docker stop it
    stopped = wait_for(lambda: cluster.process.poll() is not None, seconds=STOP_BOUND)
    assert stopped, f"the cluster was still stopping after {STOP_BOUND} s\n{cluster.output()[-4000:]}"
    # The loop let its lease go as it ended (a killed loop would still hold it).
    assert not ScanLoop.objects.exclude(holder="").exists()
