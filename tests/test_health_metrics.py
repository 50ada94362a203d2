"""GET /healthz and GET /metrics (SPEC 11): what each says when all is well and when each thing fails, who may read
the metrics, and that neither leaks a secret.

Failures are real: a database or a Redis broker on a closed port, served by gunicorn with the deployment's settings
(DEBUG off, a strict ALLOWED_HOSTS, the HTTPS redirect on); a cluster's heartbeat is written by a real qcluster, or
as its broker writes it (impex.services.health.cluster_beat_record).
"""

import json
import sys
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from impex.choices import JobStatus, ProblemKind
from impex.models import (
    ClusterBeat,
    Connection,
    ConnectionState,
    DataDescriptor,
    ImportFile,
    ImportJob,
    WebhookDelivery,
    WebhookSubscription,
)
from impex.services.health import cluster_beat_record
from impex.services.problems import problem_raise, problem_resolve
from impex.tests.helpers import process_env
from syncapp.models import RecordEvent
from tests.fixtures import free_port, server_process
from tests.test_inbox_scan_e2e import Cluster, shared_db, wait_for  # noqa: F401 (shared_db: a fixture used here)

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def all_well(db):
    """A cluster that beat just now, and every schedule due in the future."""
    cluster_beat_record(cluster="c1", host="worker-1", pid=4242, status="Idle")
    Schedule.objects.update(next_run=timezone.now() + timedelta(minutes=1))


def health(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    return response.status_code, json.loads(response.content)


def test_all_well_is_200_with_each_check_ok(client, all_well):
    status, body = health(client)

    assert status == 200, body
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "cluster": True,
        "schedules": True,
    }
    assert body["checks"]["broker"]["kind"] == "orm"
    assert body["checks"]["cluster"]["clusters"] == 1
    assert body["checks"]["schedules"]["overdue"] == 0


