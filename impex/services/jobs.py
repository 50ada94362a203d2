"""Create import jobs from files and zips, unpack zips, match each file to its connection and descriptor."""

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from impex import naming
from impex.choices import FileKind, FileStatus, GroupDirection, JobSource, Mode
from impex.exceptions import ArchiveError, FileNameError, FileRejected, LocationRefused
from impex.models import (
    Connection,
    DataDescriptor,
    DataGroup,
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportFile,
    ImportJob,
    RowError,
)
from impex.services.archive import extract_zip, is_zip
from impex.services.descriptors import descriptor_claiming
from impex.services.lifecycle import file_transition
from impex.storage import (
    Folder,
    HashingReader,
    adopt_file,
    delete_file,
    folder_at,
    hub_storage,
    local_copy,
    save_file,
    temporary_folder,
)


def job_prefix(job: ImportJob | int) -> str:
    """Return where a job's own copies of its files are kept in the hub's storage (given the job or its id)."""
    return f"jobs/{job if isinstance(job, int) else job.pk}"


FOLDER_FIELDS = {"inbox": "inbox", "archive": "archive_folder", "error": "error_folder", "outbox": "outbox"}


def connection_folder(connection: Connection | None, kind: str) -> Folder:
    """Return a connection's inbox, archive, error folder or outbox (by default IMPEX_ROOT/<code>/<kind>)."""
    if connection is None:  # a file rejected before its connection was known
        return folder_at("", default=f"_unmatched/{kind}")
    return folder_at(getattr(connection, FOLDER_FIELDS[kind]), default=f"{connection.code}/{kind}")


def connection_folders_check(connection: Connection, *, kinds: tuple[str, ...]) -> None:
    """Refuse, before anything is touched, a connection whose folders of those kinds the hub may not use now.

    Raises LocationRefused naming each one: a folder saved before the location rules, or a link that leads elsewhere
    since, stops the scan or import of the connection instead of failing half-way.
    """
    refusals = []
    for kind in kinds:
        try:
            connection_folder(connection, kind)
        except LocationRefused as exc:
            refusals.append(f"its {Connection._meta.get_field(FOLDER_FIELDS[kind]).verbose_name}: {exc}")
    if refusals:
        raise LocationRefused(f"{connection.code} cannot be used: {'; '.join(refusals)}")


def store_copy(*, source: str | Path, name: str) -> tuple[str, str, int]:
    """Copy a local file into the hub's storage in one read; return the name it got, its SHA-256 and size."""
    with open(source, "rb") as raw:
        reader = HashingReader(raw)
        stored = save_file(hub_storage(), name, reader)
    return stored, reader.digest.hexdigest(), reader.size


def file_reject(import_file: ImportFile, *, message: str, job_id: int, worker: str = "") -> bool:
    """Reject a file with its reason (a row error without a row), dropping what its start had prepared."""
    with transaction.atomic():
        locked = ImportFile.objects.select_for_update().get(pk=import_file.pk)
        import_file.status = locked.status
        if locked.status in (FileStatus.REJECTED, FileStatus.IMPORTED, FileStatus.DUPLICATE, FileStatus.UNPACKED):
            return False
        for model in (FileKey, FileDuplicate, DeferredRow, RowError):
            model.objects.filter(file=import_file).delete()
        file_transition(
            import_file,
            new=FileStatus.REJECTED,
            job_id=job_id,
            message=message,
            worker=worker,
            finished_at=timezone.now(),
        )
        RowError.objects.create(file=import_file, row=None, message=message)
    return True


