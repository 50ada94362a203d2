"""The hub's health for /healthz (SPEC 11): the database, the broker, the clusters' heartbeat, overdue schedules.

Each check is a query or two on indexed columns, so a probe every few seconds costs nothing. What a check says is
for an operator (what is wrong and where to look), never a DSN, a host, a password or an exception's text: those go
to the log.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.db import DatabaseError, connection
from django.db.models import Count, Max, Min
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from impex.models import ClusterBeat

log = logging.getLogger(__name__)

# SPEC 11: a cluster silent longer than this is down; a schedule later than this is overdue.
HEARTBEAT_LIMIT = timedelta(minutes=2)
SCHEDULE_LIMIT = timedelta(minutes=5)
# A cluster silent for a day is forgotten (each start of a cluster is a new id, hence a new row).
BEAT_KEPT = timedelta(days=1)
# The health check's Redis ping gives up after this long: a probe must answer, even when Redis does not.
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass
class Check:
    """One check's outcome: ok, what is wrong if not, and a few facts for the operator."""

    ok: bool
    error: str = ""
    facts: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"ok": self.ok, **({"error": self.error} if self.error else {}), **self.facts}


def cluster_beat_record(*, cluster: str, host: str, pid: int, status: str, now: datetime | None = None) -> None:
    """Record that a cluster is alive now; when it is new, forget the clusters silent for a day."""
    now = now or timezone.now()
    values = {"host": host[:255], "pid": pid, "status": status[:20], "seen_at": now}
    if ClusterBeat.objects.filter(cluster=cluster).update(**values):
        return
    ClusterBeat.objects.create(cluster=cluster, **values)
    ClusterBeat.objects.filter(seen_at__lt=now - BEAT_KEPT).delete()


def broker_kind() -> str:
    """Return the kind of django-q2 broker in use, orm or redis (another: its class's name), without connecting."""
    if Conf.BROKER_CLASS:
        broker = import_string(Conf.BROKER_CLASS)
    elif Conf.ORM:
        broker = ORM
    elif Conf.SQS or Conf.IRON_MQ or Conf.MONGO:
        return "other"
    else:
        broker = Redis
    if issubclass(broker, ORM):
        return "orm"
    return "redis" if issubclass(broker, Redis) else broker.__name__.lower()


def redis_client():
    """Return a client of the Redis broker that gives up after REDIS_TIMEOUT_SECONDS (django-q2's own waits)."""
    timeouts = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS}
    if isinstance(Conf.REDIS, str):
        return redis.Redis.from_url(Conf.REDIS, **timeouts)
    return redis.Redis(**{**Conf.REDIS, **timeouts})


def _database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        log.warning("health check: the database did not answer", exc_info=True)
        return Check(False, "the database did not answer a query (see the web server's log)")
    return Check(True)


def _broker(database_ok: bool) -> Check:
    kind = broker_kind()
    if kind == "orm":
        if not database_ok:
            return Check(False, "the ORM broker keeps its queue in the database, which did not answer", {"kind": kind})
        try:
            OrmQ.objects.using(Conf.ORM).filter(key=Conf.CLUSTER_NAME).exists()
        except DatabaseError:
            log.warning("health check: the ORM broker's queue could not be read", exc_info=True)
            return Check(False, "the ORM broker's queue (django_q_ormq) could not be read", {"kind": kind})
        return Check(True, facts={"kind": kind})
    try:
        alive = redis_client().ping() if kind == "redis" else get_broker().ping()
    except Exception:  # the client's own errors (connection refused, timeout, authentication): all mean down
        log.warning("health check: the broker did not answer", exc_info=True)
        alive = False
    if not alive:
        return Check(False, f"the {kind} broker did not answer a ping (see the web server's log)", {"kind": kind})
    return Check(True, facts={"kind": kind})


def clusters_running():
    """Return the heartbeats of the clusters that have not said they stopped."""
    return ClusterBeat.objects.exclude(status=str(Conf.STOPPED))


def _cluster(now: datetime) -> Check:
    last = clusters_running().aggregate(last=Max("seen_at"))["last"]
    if last is None:
        stopped = ClusterBeat.objects.exists()
        if stopped:
            return Check(False, "every cluster has stopped: start one with `python manage.py qcluster`")
        return Check(False, "no cluster has ever reported: start one with `python manage.py qcluster`")
    age = max(0, int((now - last).total_seconds()))
    alive = clusters_running().filter(seen_at__gte=now - HEARTBEAT_LIMIT).count()
    facts = {"last_heartbeat": last.isoformat(), "seconds_ago": age, "clusters": alive}
    if now - last > HEARTBEAT_LIMIT:
        limit = int(HEARTBEAT_LIMIT.total_seconds())
        return Check(False, f"no cluster heartbeat for {age} s (the limit is {limit} s): is qcluster running?", facts)
    return Check(True, facts=facts)


def schedules_overdue(now: datetime) -> tuple[int, datetime | None]:
    """Return how many repeating schedules are more than SCHEDULE_LIMIT late, and the oldest of their due times."""
    late = Schedule.objects.exclude(repeats=0).filter(next_run__lt=now - SCHEDULE_LIMIT)
    found = late.aggregate(count=Count("pk"), oldest=Min("next_run"))
    return found["count"], found["oldest"]


def _schedules(now: datetime) -> Check:
    count, oldest = schedules_overdue(now)
    if not count:
        return Check(True, facts={"overdue": 0})
    minutes = int((now - oldest).total_seconds() // 60)
    return Check(
        False,
        f"{count} schedule(s) overdue by more than {int(SCHEDULE_LIMIT.total_seconds() // 60)} minutes, "
        f"the most by {minutes} minutes: is a cluster running its scheduler?",
        {"overdue": count},
    )


def health_report(*, now: datetime | None = None) -> dict:
    """Check the database, the broker, the clusters' heartbeat and the schedules; return the JSON /healthz answers."""
    now = now or timezone.now()
    checks = {"database": _database()}
    checks["broker"] = _broker(checks["database"].ok)
    for name, check in (("cluster", _cluster), ("schedules", _schedules)):
        if not checks["database"].ok:
            checks[name] = Check(False, "not checked: the database did not answer")
            continue
        try:
            checks[name] = check(now)
        except DatabaseError:
            log.warning("health check %s: the database failed", name, exc_info=True)
            checks[name] = Check(False, "not checked: the database failed the query (see the web server's log)")
    ok = all(check.ok for check in checks.values())
    return {"status": "ok" if ok else "fail", "checks": {name: check.as_json() for name, check in checks.items()}}
