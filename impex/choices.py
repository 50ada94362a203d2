"""Choices of the impex domain."""

from django.db import models


class Convention(models.TextChoices):
    BSPK = "bspk", "BSPK (TYPE_VERSION_Company_YYYYMMDDHHMM.csv)"
    KORE = "kore", "Kore ({source}_{sequence}_{integration}_{API}.{mode})"
    PATTERNS = "patterns", "Patterns (names matched by the file patterns of its import groups' descriptors)"


class FileFormat(models.TextChoices):
    CSV = "csv", "CSV"
    TSV = "tsv", "TSV"
    XML = "xml", "XML"


class ColumnType(models.TextChoices):
    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    REFERENCE = "reference"


class BooleanStyle(models.TextChoices):
    YN = "Y/N", "Y / N"
    TRUE_FALSE = "true/false", "true / false"
    ONE_ZERO = "1/0", "1 / 0"


class GroupDirection(models.TextChoices):
    IMPORT = "import"
    EXPORT = "export"


class Mode(models.TextChoices):
    FULL = "FULL", "Full refresh"
    NET = "NET", "Net (new and changed)"
    DELTA = "DELTA", "Delta (upsert only)"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELLED = "cancelled"


# The only moves a job's status may make (impex.services.lifecycle.job_transition applies them, and refuses any
# other). QUEUED -> RUNNING is a claim; RUNNING -> RUNNING a takeover of a job whose worker's lease ran out;
# RUNNING -> QUEUED a job set aside (its connection was busy) or queued again (its worker died, or run again);
# ERRORED/CANCELLED -> QUEUED/RUNNING a re-run (the admin's "run again", impex_job), which finishes what it left;
# QUEUED/RUNNING -> CANCELLED a person's cancel (impex_job --cancel, the job page).
# Completed and failed jobs never move.
JOB_TRANSITIONS = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED},
    JobStatus.RUNNING: {
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.ERRORED,
        JobStatus.CANCELLED,
    },
    JobStatus.ERRORED: {JobStatus.QUEUED, JobStatus.RUNNING},
    JobStatus.CANCELLED: {JobStatus.QUEUED, JobStatus.RUNNING},
    JobStatus.COMPLETED: set(),
    JobStatus.FAILED: set(),
}
# Not final: a cancelled job keeps its files (queued, or running where it stopped) for a re-run to finish.
JOB_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
# The jobs that have stopped for now (nothing runs them): a page stops polling them.
JOB_STOPPED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.ERRORED, JobStatus.CANCELLED})
JOB_CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class JobSource(models.TextChoices):
    COMMAND = "command"
    ADMIN = "admin"
    SCAN = "scan"
    API = "api", "Pushed over the API"
    SWEEPER = "sweeper", "Sweeper (files another job left running)"


class FileKind(models.TextChoices):
    DATA = "data", "data file"
    ARCHIVE = "archive", "zip archive"


class FileStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    IMPORTED = "imported"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    UNPACKED = "unpacked"


# The only moves a file's status may make. A running file can still turn out to be a duplicate or too late
# when its job is resumed after another job imported the same name or a later sequence.
FILE_TRANSITIONS = {
    FileStatus.QUEUED: {
        FileStatus.RUNNING,
        FileStatus.WAITING,
        FileStatus.REJECTED,
        FileStatus.DUPLICATE,
        FileStatus.UNPACKED,
    },
    FileStatus.WAITING: {FileStatus.WAITING, FileStatus.RUNNING, FileStatus.REJECTED, FileStatus.DUPLICATE},
    FileStatus.RUNNING: {FileStatus.IMPORTED, FileStatus.REJECTED, FileStatus.DUPLICATE},
    FileStatus.IMPORTED: set(),
    FileStatus.REJECTED: set(),
    FileStatus.DUPLICATE: set(),
    FileStatus.UNPACKED: set(),
}
FILE_FINAL = frozenset({FileStatus.IMPORTED, FileStatus.REJECTED, FileStatus.DUPLICATE, FileStatus.UNPACKED})


class InboxStatus(models.TextChoices):
    SEEN = "seen"
    CLAIMED = "claimed"
    TAKEN = "taken", "taken into a job"
    GONE = "gone", "gone before it was taken"


# A seen file is claimed by one scanner; the claim ends with the file taken into a job, or given up (back to
# seen: the copy failed, or a lease ran out and another scanner takes over), or the file gone from the inbox.
INBOX_TRANSITIONS = {
    InboxStatus.SEEN: {InboxStatus.SEEN, InboxStatus.CLAIMED, InboxStatus.GONE},
    InboxStatus.CLAIMED: {InboxStatus.CLAIMED, InboxStatus.SEEN, InboxStatus.TAKEN, InboxStatus.GONE},
    InboxStatus.TAKEN: set(),
    InboxStatus.GONE: set(),
}


class ChunkStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


# The moves of a chunk (impex.services.queue checks each): a claim, then done, or given back to be claimed again.
CHUNK_TRANSITIONS = {
    ChunkStatus.PENDING: {ChunkStatus.RUNNING},
    ChunkStatus.RUNNING: {ChunkStatus.DONE, ChunkStatus.PENDING},
    ChunkStatus.DONE: set(),
}


class EventLevel(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class ExportTrigger(models.TextChoices):
    SCHEDULE = "schedule"
    ADMIN = "admin"
    COMMAND = "command"
    FULL_SYNC = "full_sync", "full sync"


class ExportRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped", "skipped (another run of the group was running)"


# The only moves an export run's status may make (impex.services.export_runs applies them). A queued run is
# skipped when another run of its group holds the group; a running run whose worker died (its lease ran out)
# is failed by the run that takes the group over.
EXPORT_RUN_TRANSITIONS = {
    ExportRunStatus.QUEUED: {ExportRunStatus.RUNNING, ExportRunStatus.SKIPPED, ExportRunStatus.FAILED},
    ExportRunStatus.RUNNING: {ExportRunStatus.COMPLETED, ExportRunStatus.FAILED},
    ExportRunStatus.COMPLETED: set(),
    ExportRunStatus.FAILED: set(),
    ExportRunStatus.SKIPPED: set(),
}


class WebhookEvent(models.TextChoices):
    """Events outbound webhooks are sent for (SPEC section 10)."""

    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    FILE_IMPORTED = "file.imported"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DELIVERED = "delivered"
    FAILED = "failed", "Failed (retries used up or refused)"


class ProblemKind(models.TextChoices):
    """What failed and stops work until a person acts (SPEC 8 "Nothing fails silently")."""

    IMPORT_JOB = "import-job", "import job failed or has errors"
    SEQUENCE_WAIT = "sequence-wait", "files waiting for a sequence"
    INBOX = "inbox", "the inbox cannot be scanned"
    EXPORT = "export", "scheduled export failed"
    EXPORTER = "exporter", "exporter gave up"
    WEBHOOK = "webhook", "webhook delivery given up"
    FEED_EVENT = "feed-event", "shipment event failed"
    RECORD_EVENT = "record-event", "single-record update failed"