def job_create(
    *,
    paths: list[str | Path],
    connection: Connection | None = None,
    group: DataGroup | None = None,
    dry_run: bool = False,
    source: str = JobSource.COMMAND,
    created_by: str = "",
    names: list[str] | None = None,
) -> ImportJob:
    """Create a queued job holding its own copy of each given file or zip (the runner unpacks zips)."""
    job = ImportJob.objects.create(
        connection=connection, group=group, dry_run=dry_run, source=source, created_by=created_by
    )
    for n, raw_path in enumerate(paths):
        path = Path(raw_path)
        name = naming.base_name(names[n] if names else path.name)
        import_file = ImportFile(job=job, name=name, connection=connection, processed_by=job)
        try:
            import_file.kind = FileKind.ARCHIVE if is_zip(path) else FileKind.DATA
            # The copy is named by its place in the job, never by what the sender called it.
            import_file.path, import_file.content_hash, import_file.size = store_copy(
                source=path, name=f"{job_prefix(job)}/{n}"
            )
        except OSError as exc:
            import_file.save()
            file_reject(import_file, message=f"{name}: cannot be read ({exc.strerror or exc})", job_id=job.pk)
            continue
        import_file.save()
    return job


def archive_unpack(archive: ImportFile, *, job: ImportJob, worker: str = "") -> list[ImportFile]:
    """Unpack a job's zip into data files of the job (safely: paths, links, bombs); reject the zip if unsafe."""
    hub = hub_storage()
    entries = []
    with local_copy(hub, archive.path) as zip_path, temporary_folder() as folder:
        try:
            extracted = extract_zip(
                zip_path,
                dest=Path(folder) / "x",
                max_entries=settings.IMPEX_MAX_ZIP_ENTRIES,
                max_total_bytes=settings.IMPEX_MAX_ZIP_BYTES,
                max_file_bytes=settings.IMPEX_MAX_FILE_BYTES,
                max_ratio=settings.IMPEX_MAX_ZIP_RATIO,
            )
            if not extracted:
                raise ArchiveError("the zip holds no files")
        except ArchiveError as exc:
            file_reject(archive, message=f"{archive.name}: {exc}", job_id=job.pk, worker=worker)
            return []
        for n, item in enumerate(extracted):
            # The extracted entry itself becomes the job's copy (its hash taken as it was extracted).
            stored = adopt_file(hub, f"{job_prefix(job)}/z{archive.pk}/{n}", item.path)
            content_hash, size = item.sha256, item.size
            entries.append(
                ImportFile(
                    job=job,
                    processed_by=job,
                    name=item.name,
                    connection=archive.connection,
                    archive=archive.name,
                    path=stored,
                    content_hash=content_hash,
                    size=size,
                )
            )
    with transaction.atomic():
        locked = ImportFile.objects.select_for_update().get(pk=archive.pk)
        if locked.status != FileStatus.QUEUED:
            return []
        ImportFile.objects.bulk_create(entries)
        file_transition(
            archive,
            new=FileStatus.UNPACKED,
            job_id=job.pk,
            worker=worker,
            note=f"{len(entries)} file{'s' if len(entries) != 1 else ''}",
            finished_at=timezone.now(),
        )
    if not job.dry_run:  # a dry run keeps its upload whole, for a real run of the same zip
        delete_file(hub, archive.path)
    return entries


def candidate_descriptors(*, connection: Connection, group: DataGroup | None) -> list[DataDescriptor]:
    """Return the descriptors a file of this connection may be matched to (a patterns connection's: its groups')."""
    if group is not None:
        qs = group.descriptors.all()
    elif connection.convention == naming.PATTERNS:
        qs = DataDescriptor.objects.filter(groups__in=connection.import_groups()).distinct()
    else:
        qs = DataDescriptor.objects.filter(convention__in=[connection.convention, ""])
    return list(qs.prefetch_related("columns"))


