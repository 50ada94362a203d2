"""Import jobs, their files, chunks, events and row errors, and the ledgers the engine keeps while a file goes in."""

from django.db import models
from django.utils import timezone

from impex.choices import (
    ChunkStatus,
    EventLevel,
    FileKind,
    FileStatus,
    JobSource,
    JobStatus,
    Mode,
)
from impex.models.connections import Connection
from impex.models.descriptors import DataDescriptor, DataGroup
from impex.models.work import LeasedWork


class ImportJob(models.Model):
    """One import run over one or more files, driven by the job runner."""

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    source = models.CharField(max_length=20, choices=JobSource.choices, default=JobSource.COMMAND)
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    group = models.ForeignKey(DataGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    dry_run = models.BooleanField(default=False)
    dry_run_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="real_runs",
        help_text="The dry run whose upload this job imports for real.",
    )
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When the job was last handed to the queue.")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="A queued job set aside is queued again then.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, default="", help_text="The worker that runs the job.")
    lease_until = models.DateTimeField(null=True, blank=True, help_text="The worker's claim ends then unless renewed.")
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker started the job.")
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "lease_until"], name="importjob_lease"),
            # The job list's filters, newest first: by status, by connection (a year of hourly jobs stays fast).
            models.Index(fields=["status", "-created_at", "-id"], name="importjob_status_created"),
            models.Index(fields=["connection", "-created_at", "-id"], name="importjob_connection_created"),
            models.Index(fields=["-created_at", "-id"], name="importjob_created"),
        ]
        permissions = [
            ("run_import", "Can run imports: upload files and zips, start and re-run jobs, release waits, scan"),
            ("export_data", "Can download exports"),
        ]

    def __str__(self):
        return f"Import job #{self.pk}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ImportFile(models.Model):
    """One file of a job: where it is, what it was matched to, and what importing it did."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="files")
    # A file that waited in its own job is imported by a later one; its job (its history) stays.
    processed_by = models.ForeignKey(
        ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="processed_files"
    )
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="files")
    kind = models.CharField(max_length=10, choices=FileKind.choices, default=FileKind.DATA)
    name = models.CharField(max_length=300, db_index=True)
    path = models.CharField(
        max_length=1000, blank=True, default="", help_text="Where the file is kept, inside the hub's storage."
    )
    archive = models.CharField(max_length=300, blank=True, default="", help_text="The zip the file came in, if any.")
    descriptor = models.ForeignKey(
        DataDescriptor, null=True, blank=True, on_delete=models.SET_NULL, related_name="files"
    )
    status = models.CharField(max_length=20, choices=FileStatus.choices, default=FileStatus.QUEUED, db_index=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.DELTA)
    order_key = models.CharField(max_length=40, blank=True, default="")
    sequence = models.PositiveIntegerField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, default="")
    size = models.PositiveBigIntegerField(default=0)
    header = models.JSONField(default=list, blank=True, help_text="The columns the file has, as read when it started.")
    preview = models.JSONField(
        default=dict, blank=True, help_text="A dry run's findings: the first rows' changes and what would be retired."
    )
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    created = models.PositiveBigIntegerField(default=0)
    updated = models.PositiveBigIntegerField(default=0)
    unchanged = models.PositiveBigIntegerField(default=0)
    retired = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    wait_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]

    def __str__(self):
        return self.name


class ImportChunk(LeasedWork):
    """A range of rows of one file, claimed by one worker at a time and applied as a unit.

    Leased work (impex.services.queue, CHUNKS in impex.services.imports): claimed_by stays once it is done, to show
    which worker applied it; attempts counts the claims (the workers that started it).
    """

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_record = models.PositiveBigIntegerField(help_text="0-based index of the first data record.")
    record_count = models.PositiveBigIntegerField()
    first_byte = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Where the chunk's first record starts in the file (CSV and TSV)."
    )
    status = models.CharField(max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    rows_done = models.PositiveBigIntegerField(default=0)
    created = models.PositiveBigIntegerField(default=0)
    updated = models.PositiveBigIntegerField(default=0)
    unchanged = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["file", "index"]
        constraints = [models.UniqueConstraint(fields=["file", "index"], name="importchunk_key")]
        # /metrics counts the chunks not done (and the oldest due) at every scrape: the done ones, nearly all, are
        # left out of the index.
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                name="importchunk_open",
                condition=models.Q(status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING]),
            )
        ]

    def __str__(self):
        return f"{self.file_id} chunk {self.index}"


class ImportEvent(models.Model):
    """One thing that happened to a job or one of its files: the job's log, a row per line, never rewritten."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="events")
    file = models.ForeignKey(ImportFile, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, choices=EventLevel.choices, default=EventLevel.INFO)
    kind = models.CharField(max_length=30)
    message = models.TextField()
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["job", "at", "id"]
        indexes = [models.Index(fields=["job", "at"], name="importevent_job_at")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.message}"


class RowError(models.Model):
    """A row refused while importing a file, or the reason a whole file was rejected (row is null)."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="errors")
    row = models.PositiveBigIntegerField(null=True, blank=True)
    column = models.CharField(max_length=100, blank=True, default="")
    value = models.TextField(blank=True, default="")
    message = models.TextField()
    external_id = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["file", "row", "id"]

    def __str__(self):
        return f"row {self.row}: {self.message}"


class ImportedFileName(models.Model):
    """The ledger of file names imported per connection: each name is imported once."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="imported_names")
    name = models.CharField(max_length=300)
    content_hash = models.CharField(max_length=64)
    file = models.ForeignKey(ImportFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-imported_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "name"], name="importedfilename_once")]

    def __str__(self):
        return self.name


class FileKey(models.Model):
    """A key a FULL file sends: what its connection still has, so that the rest is retired when it finishes."""

    # No database constraint: a million keys per file would each pay a foreign-key check at commit.
    # The engine deletes a file's keys when it finishes; the ORM cascade still applies.
    # Only the index on file: the retirement reads a file's keys whole (a hash join on PostgreSQL), and a key may be
    # written twice (a repeated record's, by two chunks) without harm, so a unique index on (file, key) would only
    # cost a third of a FULL file's ledger time. A chunked file's chunks write their keys as they apply.
    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    key = models.CharField(max_length=400)

    def __str__(self):
        return self.key


class FileDuplicate(models.Model):
    """A record whose key an earlier record of the same file has: found when the file starts, refused alone."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    index = models.PositiveBigIntegerField(help_text="0-based index of the repeating record.")
    first_row = models.PositiveBigIntegerField(help_text="Row of the record that has the key first.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file", "index"], name="fileduplicate_key")]

    def __str__(self):
        return f"{self.file_id} record {self.index}"


class DeferredRow(models.Model):
    """A row held back because it names a record of its own file that comes later (e.g. a parent customer)."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="+")
    row = models.PositiveBigIntegerField()
    index = models.PositiveBigIntegerField()
    values = models.JSONField()

    class Meta:
        ordering = ["file", "index"]

    def __str__(self):
        return f"{self.file_id} row {self.row}"
