"""Data descriptors (how a kind of file is laid out), their columns, and the groups of them imported or exported
together."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models

from impex.choices import (
    BooleanStyle,
    ColumnType,
    Convention,
    FileFormat,
    GroupDirection,
)
from impex.entities import entity_choices
from impex.models.connections import Connection
from impex.models.validation import (
    EXPORT_NAME_DEFAULT,
    EXPORT_NAME_FIELDS,
    LOCATION_RULES,
    LocationFieldsMixin,
    cron_errors,
    export_name_errors,
    export_name_render,
)


class DataDescriptor(models.Model):
    """How one kind of file is laid out and which entity it acts on."""

    code = models.CharField(
        max_length=100, unique=True, help_text="e.g. KS_CUSTOMERS; the TYPE or API part of file names."
    )
    name = models.CharField(max_length=200, blank=True, default="")
    entity = models.CharField(max_length=40, choices=entity_choices)
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
    true_words = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Words read as true, separated by commas (e.g. yes); the first is written. Empty: the style above.",
    )
    false_words = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Words read as false, separated by commas (e.g. no); the first is written. Empty: the style above.",
    )
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
    export_only = models.BooleanField(
        default=False,
        help_text="A layout the hub writes for other systems (e.g. ORDER-STATUS): files of it are never imported, "
        "and it may have columns only the hub sets (an order's state, updated_at).",
    )
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
    field = models.CharField(
        max_length=100, blank=True, default="", help_text="Field of the entity it fills (empty for an ignored column)."
    )
    type = models.CharField(max_length=20, choices=ColumnType.choices, default=ColumnType.STRING)
    required = models.BooleanField(default=False)
    is_key = models.BooleanField(default=False)
    choices = models.CharField(
        max_length=500, blank=True, default="", help_text="Allowed values, comma separated (choice columns)."
    )
    ignored = models.BooleanField(
        default=False, help_text="The file has this column, and the import reads past it (nothing is stored)."
    )

    class Meta:
        ordering = ["descriptor", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["descriptor", "name"], name="descriptorcolumn_name"),
            models.UniqueConstraint(
                fields=["descriptor", "field"], condition=~models.Q(field=""), name="descriptorcolumn_field"
            ),
        ]

    def __str__(self):
        return self.name


class DataGroup(LocationFieldsMixin, models.Model):
    """A named set of descriptors imported together (or the one descriptor of an export, maybe on a schedule)."""

    code = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    direction = models.CharField(max_length=10, choices=GroupDirection.choices, default=GroupDirection.IMPORT)
    descriptors = models.ManyToManyField(DataDescriptor, related_name="groups")
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="groups")
    schedule_enabled = models.BooleanField(
        "Export on schedule",
        default=False,
        help_text="Export groups: write the file to the destination on the schedule below.",
    )
    interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Minutes between two scheduled exports: 1 to 44640 (a month)."
    )
    cron = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="A cron expression (minute hour day month weekday, in UTC) used instead of the interval, "
        "e.g. 0 2 * * *.",
    )
    destination = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Where scheduled exports are written: a folder path, s3://bucket/prefix, sftp://, ftp:// or "
        "ftps://[user@]host[:port]/path; empty: the connection's outbox, or IMPEX_ROOT/outbox/<code> "
        "without a connection." + LOCATION_RULES,
    )
    file_name_pattern = models.CharField(
        max_length=200,
        default=EXPORT_NAME_DEFAULT,
        help_text="The name of each file written; placeholders: "
        + ", ".join(f"{{{name}}} ({what})" for name, what in EXPORT_NAME_FIELDS.items())
        + ".",
    )
    incremental = models.BooleanField(
        default=False,
        help_text="Write only the records changed since the last successful scheduled run. The first run, "
        "and the first after the destination changes, write every record.",
    )
    write_empty = models.BooleanField(
        "Write empty files",
        default=False,
        help_text="Write a file (its header only) when an incremental run finds no changed record.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    LOCATION_FIELDS = ("destination",)
    SCHEDULE_FIELDS = (
        "schedule_enabled",
        "interval_minutes",
        "cron",
        "destination",
        "file_name_pattern",
        "incremental",
        "write_empty",
    )

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.name

    def clean(self):
        """Check an export group's schedule, destination and file name (the admin relies on it)."""
        errors = {
            "file_name_pattern": export_name_errors(self.file_name_pattern, code=self.code or "CODE"),
            "interval_minutes": self._interval_errors(),
            "cron": cron_errors(self.cron),
            "direction": self._direction_errors(),
            "schedule_enabled": self._schedule_errors(),
        }
        errors = {field: messages for field, messages in errors.items() if messages}
        if errors:
            raise ValidationError(errors)

    def _interval_errors(self) -> list[str]:
        limit = Connection.MAX_INTERVAL_MINUTES
        if self.interval_minutes is not None and not 1 <= self.interval_minutes <= limit:
            return [f"Export every 1 to {limit} minutes (a month)."]
        return []

    def _direction_errors(self) -> list[str]:
        # On direction, which every form of a group has (the admin shows the schedule to export groups only).
        if self.schedule_enabled and self.direction != GroupDirection.EXPORT:
            return ["Only export groups run on a schedule: turn 'Export on schedule' off first."]
        return []

    def _schedule_errors(self) -> list[str]:
        if not self.schedule_enabled or self.direction != GroupDirection.EXPORT:
            return []
        if self.interval_minutes and self.cron:
            return ["Give either an interval in minutes or a cron expression, not both."]
        if not self.interval_minutes and not self.cron:
            return ["A scheduled export needs an interval in minutes or a cron expression."]
        return []

    def export_file_name(self, *, at: datetime, run: int, ext: str) -> str:
        """Name the file of the run started at (its number run) by the group's pattern."""
        return export_name_render(self.file_name_pattern, code=self.code, at=at, run=run, ext=ext)