def find_connection(name: str, *, cache: dict | None = None) -> Connection:
    """Find the connection a file name belongs to by the company or integration id it carries, or else by the one
    patterns connection whose file patterns match it.

    cache: a dict the caller keeps across the files of a job, where what is looked up is read once.
    """
    cache = {} if cache is None else cache

    def once(key: tuple, read):
        if key not in cache:
            cache[key] = read()
        return cache[key]

    convention = naming.guess_convention(name)
    if convention == naming.BSPK:
        company = naming.company_of(name)
        conn = once(
            ("bspk", company), lambda: Connection.objects.filter(convention=naming.BSPK, company_name=company).first()
        )
        if conn is None:
            raise FileRejected(f"{name}: no connection has the company '{company}' (create one with impex_connection)")
        return conn
    if convention == naming.KORE:
        known = once(
            ("kore types",),
            lambda: set(DataDescriptor.objects.filter(convention=naming.KORE).values_list("code", flat=True)),
        )
        integration = naming.integration_of(name, known_types=known)
        if integration is None:
            kore = once(("kore",), lambda: list(Connection.objects.filter(convention=naming.KORE)[:2]))
            if len(kore) == 1:
                return kore[0]
            raise FileRejected(f"{name}: the name carries no integration id: pass the connection (--connection)")
        conn = once(
            ("kore", integration),
            lambda: Connection.objects.filter(convention=naming.KORE, integration_id=integration).first(),
        )
        if conn is None:
            raise FileRejected(
                f"{name}: no connection has the integration id '{integration}' (create one with impex_connection)"
            )
        return conn
    patterned = once(("patterns",), _patterns_connections)
    matching = [conn for conn, globs in patterned if any(fnmatch.fnmatchcase(name, g) for g in globs)]
    if len(matching) == 1:
        return matching[0]
    if matching:
        codes = ", ".join(sorted(conn.code for conn in matching))
        raise FileRejected(
            f"{name}: the file patterns of several patterns connections match it ({codes}): "
            "pass the connection (--connection)"
        )
    raise FileRejected(
        f"{name}: the name follows neither the BSPK convention ({naming.BSPK_SHAPE}) "
        f"nor the Kore convention ({naming.KORE_SHAPE}), and no patterns connection's file pattern matches it"
    )


def _patterns_connections() -> list[tuple[Connection, set[str]]]:
    """Return each patterns connection with the file patterns of its import groups' descriptors."""
    rows = DataGroup.objects.filter(
        connection__convention=naming.PATTERNS, direction=GroupDirection.IMPORT
    ).values_list("connection_id", "descriptors__file_pattern", "descriptors__export_only")
    globs: dict[int, set[str]] = {}
    for connection_id, pattern, export_only in rows:
        if pattern and not export_only:
            globs.setdefault(connection_id, set()).add(pattern)
    connections = Connection.objects.in_bulk(list(globs))
    return [(connections[pk], globs[pk]) for pk in sorted(globs)]


@dataclass(frozen=True)
class NameMatch:
    """What a file's name says once matched: its connection (None: a group's pattern, no connection), descriptor,
    mode, and its place in the order (empty for a name that carries none: it goes by arrival)."""

    connection: Connection | None
    descriptor: DataDescriptor
    mode: str
    order_key: str = ""
    sequence: int | None = None


class NameRefused(FileRejected):
    """A file name that no descriptor claims or that breaks its connection's convention.

    connection: the connection the file was found to come from (for its error folder), None if none was.
    """

    def __init__(self, message: str, *, connection: Connection | None = None):
        super().__init__(message)
        self.connection = connection