def test_no_heartbeat_ever_is_503(client, all_well):
    ClusterBeat.objects.all().delete()

    status, body = health(client)

    assert status == 503
    assert body["status"] == "fail"
    assert not body["checks"]["cluster"]["ok"]
    assert "qcluster" in body["checks"]["cluster"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["schedules"]["ok"]


def test_a_503_mails_nobody_so_a_probe_every_few_seconds_is_no_mail_flood(client, all_well, settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEBUG = False
    ClusterBeat.objects.all().delete()

    assert [health(client)[0] for _ in range(3)] == [503, 503, 503]

    assert mailoutbox == []


def test_a_heartbeat_older_than_two_minutes_is_503_and_one_younger_is_not(client, all_well):
    ClusterBeat.objects.update(seen_at=timezone.now() - timedelta(seconds=125))

    status, body = health(client)

    assert status == 503
    assert body["checks"]["cluster"]["ok"] is False
    assert body["checks"]["cluster"]["seconds_ago"] >= 125
    assert body["checks"]["cluster"]["clusters"] == 0

    ClusterBeat.objects.update(seen_at=timezone.now() - timedelta(seconds=100))
    assert health(client)[0] == 200


def test_a_cluster_that_said_it_stopped_is_not_alive(client, all_well):
    cluster_beat_record(cluster="c1", host="worker-1", pid=4242, status="Stopped")

    status, body = health(client)

    assert status == 503
    assert body["checks"]["cluster"] == {
        "ok": False,
        "error": "every cluster has stopped: start one with `python manage.py qcluster`",
    }


def test_a_schedule_overdue_by_more_than_five_minutes_is_503(client, all_well):
    late = Schedule.objects.order_by("pk").first()
    late.next_run = timezone.now() - timedelta(minutes=4)
    late.save()
    assert health(client)[0] == 200

    late.next_run = timezone.now() - timedelta(minutes=7)
    late.save()
    status, body = health(client)

    assert status == 503
    assert body["checks"]["schedules"] == {
        "ok": False,
        "error": "1 schedule(s) overdue by more than 5 minutes, the most by 7 minutes: is a cluster running its "
        "scheduler?",
        "overdue": 1,
    }
    # A schedule with no runs left is not waited for.
    Schedule.objects.filter(pk=late.pk).update(repeats=0)
    assert health(client)[0] == 200


def test_the_heartbeat_is_one_row_per_cluster_and_a_day_old_one_goes(db):
    cluster_beat_record(cluster="old", host="h", pid=1, status="Stopped", now=timezone.now() - timedelta(days=2))
    cluster_beat_record(cluster="c1", host="h", pid=2, status="Idle")
    cluster_beat_record(cluster="c1", host="h", pid=2, status="Working")

    assert list(ClusterBeat.objects.values_list("cluster", "status")) == [("c1", "Working")]


# -- /metrics: who may read it ---------------------------------------------------------------------------------------


def test_metrics_are_served_to_this_machine_only_when_nothing_is_configured(client, db, settings):
    settings.IMPEX_METRICS_TOKEN = ""
    settings.IMPEX_METRICS_ALLOWED_IPS = []

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    for address in ("10.0.0.5", "203.0.113.9"):
        response = client.get("/metrics", REMOTE_ADDR=address, HTTP_AUTHORIZATION="Bearer anything-at-all-here")
        assert response.status_code == 403
        assert b"IMPEX_METRICS_TOKEN" in response.content and b"impex_" not in response.content
    # Through a proxy on this machine the client is the one the proxy names, never the proxy's loopback.
    settings.IMPEX_PROXY_COUNT = 1
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403


def test_metrics_need_the_token(client, db, settings):
    settings.IMPEX_METRICS_TOKEN = TOKEN
    settings.IMPEX_METRICS_ALLOWED_IPS = []

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert allowed.status_code == 200
    assert allowed.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"impex_import_jobs" in allowed.content


def test_metrics_by_address_take_the_client_behind_the_proxies(client, db, settings):
    settings.IMPEX_METRICS_TOKEN = ""
    settings.IMPEX_METRICS_ALLOWED_IPS = ["10.20.0.0/16"]

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200

    settings.IMPEX_PROXY_COUNT = 1
    # Behind one proxy (at 127.0.0.1) the client is the last X-Forwarded-For entry; what it sent before is not trusted.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.20.3.4").status_code == 200
    spoofed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.20.3.4, 192.0.2.7")
    assert spoofed.status_code == 403


def test_metrics_with_both_settings_need_both(client, db, settings):
    settings.IMPEX_METRICS_TOKEN = TOKEN
    settings.IMPEX_METRICS_ALLOWED_IPS = ["10.20.0.0/16"]

    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.30.3.4", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


# -- /metrics: what it says ------------------------------------------------------------------------------------------


def scrape(client, settings) -> dict:
    """Read /metrics with prometheus_client's parser: {(name, labels as a sorted tuple): value}."""
    settings.IMPEX_METRICS_TOKEN = TOKEN
    settings.IMPEX_METRICS_ALLOWED_IPS = []
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_count_jobs_rows_queues_and_problems(client, db, settings, all_well):
    now = timezone.now()
    customers = DataDescriptor.objects.filter(entity="customer").order_by("pk").first()
    for status in (JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED):
        ImportJob.objects.create(status=status, queued_at=now - timedelta(seconds=90))
    done = ImportJob.objects.filter(status=JobStatus.COMPLETED).first()
    ImportFile.objects.create(job=done, name="a.csv", descriptor=customers, created=5, updated=2, failed=1)
    ImportFile.objects.create(job=done, name="b.csv", descriptor=customers, created=1, unchanged=7, retired=3)
    dry = ImportJob.objects.create(status=JobStatus.COMPLETED, dry_run=True)
    ImportFile.objects.create(job=dry, name="c.csv", descriptor=customers, created=100)
    subscription = WebhookSubscription.objects.create(code="erp", url="https://erp.example/hook", events=[])
    for status, due in (("pending", -60), ("pending", 3600), ("running", -10), ("delivered", -600)):
        WebhookDelivery.objects.create(
            subscription=subscription,
            event="customer.created",
            payload={},
            status=status,
            next_attempt_at=now + timedelta(seconds=due),
        )
    problem_raise(kind=ProblemKind.INBOX, key="scan:A", message="the inbox cannot be read")
    problem_raise(kind=ProblemKind.INBOX, key="scan:B", message="the inbox cannot be read")
    gone = problem_raise(kind=ProblemKind.WEBHOOK, key="webhook:1", message="given up")
    problem_resolve(key=gone.key)
    async_task("math.floor", 1.5)

    metrics = scrape(client, settings)

    jobs = {dict(labels)["status"]: value for (name, labels), value in metrics.items() if name == "impex_import_jobs"}
    assert jobs == {status: 0 for status in JobStatus.values} | {"queued": 1, "completed": 3, "failed": 1}
    rows = {
        dict(labels)["outcome"]: value
        for (name, labels), value in metrics.items()
        if name == "impex_rows_imported" and dict(labels)["entity"] == "customer"
    }
    assert rows == {"created": 6, "updated": 2, "unchanged": 7, "retired": 3, "failed": 1}
    assert metrics[("impex_queue_depth", (("queue", "webhook_deliveries"),))] == 3
    assert 55 <= metrics[("impex_queue_oldest_age_seconds", (("queue", "webhook_deliveries"),))] < 3600
    assert metrics[("impex_queue_depth", (("queue", "import_jobs"),))] == 1
    assert metrics[("impex_queue_oldest_age_seconds", (("queue", "import_jobs"),))] >= 90
    assert metrics[("impex_queue_depth", (("queue", "django_q"),))] == OrmQ.objects.count() >= 1
    for queue in ("import_chunks", "order_deliveries", "feed_events", "record_events"):
        assert metrics[("impex_queue_depth", (("queue", queue),))] == 0
        assert metrics[("impex_queue_oldest_age_seconds", (("queue", queue),))] == 0
    problems = {dict(labels)["kind"]: v for (name, labels), v in metrics.items() if name == "impex_problems_open"}
    assert problems == {kind: 0 for kind in ProblemKind.values} | {"inbox": 2}
    assert metrics[("impex_clusters_alive", ())] == 1
    assert metrics[("impex_schedules_overdue", ())] == 0
    assert metrics[("impex_cluster_heartbeat_age_seconds", ())] < 120


def test_a_record_event_queue_row_shows_in_its_queue(client, db, settings, kore_connection):
    RecordEvent.objects.create(
        connection=kore_connection,
        entity="customer",
        descriptor_code="KS_CUSTOMERS",
        record_key="C-1",
        payload={},
        next_attempt_at=timezone.now() - timedelta(minutes=3),
    )

    metrics = scrape(client, settings)

    assert metrics[("impex_queue_depth", (("queue", "record_events"),))] == 1
    assert metrics[("impex_queue_oldest_age_seconds", (("queue", "record_events"),))] >= 180


def test_each_scanned_inbox_says_its_last_scan(client, db, settings, kore_connection, bspk_connection):
    Connection.objects.filter(pk__in=[kore_connection.pk, bspk_connection.pk]).update(active=True, scan_enabled=True)
    ConnectionState.objects.update_or_create(
        connection=kore_connection,
        defaults={"last_scan_at": timezone.now() - timedelta(seconds=40), "last_scan_ok": False},
    )

    metrics = scrape(client, settings)

    assert 40 <= metrics[("impex_inbox_last_scan_age_seconds", (("connection", "kore-erp"),))] < 120
    assert metrics[("impex_inbox_last_scan_ok", (("connection", "kore-erp"),))] == 0
    # Never scanned: no sample (an age would be made up).
    assert ("impex_inbox_last_scan_age_seconds", (("connection", bspk_connection.code),)) not in metrics


# -- real processes: the deployment's settings, failures, a real cluster ---------------------------------------------


def served(env: dict, paths: list[str], **headers) -> dict[str, tuple[int, bytes, dict]]:
    """Serve the hub with gunicorn and env on a loopback port; GET each path; return {path: (status, body, headers)}."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0"}
    answers = {}
    with server_process(command, port, name="gunicorn", cwd=settings.BASE_DIR, env=env):
        for path in paths:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers[path] = (response.status, response.read(), dict(response.headers))
            except urllib.error.HTTPError as error:
                answers[path] = (error.code, error.read(), dict(error.headers))
    return answers


# A database and a Redis on ports nothing listens on, with passwords that must never be shown.
DOWN = {
    "postgresql": "postgres://hub:db-password-s3cret@127.0.0.1:{port}/impexhub",
    "sqlite": "sqlite:////nonexistent-folder-for-the-test/db.sqlite3",
}


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_a_database_down_is_503_not_500_and_says_no_secret(engine):
    env = process_env(
        DATABASE_URL=DOWN[engine].format(port=free_port()),
        ALLOWED_HOSTS="hub.example.com",
        SECURE_SSL_REDIRECT="1",
        IMPEX_METRICS_TOKEN=TOKEN,
    )

    answers = served(env, ["/healthz", "/metrics"], Host="10.1.2.3:8000", Authorization=f"Bearer {TOKEN}")

    status, body, headers = answers["/healthz"]
    assert status == 503, body
    report = json.loads(body)
    assert report["checks"]["database"] == {
        "ok": False,
        "error": "the database did not answer a query (see the web server's log)",
    }
    assert not report["checks"]["cluster"]["ok"] and not report["checks"]["schedules"]["ok"]
    assert headers["Cache-Control"] == "no-store"
    assert answers["/metrics"][0] == 503
    for _, text, _ in answers.values():
        for secret in ("db-password-s3cret", "nonexistent-folder", "127.0.0.1", env["SECRET_KEY"], "Traceback"):
            assert secret.encode() not in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_db")
def test_a_redis_broker_down_is_503_and_says_no_secret():
    cluster_beat_record(cluster="c1", host="worker-1", pid=4242, status="Idle")
    Schedule.objects.update(next_run=timezone.now() + timedelta(minutes=1))
    env = process_env(Q_REDIS_URL=f"redis://:redis-password-s3cret@127.0.0.1:{free_port()}/0")

    status, body, _ = served(env, ["/healthz"])["/healthz"]

    assert status == 503, body
    report = json.loads(body)
    assert report["checks"]["broker"] == {
        "ok": False,
        "error": "the redis broker did not answer a ping (see the web server's log)",
        "kind": "redis",
    }
    assert report["checks"]["database"]["ok"] and report["checks"]["cluster"]["ok"]
    assert b"redis-password-s3cret" not in body and b"Traceback" not in body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_db")
def test_a_running_cluster_writes_the_heartbeat_healthz_reads(tmp_path):
    Schedule.objects.update(next_run=timezone.now() + timedelta(minutes=1))
    env = process_env(Q_WORKERS=1)
    assert not ClusterBeat.objects.exists()

    cluster = Cluster(env, tmp_path / "qcluster.log").start()
    try:
        beat = wait_for(lambda: ClusterBeat.objects.exists())
        answers = served(env, ["/healthz"])
    finally:
        cluster.kill()

    assert beat, cluster.output()[-4000:]
    status, body, _ = answers["/healthz"]
    assert status == 200, body
    assert json.loads(body)["checks"]["cluster"]["clusters"] == 1
