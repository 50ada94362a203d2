"""Turn a file or zip uploaded in the browser into a queued import job, and a dry run into a real one."""

import fnmatch
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from impex import naming
from impex.choices import Convention, FileStatus, GroupDirection, JobSource, JobStatus
from impex.exceptions import ArchiveError, FileRejected, ImpexError, LocationRefused
from impex.models import ApiToken, Connection, DataDescriptor, DataGroup, ImportFile, ImportJob, Problem
from impex.services.archive import is_zip_start, zip_member_names
from impex.services.jobs import candidate_descriptors, file_match, job_create
from impex.services.lifecycle import job_enqueue, job_rerun
from impex.services.problems import problem_resolve
from impex.storage import file_exists, local_copy, resolve_path, temporary_folder


class UploadRefused(ImpexError):
    """An upload that cannot become a job (too big, empty, the wrong group, unmatched files); nothing was stored."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# A refused upload lists at most this many of its files' problems (a zip may hold a thousand files).
PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class ExpectedName:
    """What the name of a file of one descriptor of a group looks like: an example, or the pattern it must match."""

    code: str
    example: str = ""
    pattern: str = ""

    def __str__(self) -> str:
        if self.example:  # a built-in descriptor's pattern (SPECIAL-ORDERS_*) says nothing its example does not
            return f"{self.code} ({self.example})"
        if self.pattern:
            return f"{self.code} (names matching {self.pattern})"
        return f"{self.code} (named by the connection's convention)"


def upload_limit() -> int:
    """Return the largest upload the browser may send, in bytes."""
    return settings.IMPEX_MAX_UPLOAD_BYTES


def upload_check(*, upload: UploadedFile, group: DataGroup | None, connection: Connection | None = None) -> None:
    """Refuse an upload that cannot become a job that imports, before any of it is stored.

    Too big or empty, sent to an export group, a .zip that is not a zip, an empty or unsafe zip, a file whose name
    does not give it a descriptor of the group (no group: of the connection) for the connection: raises UploadRefused
    naming each problem. What only the import can tell (rows, duplicates by content) is left to the job.
    """
    if group is not None and group.direction != GroupDirection.IMPORT:
        raise UploadRefused(f"{group.code} is an export group: upload to an import group.")
    if upload.size == 0:
        raise UploadRefused(f"{upload.name} is empty.")
    if upload.size > upload_limit():
        raise UploadRefused(upload_too_big(name=upload.name, size=upload.size))
    names = upload_names(upload=upload)
    if group is None and connection is None:
        return  # the job finds each file's connection by its name
    problems = []
    cache: dict = {}
    for name in names:
        try:
            upload_name_match(name=name, group=group, connection=connection, cache=cache)
        except FileRejected as exc:
            problems.append(str(exc))
    if len(problems) > PROBLEMS_SHOWN:
        problems[PROBLEMS_SHOWN:] = [f"and {len(problems) - PROBLEMS_SHOWN} more files like these."]
    if problems:
        raise UploadRefused(*problems)


def upload_names(*, upload: UploadedFile) -> list[str]:
    """Return the names of the files an upload holds: its own, or a zip's (read from its central directory only).

    Raises UploadRefused for a .zip that is not a zip, and for a zip that is empty, damaged or unsafe (the checks
    of extract_zip on its entries: paths, links, counts, declared sizes).
    """
    name = naming.base_name(upload.name)
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    if not is_zip_start(head):
        if name.lower().endswith(".zip"):
            raise UploadRefused(
                f"{name} is not a zip archive (its content is not a zip's): upload the zip itself, "
                "or a data file under its own name."
            )
        return [name]
    # Spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE: read from there; a small one is read where it is.
    source = Path(upload.temporary_file_path()) if hasattr(upload, "temporary_file_path") else upload.file
    try:
        names = zip_member_names(
            source,
            max_entries=settings.IMPEX_MAX_ZIP_ENTRIES,
            max_total_bytes=settings.IMPEX_MAX_ZIP_BYTES,
            max_file_bytes=settings.IMPEX_MAX_FILE_BYTES,
            max_ratio=settings.IMPEX_MAX_ZIP_RATIO,
        )
    except ArchiveError as exc:
        raise UploadRefused(f"{name}: {exc}.") from None
    if not names:
        raise UploadRefused(f"{name} holds no files.")
    return names


def upload_name_match(
    *, name: str, group: DataGroup | None, connection: Connection | None, cache: dict | None = None
) -> DataDescriptor:
    """Return the descriptor of the group a file of this name gets, as its job will match it; else FileRejected.

    group: None for any descriptor of the connection's (a push without a group).
    connection: the one chosen, or None to find it as the job does (the group's, else the one the name carries).
    The reason names the real problem: a name of another convention than the connection's, a name no descriptor
    of the group claims (with the names the group expects), else the part of the name that is wrong.
    cache: a dict kept across the names of one upload.
    """
    probe = ImportFile(name=naming.base_name(name), connection=connection)
    try:
        file_match(probe, group=group, candidates=cache, save=False)
    except FileRejected as exc:
        raise FileRejected(_why_not_matched(probe, group=group, reason=str(exc), cache=cache)) from None
    return probe.descriptor


def upload_expected_names(*, group: DataGroup | None, connection: Connection | None) -> list[ExpectedName]:
    """Return what the names of the files of each descriptor of an import group (None: of the connection's
    descriptors) look like for the connection."""
    if group is None:
        descriptors = candidate_descriptors(connection=connection, group=None) if connection is not None else []
    else:
        connection = connection or group.connection
        descriptors = group.descriptors.all()
    return [
        _expected(descriptor, connection=connection)
        for descriptor in sorted(descriptors, key=lambda d: (d.precedence, d.code))
        if not descriptor.export_only
    ]


def upload_expectations() -> dict[str, dict[str, dict]]:
    """Return, per import group and per connection that may be chosen with it ("": none), the connection the files
    come from ("" when their names say it) and the names the group expects."""
    groups = DataGroup.objects.filter(direction=GroupDirection.IMPORT).select_related("connection")
    connections = list(Connection.objects.order_by("code"))
    every: dict[str, dict[str, dict]] = {}
    for group in groups.prefetch_related("descriptors"):
        choices = [group.connection] if group.connection is not None else connections
        every[str(group.pk)] = {
            str(chosen.pk) if chosen is not None else "": {
                "from": (chosen or group.connection).code if (chosen or group.connection) else "",
                "names": [
                    asdict(expected) | {"text": str(expected)}
                    for expected in upload_expected_names(group=group, connection=chosen)
                ],
            }
            for chosen in [None, *choices]
        }
    return every


def _expected(descriptor: DataDescriptor, *, connection: Connection | None) -> ExpectedName:
    """Return what a file of the descriptor is named like, sent by the connection (or by any)."""
    if not descriptor.convention and descriptor.file_pattern:
        return ExpectedName(code=descriptor.code, pattern=descriptor.file_pattern)  # claimed by its pattern alone
    convention = connection.convention if connection is not None else descriptor.convention
    if convention == naming.BSPK:
        company = connection.company_name if connection is not None and connection.company_name else "CompanyName"
        made = timezone.localtime().strftime("%Y%m%d%H%M")
        example = f"{descriptor.code}_{naming.BSPK_VERSION}_{company}_{made}{naming.BSPK_EXTENSION}"
        return ExpectedName(code=descriptor.code, example=example, pattern=descriptor.file_pattern)
    if convention == naming.KORE:
        integration = connection.integration_id if connection is not None and connection.integration_id else "INT"
        example = f"DT_0000001_{integration}_{descriptor.code}.{naming.KORE_MODES[-1]}"
        return ExpectedName(code=descriptor.code, example=example, pattern=descriptor.file_pattern)
    return ExpectedName(code=descriptor.code, pattern=descriptor.file_pattern)


def _why_not_matched(probe: ImportFile, *, group: DataGroup | None, reason: str, cache: dict | None) -> str:
    """Say why a name gets no descriptor of the group: the real problem rather than the parser's first complaint."""
    cache = {} if cache is None else cache
    name, connection = probe.name, probe.connection
    looks = naming.guess_convention(name)
    if connection is not None and looks is not None and looks != connection.convention:
        return (
            f"{name} is a {_convention_word(looks)} name, but connection {connection.code} uses the "
            f"{_convention_word(connection.convention)} convention"
        )
    key = ("why", group.pk if group is not None else None)
    if key not in cache:
        descriptors = (
            group.descriptors.all() if group is not None else candidate_descriptors(connection=connection, group=None)
        )
        cache[key] = (
            [d.file_pattern for d in descriptors if d.file_pattern and not d.export_only],
            list(DataDescriptor.objects.values_list("code", flat=True)),
        )
    patterns, codes = cache[key]
    claimed = any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    # A name that carries a known type (SPECIAL-ORDERS, KS_ORDERS) is near its convention: the parser says which
    # part is wrong. Any other name (customers.csv) is simply not one the group expects.
    parts = f"_{name.replace('.', '_')}_"
    carries_type = any(f"_{code}_" in parts for code in codes)
    if looks is None and not claimed and not carries_type:
        expected = upload_expected_names(group=group, connection=connection)
        whose, none = (
            (f"group {group.code}", "the group holds no descriptor")
            if group is not None
            else (f"connection {connection.code}", "the connection has no descriptor to import with")
        )
        listed = ", ".join(map(str, expected)) or f"nothing ({none})"
        return f"no descriptor of {whose} claims {name}; it expects: {listed}"
    return reason


def _convention_word(convention: str) -> str:
    """Return the short name of a naming convention (BSPK, Kore)."""
    try:
        return Convention(convention).label.split(" (")[0]
    except ValueError:
        return convention.capitalize()


def upload_too_big(*, name: str, size: int | None) -> str:
    """Return why an upload over the limit is refused (size None: it was stopped while it streamed in)."""
    said = f"{name} is {filesizeformat(size)}" if size is not None else f"{name} was stopped and nothing of it kept"
    return (
        f"{said}; an upload may be up to {filesizeformat(upload_limit())} (IMPEX_MAX_UPLOAD_BYTES). "
        "Put bigger files in the connection's inbox."
    )


def job_upload(
    *,
    upload: UploadedFile,
    group: DataGroup | None,
    connection: Connection | None,
    dry_run: bool,
    user: str,
    source: str = JobSource.ADMIN,
) -> ImportJob:
    """Store an uploaded (or pushed) file or zip as a new job and queue it; it runs in the cluster."""
    upload_check(upload=upload, group=group, connection=connection)
    with temporary_folder() as folder:
        if hasattr(upload, "temporary_file_path"):
            path = Path(upload.temporary_file_path())
        else:
            path = Path(folder) / "upload"
            with open(path, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
        with transaction.atomic():
            job = job_create(
                paths=[path],
                names=[upload.name],
                connection=connection,
                group=group,
                dry_run=dry_run,
                source=source,
                created_by=user,
            )
            verb = "pushed" if source == JobSource.API else "uploaded"
            job_enqueue(job=job, reason=f"{verb} by {user}" if user else verb)
    return job


def push_group(*, code: str, connection: Connection) -> DataGroup:
    """Return the import group of this code that the connection may push to (its own, or one of no connection).

    Raises UploadRefused otherwise; another connection's group is refused as if it did not exist.
    """
    mine = Q(connection=connection) | Q(connection__isnull=True)
    group = DataGroup.objects.filter(mine, code=code).first()
    if group is not None and group.direction != GroupDirection.IMPORT:
        raise UploadRefused(f"{code} is an export group: push to an import group, or to none.")
    if group is None:
        allowed = DataGroup.objects.filter(mine, direction=GroupDirection.IMPORT).order_by("code")
        codes = ", ".join(allowed.values_list("code", flat=True)[:PROBLEMS_SHOWN]) or "none"
        raise UploadRefused(
            f"connection {connection.code} has no import group '{code}' (its groups and the shared ones: {codes}); "
            "without a group, each file is matched to the connection's descriptors by its name."
        )
    return group


def job_push(
    *, upload: UploadedFile, connection: Connection, group: DataGroup | None, dry_run: bool, token: ApiToken
) -> ImportJob:
    """Store a file or zip a connection pushed over the API as a new job of that connection, and queue it.

    The same checks, limits and job as an upload; the connection is the token's, whatever the names carry.
    """
    if group is not None and group.connection_id not in (None, connection.pk):
        raise UploadRefused(f"group {group.code} belongs to another connection than {connection.code}.")
    return job_upload(
        upload=upload,
        group=group,
        connection=connection,
        dry_run=dry_run,
        user=f"API token {token.prefix}",
        source=JobSource.API,
    )


def _still_kept(f: ImportFile) -> bool:
    """Tell whether a job's file is still kept; UploadRefused if it is kept where the hub may no longer go."""
    try:
        return file_exists(*resolve_path(f.path))
    except LocationRefused as exc:  # an archive or error folder saved before the location rules (impex.locations)
        raise UploadRefused(f"{f.name} cannot be read again: {exc}.") from exc


def job_run_for_real(*, job: ImportJob, user: str) -> ImportJob:
    """Queue a real import of what a dry run was given, from the dry run's own copy of the upload."""
    if not job.dry_run:
        raise UploadRefused(f"Import job #{job.pk} is not a dry run.")
    if job.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
        raise UploadRefused(f"Import job #{job.pk} is {job.status}: wait until the dry run has ended.")
    uploaded = list(job.files.filter(archive="").exclude(path="").order_by("pk"))
    if not uploaded or any(not _still_kept(f) for f in uploaded):
        raise UploadRefused(f"The upload of import job #{job.pk} is no longer kept: upload the files again.")
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        earlier = locked.real_runs.order_by("pk").first()
        if earlier is not None:
            return earlier  # a second click (or a second tab) gets the run the first one started
        with ExitStack() as stack:
            # The connection the dry run was given, or found from the file names: the same either way.
            real = job_create(
                paths=[stack.enter_context(local_copy(*resolve_path(f.path))) for f in uploaded],
                names=[f.name for f in uploaded],
                connection=job.connection,
                group=job.group,
                dry_run=False,
                source=JobSource.ADMIN,
                created_by=user,
            )
        real.dry_run_of = job
        real.save(update_fields=["dry_run_of"])
        job_enqueue(job=real, reason=f"dry run #{job.pk} run for real by {user}")
    return real


def job_run_again(*, job: ImportJob, user: str) -> ImportJob:
    """Run a job again: resume one that errored, was cancelled or whose worker died; import a failed one's files anew.

    A failed job's files have ended (imported, rejected): a new job takes the same files from where they are
    kept now (archive or error folder), so what was rejected for a reason since fixed (a connection created,
    a descriptor corrected) goes in, and what was imported is skipped as a duplicate.
    """
    if job_rerun(job=job, by=user):
        return job
    if job.status != JobStatus.FAILED or job.dry_run:
        raise UploadRefused(
            f"Import job #{job.pk} is {job.status}: only a job that failed, errored or was cancelled, or whose "
            "worker stopped renewing its lease, runs again."
        )
    files = [f for f in job.files.exclude(path="").exclude(status=FileStatus.UNPACKED).order_by("pk") if _still_kept(f)]
    if not files:
        raise UploadRefused(f"The files of import job #{job.pk} are no longer kept: upload them again.")
    with transaction.atomic(), ExitStack() as stack:
        again = job_create(
            paths=[stack.enter_context(local_copy(*resolve_path(f.path))) for f in files],
            names=[f.name for f in files],
            connection=job.connection,
            group=job.group,
            source=JobSource.ADMIN,
            created_by=user,
        )
        job_enqueue(job=again, reason=f"job #{job.pk} run again by {user}")
        # The failed job never completes: the person who ran it again acted on its problem; the new job raises its own.
        problem_resolve(
            problems=Problem.objects.filter(Q(key=f"job:{job.pk}") | Q(key__startswith=f"job:{job.pk}:")), by=user
        )
    return again
