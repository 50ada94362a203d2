"""The checks models run on their fields: cron expressions, folder locations (SPEC 13), export file names."""

import os
import re
import string
from datetime import UTC, datetime
from urllib.parse import urlsplit

from croniter import croniter
from django.core.exceptions import ValidationError
from django.utils import timezone

from impex.exceptions import ConfigurationError, LocationRefused
from impex.locations import hub_folder, local_refusal, parse_location
from impex.storage import ftp_host_refusal, sftp_host_refusal, storage_for

LOCATION_SHAPES = (
    "a folder path, s3://bucket/prefix, sftp://[user@]host[:port]/path, ftp://[user@]host[:port]/path or "
    "ftps://[user@]host[:port]/path"
)
# Shown under every location field: where a local folder may lie and which SFTP and FTP hosts are allowed (SPEC 13).
LOCATION_RULES = (
    " A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS,"
    " an FTP or FTPS host in FTP_HOSTS."
)
# The schemes of servers the hub logs in to: their name, default port, and the check of their host.
HOST_SCHEMES = {
    "sftp": ("SFTP", 22, sftp_host_refusal),
    "ftp": ("FTP", 21, ftp_host_refusal),
    "ftps": ("FTPS", 21, ftp_host_refusal),
}


def cron_errors(value: str) -> list[str]:
    """Check a cron expression of five fields (minute hour day month weekday)."""
    if not value:
        return []
    if len(value.split()) != 5 or not croniter.is_valid(value):
        return [
            f"'{value}' is not a cron expression of five fields (minute hour day month weekday), e.g. */15 * * * *."
        ]
    return []


def location_errors(value: str, *, what: str = "location", resolve: bool = True) -> list[str]:
    """Check a folder location: its shape, and that the hub may use it (SPEC 13); whether it exists is the scan's.

    A local folder must lie under the allowed roots, links followed (impex.locations); an SFTP host must be listed in
    SFTP_HOSTS (an FTP or FTPS one in FTP_HOSTS) and, unless resolve is off, resolve to an address the hub may call
    (impex.outbound).
    """
    # C:\inbox is a Windows folder (a scheme has two letters or more), and old:inbox a folder name:
    # only '//' after a scheme, or s3:, sftp:, ftp: and ftps:, make it a URL.
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):(//)?", value)
    if match is None:
        return _folder_errors(value, what=what)
    scheme, slashes = match.group(1).lower(), match.group(2)
    if scheme == "file" and slashes:  # file:///path: the folder path, as every use reads it (parse_location)
        try:
            return _folder_errors(parse_location(value).path, what=what)
        except ConfigurationError as exc:
            return [f"The {what} cannot be used: {exc}."]
    if scheme not in ("s3", *HOST_SCHEMES):
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
        try:  # the bucket's and the decoded prefix's rules, as every use applies them (no request is sent)
            storage_for(value)
        except (ConfigurationError, LocationRefused) as exc:
            return [f"The {what} cannot be used: {exc}."]
        return []
    if url.password is not None:
        return [f"Keep the password out of the {what} URL: it would be stored and shown in plain text."]
    kind, default_port, host_refusal = HOST_SCHEMES[scheme]
    form = f"{scheme}://[user@]host[:port]/path"
    if not url.hostname:
        return [f"An {kind} {what} needs a host: {form}."]
    try:
        port = url.port
    except ValueError:
        port = 0
    if port == 0:
        return [f"The port in '{url.netloc}' must be a number from 1 to 65535: {form}."]
    if not url.path:
        return [f"An {kind} {what} needs the folder after the host: {form}."]
    refusal = host_refusal(url.hostname, port or default_port, resolve=resolve)
    return [f"The {what} cannot be used: {refusal}."] if refusal else []


def _folder_errors(value: str, *, what: str) -> list[str]:
    """Check a local folder: an absolute path, or a folder name inside the hub's storage; both confined."""
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
