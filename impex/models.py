"""Connections, data descriptors and groups, import jobs with their files, chunks and row errors."""

import os
import re
import string
import uuid
import zoneinfo
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from impex import naming
from impex.choices import (
    BooleanStyle,
    ChunkStatus,
    ColumnType,
    Convention,
    DeliveryStatus,
    EventLevel,
    ExportRunStatus,
    ExportTrigger,
    FileFormat,
    FileKind,
    FileStatus,
    GroupDirection,
    InboxStatus,
    JobSource,
    JobStatus,
    Mode,
    ProblemKind,
    WebhookEvent,
)
from impex.entities import entity_choices

LOCATION_SHAPES = "a folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path"
# Shown under every location field: where a local folder may lie and which SFTP hosts are allowed (SPEC 13).
LOCATION_RULES = (
    " A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS."
)


def cron_errors(value: str) -> list[str]:
    """Check a cron expression of five fields (minute hour day month weekday)."""
    if not value:
        return []
    from croniter import croniter

    if len(value.split()) != 5 or not croniter.is_valid(value):
        return [
            f"'{value}' is not a cron expression of five fields (minute hour day month weekday), e.g. */15 * * * *."
        ]
    return []


def location_errors(value: str, *, what: str = "location", resolve: bool = True) -> list[str]:
    """Check a folder location: its shape, and that the hub may use it (SPEC 13); whether it exists is the scan's.

    A local folder must lie under the allowed roots, links followed (impex.locations); an SFTP host must be listed in
    SFTP_HOSTS and, unless resolve is off, resolve to an address the hub may call (impex.outbound).
    """
    # C:\inbox is a Windows folder (a scheme has two letters or more), and old:inbox a folder name:
    # only '//' after a scheme, or s3: and sftp:, make it a URL.
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):(//)?", value)
    if match is None:
        return _folder_errors(value, what=what)
    scheme, slashes = match.group(1).lower(), match.group(2)
    if scheme not in ("s3", "sftp"):
        if slashes:
            return [f"Unknown scheme '{match.group(1)}://' in the {what}: use {LOCATION_SHAPES}."]
        return _folder_errors(value, what=what)
    url = urlsplit(value)
    if not slashes or url.query or url.fragment:
        return [f"Write the {what} as {LOCATION_SHAPES}."]
    if scheme == "s3":
        if not url.netloc or "@" in url.netloc or ":" in url.netloc:
            return [f"An S3 {what} needs a bucket name right after s3:// (s3://bucket/prefix)."]
        prefix = url.path.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            return [f"Write the S3 {what}'s prefix without '..', '.' or empty parts (s3://bucket/prefix)."]
        return []
    if url.password is not None:
        return [f"Keep the password out of the {what} URL: it would be stored and shown in plain text."]
    if not url.hostname:
        return [f"An SFTP {what} needs a host: sftp://[user@]host[:port]/path."]
    try:
        port = url.port
    except ValueError:
        port = 0
    if port == 0:
        return [f"The port in '{url.netloc}' must be a number from 1 to 65535: sftp://[user@]host[:port]/path."]
    if not url.path:
        return [f"An SFTP {what} needs the folder after the host: sftp://[user@]host[:port]/path."]
    from impex.storage import sftp_host_refusal

    refusal = sftp_host_refusal(url.hostname, port or 22, resolve=resolve)
    return [f"The {what} cannot be used: {refusal}."] if refusal else []


def _folder_errors(value: str, *, what: str) -> list[str]:
    """Check a local folder: an absolute path, or a folder name inside the hub's storage; both confined."""
    from impex.locations import hub_folder, local_refusal

    value = value.strip()
    if not value:
        return []
    if value.startswith("/"):
        refusal = local_refusal(value)
    else:
        name = value.strip("/")
        if any(part in ("", ".", "..") for part in name.split("/")):
            return [f"Write the {what} as a folder name inside the hub's storage without '..', '.' or empty parts."]
        hub = hub_folder()
        refusal = local_refusal(os.path.join(hub, name)) if hub else ""
    return [f"The {what} {refusal}."] if refusal else []


class LocationFieldsMixin:
    """Checks a model's folder locations (LOCATION_FIELDS) with the other fields, so that a field left out of a
    form (read-only without impex.change_locations) is not checked: Django would fail on an error for it."""

    LOCATION_FIELDS: tuple[str, ...] = ()

    def clean_fields(self, exclude=None):
        errors = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        for name in self.LOCATION_FIELDS:
            if name in (exclude or ()) or name in errors:
                continue
            found = location_errors(getattr(self, name), what=self._meta.get_field(name).verbose_name)
            if found:
                errors[name] = found
        if errors:
            raise ValidationError(errors)


# An export file's name: {timestamp} is the run's start in UTC (YYYYMMDDHHMMSS), {ext} the format's extension.
EXPORT_NAME_DEFAULT = "{code}_{timestamp}.{ext}"
EXPORT_NAME_FIELDS = {
    "code": "the group's code",
    "timestamp": "the run's start, UTC, YYYYMMDDHHMMSS",
    "date": "the run's start, UTC, YYYYMMDD",
    "time": "the run's start, UTC, HHMMSS",
    "run": "the run's number",
    "ext": "the format's extension: csv, tsv or xml",
}
# Each run needs a name of its own: the same name twice would be given a random suffix by the storage.
EXPORT_NAME_UNIQUE = ("timestamp", "run")
EXPORT_NAME_MAX = 200


def export_name_render(pattern: str, *, code: str, at: datetime, run: int, ext: str) -> str:
    """Fill an export file name pattern in for one run (at: its start)."""
    utc = at.astimezone(UTC)
    return pattern.format(
        code=code,
        timestamp=f"{utc:%Y%m%d%H%M%S}",
        date=f"{utc:%Y%m%d}",
        time=f"{utc:%H%M%S}",
        run=run,
        ext=ext,
    )


def export_name_errors(pattern: str, *, code: str = "CODE") -> list[str]:
    """Check an export file name pattern: known placeholders, one that differs per run, a plain file name."""
    known = ", ".join(f"{{{name}}} ({what})" for name, what in EXPORT_NAME_FIELDS.items())
    if not pattern:
        return [f"Give the file name, e.g. {EXPORT_NAME_DEFAULT}; placeholders: {known}."]
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return [f"'{pattern}' is not a file name pattern ({exc}); write a literal brace as {{{{ or }}}}."]
    used = set()
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in EXPORT_NAME_FIELDS or spec or conversion:
            return [
                f"Unknown placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} in the file name; use {known}."
            ]
        used.add(field)
    if not used.intersection(EXPORT_NAME_UNIQUE):
        return ["The file name needs {timestamp} or {run}, so that each run writes a file of its own name."]
    sample = export_name_render(pattern, code=code, at=timezone.now(), run=1, ext="csv")
    if "/" in sample or "\\" in sample or sample in (".", ".."):
        return ["The file name may not hold a folder (/ or \\): the destination says where the file goes."]
    if sample.startswith("."):
        return ["The file name may not start with a dot: receivers skip hidden files, and partial files are hidden."]
    if any(ord(c) < 32 or ord(c) == 127 for c in sample):
        return ["The file name may not hold control characters."]
    if len(sample) > EXPORT_NAME_MAX:
        return [f"The file name is too long ({len(sample)} characters; at most {EXPORT_NAME_MAX})."]
    return []


class Connection(LocationFieldsMixin, models.Model):
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
        help_text="Folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path; empty: IMPEX_ROOT/<code>/inbox."
        + LOCATION_RULES,
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Naive datetimes in files are read in this zone."
    )
    contacts = models.TextField(
        blank=True, default="", help_text="E-mail addresses told about errors, separated by commas or semicolons."
    )
    scan_enabled = models.BooleanField(
        "Scan on schedule",
        default=True,
        help_text="Scan the inbox on its schedule. Off: only 'Sync now' and impex_scan look at it.",
    )
    interval_minutes = models.PositiveIntegerField(
        default=5, help_text="Minutes between two scans of the inbox: 1 to 44640 (a month)."
    )
    scan_cron = models.CharField(
        "Scan cron",
        max_length=100,
        blank=True,
        default="",
        help_text="A cron expression (minute hour day month weekday, in UTC) used instead of the interval, "
        "e.g. */10 6-22 * * 1-5.",
    )
    archive_folder = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Where imported files are moved: a folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path;"
        " empty: IMPEX_ROOT/<code>/archive." + LOCATION_RULES,
    )
    error_folder = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Where rejected files are moved, each with a .reason.txt beside it; empty: IMPEX_ROOT/<code>/error."
        + LOCATION_RULES,
    )
    outbox = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Where scheduled exports of this connection's groups are written; empty: IMPEX_ROOT/<code>/outbox."
        + LOCATION_RULES,
    )
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

    INBOX_SHAPES = "a folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path"
    # "1 month": the longest interval a schedule in minutes is given (31 days).
    MAX_INTERVAL_MINUTES = 31 * 24 * 60
    LOCATION_FIELDS = ("inbox", "archive_folder", "error_folder", "outbox")

    class Meta:
        ordering = ["code"]
        # SPEC 13: a folder, URL or host the hub reads from, writes to or calls is set with this permission only;
        # a change permission without it leaves those fields read-only.
        permissions = [
            (
                "change_locations",
                "Can set the folders, URLs and hosts the hub reads from, writes to or calls",
            )
        ]
        # Files are routed by the company or integration id their names carry: a shared one would
        # send them all to one connection silently. clean() says which connection clashes.
        constraints = [
            models.UniqueConstraint(
                fields=["company_name"],
                condition=models.Q(convention=Convention.BSPK) & ~models.Q(company_name=""),
                name="connection_bspk_company_once",
                violation_error_message="Another BSPK connection already has this company name.",
            ),
            models.UniqueConstraint(
                fields=["integration_id"],
                condition=models.Q(convention=Convention.KORE) & ~models.Q(integration_id=""),
                name="connection_kore_integration_once",
                violation_error_message="Another Kore connection already has this integration id.",
            ),
        ]

    def __str__(self):
        return self.code

    @property
    def contact_list(self) -> list[str]:
        return [c.strip() for c in self.contacts.replace(";", ",").split(",") if c.strip()]

    def clean(self):
        """Check what a connection needs to receive files: the admin, impex_connection and services rely on it."""
        errors = {
            "company_name": self._company_errors(),
            "integration_id": self._integration_errors(),
            "timezone": self._timezone_errors(),
            "contacts": self._contact_errors(),
            "interval_minutes": self._interval_errors(),
            "scan_cron": cron_errors(self.scan_cron),
        }
        errors = {field: messages for field, messages in errors.items() if messages}
        if errors:
            raise ValidationError(errors)

    def _company_errors(self) -> list[str]:
        if self.convention != Convention.BSPK:
            return []
        if not self.company_name:
            return ["A BSPK connection needs the company name its file names carry."]
        if not naming.is_company_name(self.company_name):
            return [
                f"'{self.company_name}' cannot be the company part of a BSPK file name: "
                "use the CamelCase name of letters and digits the names carry, e.g. AcmeRetail."
            ]
        other = self._clashing(company_name=self.company_name)
        if other is not None:
            return [
                f"The BSPK connection '{other}' already has the company name '{self.company_name}', "
                "so files could reach only one of them. Use another company name or change that connection."
            ]
        return []

    def _integration_errors(self) -> list[str]:
        if self.convention != Convention.KORE:
            return []
        if not self.integration_id:
            return ["A Kore connection needs the integration id its file names carry."]
        if not naming.is_integration_id(self.integration_id):
            return [
                f"'{self.integration_id}' cannot be the integration part of a Kore file name: "
                "use letters and digits, with single - or _ between them, e.g. INT1."
            ]
        other = self._clashing(integration_id=self.integration_id)
        if other is not None:
            return [
                f"The Kore connection '{other}' already has the integration id '{self.integration_id}', "
                "so files could reach only one of them. Use another integration id or change that connection."
            ]
        return []

    def _clashing(self, **value) -> "Connection | None":
        """Return another connection of the same convention that carries the same company or integration id."""
        others = Connection.objects.filter(convention=self.convention, **value)
        if self.pk is not None:
            others = others.exclude(pk=self.pk)
        return others.order_by("code").first()

    def _timezone_errors(self) -> list[str]:
        # An empty one already fails the field's own check.
        if not self.timezone or self.timezone in zoneinfo.available_timezones():
            return []
        return [f"Unknown time zone '{self.timezone}'; use an IANA name such as Europe/London."]

    def _contact_errors(self) -> list[str]:
        errors = []
        for address in self.contact_list:
            try:
                validate_email(address)
            except ValidationError:
                errors.append(f"'{address}' is not an e-mail address; separate addresses with commas or semicolons.")
        return errors

    def _interval_errors(self) -> list[str]:
        # A negative value already fails the field's own check (a positive integer); None, its null check.
        if self.interval_minutes == 0:
            return ["Scan the inbox every 1 minute or more."]
        if self.interval_minutes is not None and self.interval_minutes > self.MAX_INTERVAL_MINUTES:
            return [f"Scan the inbox at least once a month (every {self.MAX_INTERVAL_MINUTES} minutes or less)."]
        return []


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
        help_text="Where scheduled exports are written: a folder path, s3://bucket/prefix or "
        "sftp://[user@]host[:port]/path; empty: the connection's outbox, or IMPEX_ROOT/outbox/<code> "
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


