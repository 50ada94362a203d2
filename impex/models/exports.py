"""Export runs of the export groups: the state of each group's schedule, the runs, their log and the files sent."""

from django.db import models
from django.utils import timezone

from impex.choices import (
    EventLevel,
    ExportRunStatus,
    ExportTrigger,
)
from impex.models.connections import Connection
from impex.models.descriptors import DataGroup


class FullSync(models.Model):
    """A "trigger a data sync" of one entity for one connection (SPEC 8, 10): its log started over, and each of its
    scheduled exports of the entity runs once in full; finished when the last of them has written its file."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="full_syncs")
    entity = models.CharField(max_length=40)
    groups = models.ManyToManyField(
        DataGroup, related_name="full_syncs", help_text="The scheduled exports it runs in full."
    )
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the last of its exports wrote every record: the sync log's last_full_sync.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connection", "entity", "-id"], name="fullsync_connection_entity")]

    def __str__(self):
        return f"Full sync #{self.pk} of {self.entity}"


class ExportState(models.Model):
    """A scheduled export's own state of a group: its watermark, and the run holding the group now (one at a time)."""

    group = models.OneToOneField(DataGroup, primary_key=True, on_delete=models.CASCADE, related_name="export_state")
    watermark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The start of the last successful run: the next incremental run writes the records changed since.",
    )
    watermark_destination = models.CharField(
        max_length=500, blank=True, default="", help_text="The destination the watermark belongs to."
    )
    # Two runs of a group never overlap, whichever cluster or admin starts them: the holder's claim, with a lease.
    run = models.ForeignKey("ExportRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set by a full sync, cleared by the run that carries it out (a run that started before it does not).
    full_sync = models.ForeignKey(
        FullSync,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pending",
        help_text="The full sync the group's next run carries out: every record, whatever the watermark.",
    )

    def __str__(self):
        return f"{self.group_id}: watermark {self.watermark or '-'}"


class ExportRun(models.Model):
    """One export of a group's file to its destination (or one file sent again), driven from start to end."""

    group = models.ForeignKey(DataGroup, on_delete=models.CASCADE, related_name="export_runs")
    trigger = models.CharField(max_length=10, choices=ExportTrigger.choices)
    status = models.CharField(
        max_length=10, choices=ExportRunStatus.choices, default=ExportRunStatus.QUEUED, db_index=True
    )
    resend_of = models.ForeignKey(
        "SentFile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resends",
        help_text="The file this run sends again; empty: the run exports.",
    )
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    destination = models.CharField(max_length=500, blank=True, default="", help_text="Where the run writes.")
    since = models.DateTimeField(
        null=True, blank=True, help_text="The watermark used: records changed since then (empty: every record)."
    )
    watermark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the run started (or an earlier write still open then): the group's watermark once the run "
        "succeeds.",
    )
    rows = models.PositiveBigIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The run's worker holds it until then unless it renews it; the sweeper fails a run whose lease ran "
        "out.",
    )
    error = models.TextField(blank=True, default="")
    full_sync = models.ForeignKey(
        FullSync,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The full sync this run carried out: it wrote every record, the watermark reset.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["group", "-created_at"], name="exportrun_group_created")]

    def __str__(self):
        return f"Export run #{self.pk}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ExportRunEvent(models.Model):
    """One change of an export run's status, with why: the run's log, never rewritten."""

    run = models.ForeignKey(ExportRun, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, choices=EventLevel.choices, default=EventLevel.INFO)
    status = models.CharField(max_length=10, choices=ExportRunStatus.choices)
    message = models.TextField()
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["run", "at", "id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status}: {self.message}"


class SentFile(models.Model):
    """A file an export run wrote to a destination: what, where, how much, and the hub's copy to send it again."""

    run = models.ForeignKey(ExportRun, on_delete=models.CASCADE, related_name="sent_files")
    group = models.ForeignKey(DataGroup, on_delete=models.CASCADE, related_name="sent_files")
    name = models.CharField(max_length=300, help_text="The file's name in the destination.")
    location = models.CharField(max_length=500, help_text="The destination folder.")
    path = models.CharField(max_length=1000, help_text="The file's path: in the hub's storage, or a full location.")
    copy_path = models.CharField(
        max_length=1000, help_text="The hub's copy of the file (in its storage), which 'Send again' sends."
    )
    rows = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField("SHA-256", max_length=64)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes.")
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-sent_at", "-id"]

    def __str__(self):
        return self.name
