"""Connections, data descriptors and groups, import jobs with their files, chunks and row errors."""

from django.db import models
from django.utils import timezone

from impex.choices import (
    BooleanStyle,
    ChunkStatus,
    ColumnType,
    Convention,
    Entity,
    FileFormat,
    FileStatus,
    GroupDirection,
    JobSource,
    JobStatus,
    Mode,
)


class Connection(models.Model):
    """A reference system that sends files (and receives exports), with its naming convention."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    convention = models.CharField(max_length=10, choices=Convention.choices)
    company_name = models.CharField(
        max_length=100, blank=True, default="", help_text="BSPK: CamelCase company name in file names."
    )
    integration_id = models.CharField(
        max_length=100, blank=True, default="", help_text="Kore: integration id in file names."
    )
    inbox = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Folder path or s3:// / sftp:// URL; empty: IMPEX_ROOT/<code>/inbox.",
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Naive datetimes in files are read in this zone."
    )
    contacts = models.TextField(blank=True, default="", help_text="E-mail addresses, comma separated.")
    interval_minutes = models.PositiveIntegerField(default=5, help_text="How often the inbox is scanned.")
    next_expected_sequence = models.PositiveIntegerField(
        null=True, blank=True, help_text="Kore: the sequence the next file must carry."
    )
    sequence_wait_alert_minutes = models.PositiveIntegerField(
        default=60, help_text="Kore: tell the contacts when a file waits this long."
    )
    full_window_start = models.TimeField(
        null=True, blank=True, help_text="Hold FULL files until this time (off-hours window start)."
    )
    full_window_end = models.TimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code

    @property
    def contact_list(self) -> list[str]:
        return [c.strip() for c in self.contacts.replace(";", ",").split(",") if c.strip()]


class DataDescriptor(models.Model):
    """How one kind of file is laid out and which entity it acts on."""

    code = models.CharField(
        max_length=100, unique=True, help_text="e.g. KS_CUSTOMERS; the TYPE or API part of file names."
    )
    name = models.CharField(max_length=200, blank=True, default="")
    entity = models.CharField(max_length=40, choices=Entity.choices)
    convention = models.CharField(max_length=10, choices=Convention.choices, blank=True, default="")
    format = models.CharField(max_length=10, choices=FileFormat.choices, default=FileFormat.CSV)
    delimiter = models.CharField(max_length=2, default=",", help_text="Use \\t for tab.")
    encoding = models.CharField(max_length=40, default="utf-8")
    has_header = models.BooleanField(default=True)
    file_pattern = models.CharField(
        max_length=200, blank=True, default="", help_text="Glob the file names must match, e.g. *_KS_ORDERS.*"
    )
    precedence = models.PositiveIntegerField(
        default=100, help_text="Lower is imported first for equal file order keys."
    )
    date_format = models.CharField(
        max_length=40, blank=True, default="", help_text="strftime format; empty: YYYY-MM-DD."
    )
    datetime_format = models.CharField(
        max_length=40, blank=True, default="", help_text="strftime format; empty: ISO 8601."
    )
    boolean_style = models.CharField(max_length=12, choices=BooleanStyle.choices, default=BooleanStyle.TRUE_FALSE)
    xml_root = models.CharField(max_length=100, default="records")
    xml_record = models.CharField(max_length=100, default="record")
    max_error_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Reject the file past this many bad rows."
    )
    max_error_ratio = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="Reject the file past this share of bad rows (0-1).",
    )
    builtin = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["precedence", "code"]

    def __str__(self):
        return self.code

    @property
    def delimiter_char(self) -> str:
        if self.format == FileFormat.TSV or self.delimiter in ("\\t", "tab", "TAB"):
            return "\t"
        return self.delimiter or ","


class DescriptorColumn(models.Model):
    """One column of a descriptor: its name in the file, the field it fills, and its type."""

    descriptor = models.ForeignKey(DataDescriptor, on_delete=models.CASCADE, related_name="columns")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100, help_text="Column header (or XML element name).")
    field = models.CharField(max_length=100, help_text="Field of the entity it fills.")
    type = models.CharField(max_length=20, choices=ColumnType.choices, default=ColumnType.STRING)
    required = models.BooleanField(default=False)
    is_key = models.BooleanField(default=False)
    choices = models.CharField(
        max_length=500, blank=True, default="", help_text="Allowed values, comma separated (choice columns)."
    )

    class Meta:
        ordering = ["descriptor", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["descriptor", "name"], name="descriptorcolumn_name"),
            models.UniqueConstraint(fields=["descriptor", "field"], name="descriptorcolumn_field"),
        ]

    def __str__(self):
        return f"{self.descriptor_id}.{self.name}"


class DataGroup(models.Model):
    """A named set of descriptors imported together (or the one descriptor of an export)."""

    code = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    direction = models.CharField(max_length=10, choices=GroupDirection.choices, default=GroupDirection.IMPORT)
    descriptors = models.ManyToManyField(DataDescriptor, related_name="groups")
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="groups")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.name


class ImportJob(models.Model):
    """One import run over one or more files, driven by the job runner."""

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    source = models.CharField(max_length=20, choices=JobSource.choices, default=JobSource.COMMAND)
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    group = models.ForeignKey(DataGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    dry_run = models.BooleanField(default=False)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    log = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
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
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="files")
    name = models.CharField(max_length=300, db_index=True)
    path = models.CharField(max_length=1000, blank=True, default="", help_text="Where the runner reads the file.")
    archive = models.CharField(max_length=300, blank=True, default="", help_text="The zip the file came in, if any.")
    descriptor = models.ForeignKey(
        DataDescriptor, null=True, blank=True, on_delete=models.SET_NULL, related_name="files"
    )
    status = models.CharField(max_length=20, choices=FileStatus.choices, default=FileStatus.PENDING, db_index=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.DELTA)
    order_key = models.CharField(max_length=40, blank=True, default="")
    sequence = models.PositiveIntegerField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, default="")
    size = models.PositiveBigIntegerField(default=0)
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


class ImportChunk(models.Model):
    """A range of rows of one file, claimed and applied as a unit (resume point, later shared by workers)."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_record = models.PositiveBigIntegerField(help_text="0-based index of the first data record.")
    record_count = models.PositiveBigIntegerField()
    status = models.CharField(max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    claimed_by = models.CharField(max_length=100, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    created = models.PositiveBigIntegerField(default=0)
    updated = models.PositiveBigIntegerField(default=0)
    unchanged = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["file", "index"]
        constraints = [models.UniqueConstraint(fields=["file", "index"], name="importchunk_key")]

    def __str__(self):
        return f"{self.file_id} chunk {self.index}"


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
    """Keys a file has applied so far: catches duplicate keys across batches and drives FULL retirement."""

    # No database constraint: a million keys per file would each pay a foreign-key check at commit.
    # The engine deletes a file's keys when it finishes; the ORM cascade still applies.
    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    key = models.CharField(max_length=400)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file", "key"], name="filekey_key")]

    def __str__(self):
        return self.key


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
