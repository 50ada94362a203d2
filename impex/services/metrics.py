"""The hub's metrics for /metrics (SPEC 11), read from the database at each scrape in the Prometheus text format.

Every number comes from the rows every process and machine shares, not from counters in one process's memory, so
any web server answers the same. A scrape is a dozen aggregate queries, each on an index or on a small table:
jobs by status, rows imported by entity, each queue's depth and oldest due item, open problems, the clusters'
heartbeat, overdue schedules, and each scanned inbox's last scan.
"""

import logging
from datetime import datetime

from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from impex.choices import JobStatus, ProblemKind
from impex.models import ConnectionState, DataDescriptor, ImportFile, ImportJob, Problem
from impex.registry import work_queues
from impex.services.health import HEARTBEAT_LIMIT, broker_kind, clusters_running, redis_client, schedules_overdue

log = logging.getLogger(__name__)

# What a file's totals say of its rows, in the order /metrics lists them.
ROW_OUTCOMES = ("created", "updated", "unchanged", "retired", "failed")


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def _jobs() -> GaugeMetricFamily:
    family = GaugeMetricFamily("impex_import_jobs", "Import jobs by status.", labels=["status"])
    # COUNT(*), not COUNT(id): PostgreSQL then counts from the status index alone (an index-only scan).
    counts = dict(ImportJob.objects.order_by().values_list("status").annotate(n=Count("*")))
    # Every status the model knows, 0 when no job has it: a status added later shows without a change here.
    for status in JobStatus.values:
        family.add_metric([status], counts.get(status, 0))
    return family


def _rows() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "impex_rows_imported",
        "Rows of the import files the hub keeps, by entity and outcome (not dry runs; purging old jobs lowers it).",
        labels=["entity", "outcome"],
    )
    sums = (
        ImportFile.objects.filter(job__dry_run=False, descriptor__isnull=False)
        .order_by()
        .values("descriptor_id")
        .annotate(**{outcome: Sum(outcome) for outcome in ROW_OUTCOMES})
    )
    entity_of = dict(DataDescriptor.objects.values_list("pk", "entity"))
    totals: dict[str, dict[str, int]] = {}
    for row in sums:
        entity = totals.setdefault(entity_of.get(row["descriptor_id"], ""), dict.fromkeys(ROW_OUTCOMES, 0))
        for outcome in ROW_OUTCOMES:
            entity[outcome] += row[outcome] or 0
    for entity in sorted(totals):
        for outcome in ROW_OUTCOMES:
            family.add_metric([entity, outcome], totals[entity][outcome])
    return family


def _queues(now: datetime) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    depth = GaugeMetricFamily(
        "impex_queue_depth", "Items waiting or in hand in each queue (claimed but not finished).", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "impex_queue_oldest_age_seconds",
        "How long the oldest item due in each queue has waited past its due time (0: none waits).",
        labels=["queue"],
    )
    jobs = ImportJob.objects.filter(status=JobStatus.QUEUED).aggregate(
        n=Count("pk"), since=Min(Coalesce("queued_at", "created_at"))
    )
    depth.add_metric(["import_jobs"], jobs["n"])
    oldest.add_metric(["import_jobs"], _age(now, jobs["since"]))
    for name, queue in sorted(work_queues().items()):
        statuses = [queue.pending, queue.running] if queue.running else [queue.pending]
        found = queue.model.objects.filter(status__in=statuses).aggregate(
            n=Count("pk"), since=Min("next_attempt_at", filter=Q(status=queue.pending, next_attempt_at__lte=now))
        )
        depth.add_metric([name], found["n"])
        oldest.add_metric([name], _age(now, found["since"]))
    tasks = _task_queue(now)
    if tasks is not None:
        depth.add_metric(["django_q"], tasks[0])
        oldest.add_metric(["django_q"], tasks[1])
    return depth, oldest


def _task_queue(now: datetime) -> tuple[int, float] | None:
    """Return the cluster's task queue (django-q2's broker): tasks not yet taken, and the oldest one's age."""
    kind = broker_kind()
    if kind == "orm":
        found = (
            OrmQ.objects.using(Conf.ORM)
            .filter(key=Conf.CLUSTER_NAME, lock__lte=now)
            .aggregate(n=Count("pk"), since=Min("lock"))
        )
        return found["n"], _age(now, found["since"])
    if kind == "redis":
        try:
            return redis_client().llen(f"django_q:{Conf.CLUSTER_NAME}:q"), 0.0
        except Exception:  # Redis down: the queue goes unreported this scrape; /healthz says why
            log.warning("metrics: the Redis broker did not answer", exc_info=True)
    return None


def _problems() -> GaugeMetricFamily:
    family = GaugeMetricFamily("impex_problems_open", "Open problems (waiting for a person) by kind.", labels=["kind"])
    counts = dict(
        Problem.objects.filter(resolved_at__isnull=True).order_by().values_list("kind").annotate(n=Count("pk"))
    )
    for kind in ProblemKind.values:
        family.add_metric([kind], counts.get(kind, 0))
    return family


def _scans(now: datetime) -> list[GaugeMetricFamily]:
    age = GaugeMetricFamily(
        "impex_inbox_last_scan_age_seconds",
        "Seconds since each scanned connection's inbox was last scanned (absent: never scanned).",
        labels=["connection"],
    )
    ok = GaugeMetricFamily(
        "impex_inbox_last_scan_ok",
        "Whether each connection's last scan of its inbox succeeded (1) or not (0).",
        labels=["connection"],
    )
    scanned = ConnectionState.objects.filter(
        connection__active=True, connection__scan_enabled=True, last_scan_at__isnull=False
    ).values_list("connection__code", "last_scan_at", "last_scan_ok")
    for code, at, success in scanned.order_by("connection__code"):
        age.add_metric([code], _age(now, at))
        ok.add_metric([code], 1 if success else 0)
    return [age, ok]


def _clusters(now: datetime) -> list[GaugeMetricFamily]:
    last = clusters_running().order_by("-seen_at").values_list("seen_at", flat=True).first()
    alive = clusters_running().filter(seen_at__gte=now - HEARTBEAT_LIMIT).count()
    overdue, _ = schedules_overdue(now)
    families = [
        GaugeMetricFamily("impex_clusters_alive", "Clusters that sent a heartbeat in the last 2 minutes.", alive),
        GaugeMetricFamily("impex_schedules_overdue", "Repeating schedules more than 5 minutes late.", overdue),
    ]
    if last is not None:
        families.append(
            GaugeMetricFamily(
                "impex_cluster_heartbeat_age_seconds",
                "Seconds since the last heartbeat of any cluster not stopped.",
                _age(now, last),
            )
        )
    return families


class HubCollector:
    """A prometheus_client collector that reads the hub's numbers from the database at each collect()."""

    def collect(self):
        now = timezone.now()
        yield _jobs()
        yield _rows()
        yield from _queues(now)
        yield _problems()
        yield from _scans(now)
        yield from _clusters(now)


def metrics_text() -> bytes:
    """Return the hub's metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector())
    return generate_latest(registry)
