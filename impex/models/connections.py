"""Connections (the reference systems), the engine's state of each, and their API tokens."""

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from impex import naming
from impex.choices import Convention, GroupDirection
from impex.models.validation import LOCATION_RULES, LocationFieldsMixin, cron_errors


class Connection(LocationFieldsMixin, models.Model):
    """A reference system that sends files (and receives exports), with its naming convention."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    convention = models.CharField(max_length=10, choices=Convention.choices)
    company_name = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="BSPK: CamelCase company name in file names. Not used by Kore or patterns connections.",
    )
    integration_id = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Kore: integration id in file names. Not used by BSPK or patterns connections.",
    )
    inbox = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Folder path, s3://bucket/prefix, sftp://, ftp:// or ftps://[user@]host[:port]/path; "
        "empty: IMPEX_ROOT/<code>/inbox." + LOCATION_RULES,
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
    scan_seconds = models.PositiveSmallIntegerField(
        "Scan every (seconds)",
        null=True,
        blank=True,
        help_text="Scan the inbox every 5 to 59 seconds instead of the minutes or cron above, for files taken within "
        "seconds of arriving (one cluster worker then runs the hub's scan loop). Empty: minutes or cron.",
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
        help_text="Where imported files are moved: a folder path, s3://bucket/prefix, sftp://, ftp:// or "
        "ftps://[user@]host[:port]/path; empty: IMPEX_ROOT/<code>/archive." + LOCATION_RULES,
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

    INBOX_SHAPES = "a folder path, s3://bucket/prefix, sftp://, ftp:// or ftps://[user@]host[:port]/path"
    # "1 month": the longest interval a schedule in minutes is given (31 days).
    MAX_INTERVAL_MINUTES = 31 * 24 * 60
    # Seconds between scans of a fast connection (SPEC 11): below a minute, and no faster than a scan can usefully go.
    SCAN_SECONDS = (5, 59)
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
    def scan_every(self) -> str:
        """Say how often the inbox is scanned on schedule (the admin's list and page, impex_demo)."""
        if self.scan_seconds:
            return f"every {self.scan_seconds} s"
        if self.scan_cron:
            return f"cron {self.scan_cron}"
        return f"every {self.interval_minutes} min"

    @property
    def contact_list(self) -> list[str]:
        return [c.strip() for c in self.contacts.replace(";", ",").split(",") if c.strip()]

    def import_groups(self):
        """Return the import groups of this connection: a patterns connection's file names match their descriptors."""
        if self.pk is None:
            return self._meta.get_field("groups").related_model.objects.none()  # no relation to follow yet
        return self.groups.filter(direction=GroupDirection.IMPORT).order_by("code")

    def groups_errors(self, groups) -> list[str]:
        """Check the import groups a connection is to have (a patterns connection's must hold file patterns)."""
        errors = []
        for group in groups:
            if group.direction != GroupDirection.IMPORT:
                errors.append(f"{group.code} is an export group: a connection's file names match import groups only.")
            elif group.connection_id not in (None, self.pk):
                errors.append(
                    f"The group {group.code} belongs to the connection {group.connection}: "
                    "a group's files come from one connection. Take it off that connection first."
                )
        # A patterns connection without groups is allowed: its uploads and imports name a group; its scans need one.
        if self.convention != Convention.PATTERNS or errors or not groups:
            return errors
        patterned = [g for g in groups if any(d.file_pattern and not d.export_only for d in g.descriptors.all())]
        if not patterned:
            codes = ", ".join(g.code for g in groups)
            return [
                f"No descriptor of {codes} has a file pattern, so no file name could match: give the descriptors "
                "their file patterns (e.g. customers_export*.csv), or choose another group."
            ]
        return []

    def clean(self):
        """Check what a connection needs to receive files: the admin, impex_connection and services rely on it."""
        errors = {
            "company_name": self._company_errors(),
            "integration_id": self._integration_errors(),
            "timezone": self._timezone_errors(),
            "contacts": self._contact_errors(),
            "interval_minutes": self._interval_errors(),
            "scan_cron": cron_errors(self.scan_cron),
            "scan_seconds": self._scan_seconds_errors(),
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

    def _scan_seconds_errors(self) -> list[str]:
        low, high = self.SCAN_SECONDS
        if self.scan_seconds is not None and not low <= self.scan_seconds <= high:
            return [
                f"Scan every {low} to {high} seconds, or leave it empty to scan by minutes or cron "
                f"({self.scan_seconds} is outside; for a minute or more use the interval in minutes)."
            ]
        return []


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


class ScanLoop(models.Model):
    """The hub's one scan loop (impex.services.scan_loop): which worker runs it, since when, and until when its
    lease lasts unless renewed. One row; a loop takes it with one conditional UPDATE."""

    holder = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"scan loop: {self.holder or 'none'}"


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
