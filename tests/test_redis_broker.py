"""django-q2's Redis broker (`Q_REDIS_URL`, issue 16 R2): the `redis` client is a pinned requirement, and a job one
process queues through Redis is done by a cluster in another process (which shares the deployment's SECRET_KEY).

The Redis server: IMPEX_TEST_REDIS_URL (default redis://127.0.0.1:6379); the test takes the first of its databases
1-15 that no django-q2 cluster uses. Without a Redis server the test is skipped (with how to enable it),
except under CI=true or IMPEX_REQUIRE_REDIS=1 (.ci/run sets it), where it fails.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django_q.models import OrmQ

from impex.models import Connection, ImportJob
from impex.tests.helpers import customer_row, process_env, write_kore
from syncapp.models import Customer
from tests.test_inbox_scan_e2e import Cluster, shared_db, wait_for  # noqa: F401 (shared_db: a fixture used here)

QUEUE = f"django_q:{settings.Q_CLUSTER['name']}:q"  # the Redis list django-q2's broker keeps a cluster's tasks in


def redis_required() -> bool:
    """Whether a missing Redis server must fail the test (CI=true, or IMPEX_REQUIRE_REDIS=1 as .ci/run sets)."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in ("CI", "IMPEX_REQUIRE_REDIS")
    )


@pytest.fixture
def redis_url():
    """The URL of a Redis database no django-q2 cluster uses; its queue is removed afterwards."""
    server = os.environ.get("IMPEX_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    try:
        redis.Redis.from_url(server, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        if redis_required():
            pytest.fail(f"CI requires Redis, but no Redis server answers at {server}: {exc}", pytrace=False)
        pytest.skip(f"no Redis server at {server} ({exc}): install redis-server or set IMPEX_TEST_REDIS_URL")
    idle = next((n for n in range(1, 16) if not redis.Redis.from_url(f"{server}/{n}").keys("django_q:*")), None)
    if idle is None:
        pytest.fail(f"every database 1-15 of {server} has a django-q2 cluster on it")
    client = redis.Redis.from_url(f"{server}/{idle}")
    yield f"{server}/{idle}"
    client.delete(QUEUE)


def test_the_redis_client_is_a_pinned_requirement():
    requirements = (Path(settings.BASE_DIR) / "requirements.txt").read_text()

    pin = re.search(r"^redis==(\S+)$", requirements, re.MULTILINE)

    assert pin, "requirements.txt does not pin redis, which django-q2's Redis broker (Q_REDIS_URL) imports"
    assert pin.group(1) == importlib.metadata.version("redis")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_db")
def test_a_job_queued_through_redis_by_one_process_is_done_by_a_cluster_in_another(redis_url, tmp_path):
    conn = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2")])
    env = process_env(Q_REDIS_URL=redis_url, Q_WORKERS=1, PYTHONUNBUFFERED=1)
    queue = redis.Redis.from_url(redis_url)

    queued = subprocess.run(
        [sys.executable, "manage.py", "impex_import", str(path), "--connection", conn.code, "--queue"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    job = ImportJob.objects.get(connection=conn)
    # The task went to Redis, not to the database's queue.
    assert (queue.llen(QUEUE), OrmQ.objects.count()) == (1, 0)

    cluster = Cluster(env, tmp_path / "qcluster.log").start()
    try:
        done = wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in ("completed", "failed", "errored"))
        log = cluster.output()
    finally:
        cluster.kill()

    assert done, f"job #{job.pk} is still {ImportJob.objects.get(pk=job.pk).status}:\n{cluster.output()[-6000:]}"
    assert ImportJob.objects.get(pk=job.pk).status == "completed", log[-6000:]
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C1", "C2"]
    assert queue.llen(QUEUE) == 0
    assert "BadSignature" not in log and "ModuleNotFoundError" not in log