def name_match(
    *,
    name: str,
    connection: Connection | None = None,
    group: DataGroup | None = None,
    cache: dict | None = None,
) -> NameMatch:
    """Match a file name to its connection and descriptor by any convention (SPEC section 3); raise NameRefused
    with the reason a person can act on.

    connection: where the file comes from (None: the group's connection, else the one its name carries);
    group: the import group whose descriptors it may match (None: the connection's). Reads only: the upload form
    asks it before a job exists, the runner for each file of a job. cache: a dict kept across the files of a job.
    """
    name = naming.base_name(name)
    conn = connection
    if conn is None and group is not None and group.connection_id:
        conn = group.connection
    if conn is None or conn.convention != naming.PATTERNS:
        try:
            claimed = descriptor_claiming(name=name, group=group, cache=cache)
        except FileRejected as exc:
            raise NameRefused(str(exc), connection=conn) from exc
        if claimed is not None:
            # Claimed by its pattern: no name parts to check, no order key; upserted like a delta.
            return NameMatch(connection=conn, descriptor=claimed, mode=Mode.DELTA)
    if conn is None:
        try:
            conn = find_connection(name, cache=cache)
        except FileRejected as exc:
            raise NameRefused(str(exc)) from exc
    key = (conn.pk, group.pk if group is not None else None)
    if cache is None or key not in cache:
        descriptors = candidate_descriptors(connection=conn, group=group)
        if cache is not None:
            cache[key] = descriptors
    else:
        descriptors = cache[key]
    known = {d.code: d for d in descriptors}
    try:
        parsed = naming.parse_file_name(
            name,
            convention=conn.convention,
            known_types=known.keys(),
            company=conn.company_name or None,
            integration=conn.integration_id or None,
            patterns={d.code: d.file_pattern for d in descriptors if not d.export_only},
        )
    except FileNameError as exc:
        if group is not None and conn.convention != naming.PATTERNS:
            exc = _not_in_group(name, connection=conn, group=group, known=known) or exc
        raise NameRefused(str(exc), connection=conn) from exc
    descriptor = known[parsed.type_code]
    if descriptor.export_only:
        raise NameRefused(
            f"{name}: {descriptor.code} is a layout the hub writes for other systems, not one it imports",
            connection=conn,
        )
    if descriptor.file_pattern and not fnmatch.fnmatchcase(name, descriptor.file_pattern):
        raise NameRefused(
            f"{name}: does not match the pattern {descriptor.file_pattern} of {descriptor.code}", connection=conn
        )
    return NameMatch(
        connection=conn,
        descriptor=descriptor,
        mode=parsed.mode,
        order_key=parsed.order_key,
        sequence=parsed.sequence,
    )


MATCH_FIELDS = ["connection_id", "descriptor_id", "mode", "order_key", "sequence"]


def file_match(
    import_file: ImportFile, *, group: DataGroup | None, candidates: dict | None = None, save: bool = True
) -> None:
    """Give a pending file its connection, descriptor, mode and order key; reject it if the name is wrong.

    Writes nothing but the match (one UPDATE), so a job matches all its files in one transaction; a rejected
    file is given its connection in memory only, for its way to the error folder. candidates: a dict the caller
    keeps across files, where each connection's (and group's) descriptors are read once. save=False: the caller
    writes the MATCH_FIELDS of many files at once.
    """
    try:
        match = name_match(name=import_file.name, connection=import_file.connection, group=group, cache=candidates)
    except NameRefused as exc:
        import_file.connection = exc.connection or import_file.connection
        raise
    import_file.connection = match.connection
    import_file.descriptor = match.descriptor
    import_file.mode = match.mode
    import_file.order_key = match.order_key
    import_file.sequence = match.sequence
    if save:
        import_file.save(update_fields=["connection", "descriptor", "mode", "order_key", "sequence"])


def _not_in_group(name: str, *, connection: Connection, group: DataGroup, known: dict) -> FileNameError | None:
    """Say plainly that a file is of a type the group does not hold (rather than "unknown type")."""
    every = DataDescriptor.objects.filter(convention__in=[connection.convention, ""]).values_list("code", flat=True)
    try:
        parsed = naming.parse_file_name(
            name,
            convention=connection.convention,
            known_types=set(every),
            company=connection.company_name or None,
            integration=connection.integration_id or None,
        )
    except FileNameError:
        return None
    return FileNameError(
        f"{name}: no descriptor of the import group {group.code} claims this file: it is {parsed.type_code}, "
        f"and the group holds {', '.join(sorted(known)) or 'no descriptor'}"
    )