class ConnectionState(models.Model):
    """The engine's own state of a connection: the job importing its files now, and the last sequence applied."""

    connection = models.OneToOneField(Connection, primary_key=True, on_delete=models.CASCADE, related_name="state")
    # Files of one connection are applied in order, one job at a time: the holder's lease is its job's lease.
    job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_applied_sequence = models.PositiveIntegerField(null=True, blank=True)
    # BSPK files of one TYPE go in by their timestamps: TYPE -> the newest YYYYMMDDHHMM imported (SPEC section 4).
    last_applied_timestamps = models.JSONField(default=dict, blank=True)
    # One scan of the inbox at a time, whichever cluster runs it: the scanner's claim, with a lease.
    scan_by = models.CharField(max_length=200, blank=True, default="")
    scan_until = models.DateTimeField(null=True, blank=True)
    last_scan_at = models.DateTimeField(null=True, blank=True)
    last_scan_ok = models.BooleanField(null=True, blank=True)
    last_scan_message = models.TextField(blank=True, default="")
    last_scan_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self):
        return f"{self.connection_id}: job {self.job_id or '-'}, sequence {self.last_applied_sequence}"


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
        indexes = [models.Index(fields=["status", "lease_until"], name="importjob_lease")]
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
    # Only the index on file: the engine writes each key once (the scan found them distinct) and the retirement
    # reads a file's keys whole (a hash join on PostgreSQL), so a unique index on (file, key) would only cost a
    # third of a FULL file's ledger time.
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


