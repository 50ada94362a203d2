"""The hub's django-q2 brokers: django-q2's own, whose sentinel also records each cluster's heartbeat in the database.

django-q2 keeps a cluster's status (Stat) in its broker for 3 seconds only, and with the ORM broker in the Django
cache of each process, which no other process or machine sees. /healthz and /metrics need the last sign of life of
every cluster, whatever the broker and the machine: the sentinel saves its Stat every guard cycle (half a second)
through broker.set_stat, and these brokers write it to impex.ClusterBeat too, at most every BEAT_SECONDS.
config/settings.py names one of them as Q_CLUSTER["broker_class"].
"""

import logging
import os
import socket
import time

from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.signing import SignedPackage

from impex.services.health import cluster_beat_record

log = logging.getLogger(__name__)

# How often a cluster writes its heartbeat (the health check calls a cluster dead after 120 s of silence).
BEAT_SECONDS = 30.0


class HeartbeatMixin:
    """Record the cluster's heartbeat when its sentinel saves its status, at most every BEAT_SECONDS (and at once
    when the status changes: Stopping, Stopped)."""

    _beat_at: float | None = None
    _beat_status: str | None = None

    def set_stat(self, key: str, value, timeout: int):
        result = super().set_stat(key, value, timeout)
        self._beat(value)
        return result

    def _beat(self, value) -> None:
        try:
            stat = SignedPackage.loads(value)
            status = str(getattr(stat, "status", "") or "")
            due = self._beat_at is None or time.monotonic() - self._beat_at >= BEAT_SECONDS
            if not due and status == self._beat_status:
                return
            self._beat_at, self._beat_status = time.monotonic(), status
            cluster_beat_record(
                cluster=str(stat.cluster_id),
                host=getattr(stat, "host", "") or socket.gethostname(),
                pid=getattr(stat, "pid", 0) or os.getpid(),
                status=status,
            )
        except Exception:  # a busy or unreachable database must not stop the sentinel: the next beat tries again
            log.warning("could not record the cluster's heartbeat", exc_info=True)


class HubORM(HeartbeatMixin, ORM):
    """django-q2's ORM broker, recording heartbeats."""


class HubRedis(HeartbeatMixin, Redis):
    """django-q2's Redis broker, recording heartbeats."""
