"""Leased work: the abstract base of work claimed under a lease (the other apps' queues build on it too), and
the passes the cluster runs over it."""

from django.db import models
from django.utils import timezone


class LeasedWork(models.Model):
    """A piece of work a worker claims under a lease and that is tried again with back-off when it fails.

    impex.services.queue is the only writer of these fields (and checks each status it writes against its
    queue's table of moves); a model adds its status and what its work needs.
    """

    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class WorkPass(models.Model):
    """A pass the cluster runs over leased work (webhook deliveries, order exports ...): whether a task for it waits
    in the broker, and which workers run one now, each until its lease ends (impex.services.passes)."""

    name = models.CharField(max_length=100, unique=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When its one waiting task was queued.")
    runners = models.JSONField(default=dict, blank=True, help_text="Worker -> the end of its lease (ISO 8601).")
    refused = models.JSONField(
        null=True,
        blank=True,
        help_text="Its task and title while a task of it found no place free: the next pass to leave its place "
        "queues it, and passes running meanwhile end early to make room.",
    )

    def __str__(self):
        return self.name


class ClusterBeat(models.Model):
    """A django-q2 cluster's last sign of life, written by its sentinel through the hub's broker (impex.brokers)
    and read by /healthz and /metrics: every machine's cluster writes here, whatever the broker."""

    cluster = models.CharField(max_length=64, unique=True, help_text="The cluster's id (new at each start).")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    status = models.CharField(max_length=20, blank=True, default="", help_text="As django-q2 says: Idle, Working ...")
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"cluster {self.cluster} on {self.host}"