class ApiToken(models.Model):
    """A connection's API token (SPEC section 10), kept only as its SHA-256; shown once when issued."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The token's first characters, to tell it apart."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["connection", "-created_at"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.connection_id})"


class WebhookSubscription(models.Model):
    """An outbound webhook: which events go to which URL, signed with which secret (SPEC section 10)."""

    # SPEC 13: set with impex.change_locations only (config.adminkit.LocationFieldsAdminMixin).
    LOCATION_FIELDS = ("url",)

    code = models.SlugField(max_length=100, unique=True)
    url = models.URLField(
        max_length=2000,
        help_text="Where events are POSTed (http:// or https://): a public address, unless the host is listed in "
        "IMPEX_ALLOWED_HOSTS_OUTBOUND.",
    )
    events = models.JSONField(default=list, help_text="customer.created, customer.updated, file.imported.")
    secret = models.CharField(
        max_length=200, blank=True, default="", help_text="The key of the X-Signature HMAC-SHA256 of each body."
    )
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(default=10, help_text="Give up waiting for an answer after this.")
    max_attempts = models.PositiveIntegerField(
        default=10, help_text="Tries before a delivery shows as failed (back-off 1, 2, 4 ... minutes, at most 60)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "webhook subscription"

    def __str__(self):
        return self.code


class WebhookDelivery(LeasedWork):
    """One event on its way to one subscriber: the body is fixed when the event happens, then sent until it lands."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    # Sent as X-Event-Id, the same on every attempt, so a receiver can drop repeats.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due")]

    def __str__(self):
        return f"{self.event} → {self.subscription_id} ({self.event_id})"


