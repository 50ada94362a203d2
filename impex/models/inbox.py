"""The files the scans find in the connections' inboxes, with their history."""

from django.db import models
from django.utils import timezone

from impex.choices import InboxStatus
from impex.models.connections import Connection


class InboxFile(models.Model):
    """A file found in a connection's inbox, from the first look until it left the inbox for a job (or vanished)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="inbox_files")
    name = models.CharField(max_length=300)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes at the last look.")
    modified = models.DateTimeField(null=True, blank=True, help_text="Modification time at the last look.")
    status = models.CharField(max_length=10, choices=InboxStatus.choices, default=InboxStatus.SEEN, db_index=True)
    message = models.TextField(blank=True, default="")
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="inbox_files")
    import_file = models.ForeignKey(
        "ImportFile", null=True, blank=True, on_delete=models.SET_NULL, related_name="inbox_files"
    )
    left_inbox_at = models.DateTimeField(
        null=True, blank=True, help_text="When the original was removed from the inbox (the job holds its copy)."
    )

    class Meta:
        ordering = ["-first_seen", "-id"]
        constraints = [
            # A name in the inbox is one file until it leaves: two scanners find the same row to claim.
            models.UniqueConstraint(
                fields=["connection", "name"],
                condition=models.Q(status__in=[InboxStatus.SEEN, InboxStatus.CLAIMED]),
                name="inboxfile_present_once",
            )
        ]

    def __str__(self):
        return self.name


class InboxEvent(models.Model):
    """One step in an inbox file's history: seen, still being written, claimed, taken into a job, gone."""

    inbox_file = models.ForeignKey(InboxFile, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=InboxStatus.choices)
    message = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["inbox_file", "at", "id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status}: {self.message}"