class WebhookAttempt(models.Model):
    """One POST of a delivery and what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    worker = models.CharField(max_length=200, blank=True, default="")
    ok = models.BooleanField(default=False)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(
        blank=True, default="", help_text="The start of the receiver's answer (for who may change the subscription)."
    )
    message = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"{self.delivery_id} #{self.number}"


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


class Problem(models.Model):
    """A failure that stops work until a person acts: open until the thing next succeeds or someone resolves it.

    Raised and resolved only by impex.services.problems; the key names the failing thing ("job:12", "scan:POS"),
    and at most one problem per key is open, so raising it again updates that one (and mails nobody again).
    """

    connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="problems",
        help_text="Empty: a hub-wide problem (mailed to ADMINS).",
    )
    kind = models.CharField(max_length=20, choices=ProblemKind.choices, db_index=True)
    key = models.CharField(max_length=300, help_text="The failing thing, e.g. job:12 or exporter:ERP:order:O-1.")
    message = models.TextField(help_text="What failed and why.")
    url = models.CharField(max_length=500, blank=True, default="", help_text="The admin page where a person acts.")
    since = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    count = models.PositiveIntegerField(default=1, help_text="How many times it was raised while open.")
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="", help_text='"auto", or the user.')
    mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-since", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(resolved_at__isnull=True), name="problem_one_open_per_key"
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.key}"
