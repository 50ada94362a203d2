"""The inbox scan: find the files that have arrived, take each into one job once, and move it out of the inbox.

One scanner at a time holds a connection's scan (a conditional UPDATE with a lease, so two clusters on two
machines never take a file twice); every file is also claimed on its own row. A file is copied into the job's
folder of the hub's storage and recorded in the same transaction as its claim ends; only then is the original
removed from the inbox, so a scanner killed at any point loses nothing and the next scan finishes its work.
The job's runner then imports the files in SPEC section 4 order and moves each to the archive or error folder.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from impex import events
from impex.choices import INBOX_TRANSITIONS, FileKind, FileStatus, InboxStatus, JobSource, JobStatus, ProblemKind
from impex.exceptions import ConfigurationError, IllegalTransition
from impex.models import Connection, ConnectionState, ImportFile, ImportJob, InboxEvent, InboxFile
from impex.runner import run_job
from impex.services.archive import is_zip_start
from impex.services.heartbeat import Heartbeat
from impex.services.jobs import connection_folder, connection_folders_check, job_prefix
from impex.services.lifecycle import job_enqueue
from impex.services.problems import problem_raise, problem_resolve
from impex.services.queue import worker_name
from impex.services.waits import file_blocked_reason
from impex.storage import Folder, StoredFile, copy_in, delete_file, hub_storage, list_folder, look_at, open_file

log = logging.getLogger(__name__)

IGNORED_NAMES = {"readme.txt"}
WRITING_SUFFIXES = (".part", ".tmp")
SCAN_TASK = "impex.tasks.inbox_scan"
OPEN_JOB = (JobStatus.QUEUED, JobStatus.RUNNING)
TAKE_BATCH = 200
NAME_LIMIT = min(InboxFile._meta.get_field("name").max_length, ImportFile._meta.get_field("name").max_length)


@dataclass
class ScanResult:
    """What one pass over a connection's inbox did."""

    connection: Connection
    job: ImportJob | None = None
    taken: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)  # (name, why) left for the next pass
    busy_with: str = ""  # another scanner holds the connection's scan
    error: str = ""
    by: str = ""  # the user who asked for this scan ("Sync now"); none for the schedule's

    @property
    def summary(self) -> str:
        asked = f" (Sync now by {self.by})" if self.by else ""
        if self.error:
            return self.error + asked
        if self.busy_with:
            return f"another scan is running ({self.busy_with}){asked}"
        parts = [f"{len(self.taken)} file{'s' if len(self.taken) != 1 else ''} taken" if self.taken else "nothing new"]
        if self.job is not None:
            parts.append(f"job #{self.job.pk}")
        if self.left:
            parts.append(f"{len(self.left)} left for the next scan")
        return ", ".join(parts) + asked

    @property
    def starter(self) -> str:
        """Return who a job this scan makes is created by: the user who asked for it, or the schedule's scan."""
        return self.by or "scan"


def _lease() -> timedelta:
    return timedelta(seconds=settings.IMPEX_SCAN_LEASE_SECONDS)


# -- one inbox file's status: the only function that changes it, with its event row ---------------------


def inbox_file_transition(
    f: InboxFile, *, new: str, message: str = "", worker: str = "", expect: str | None = None, **fields
) -> bool:
    """Move an inbox file to a new status (only from expect, when given) and record the step; return whether it moved.

    The UPDATE names the status it expects, so that of two scanners only one moves a file.
    """
    old = expect or f.status
    if new not in INBOX_TRANSITIONS[old]:
        raise IllegalTransition(f"inbox file {f.name}: {old} -> {new} is not allowed")
    with transaction.atomic(savepoint=False):  # inside a batch's transaction, no savepoint per file
        moved = InboxFile.objects.filter(pk=f.pk, status=old).update(status=new, message=message, **fields)
        if not moved:
            return False
        InboxEvent.objects.create(inbox_file=f, status=new, message=message, worker=worker)
    f.status, f.message = new, message
    for name, value in fields.items():
        setattr(f, name, value)
    return True


# -- the scan ------------------------------------------------------------------------------------------


def inbox_scan(
    *, connection: Connection, run_here: bool = False, worker: str | None = None, by: str = ""
) -> ScanResult:
    """Take the settled files of a connection's inbox into one job and start it (here, or queued for the cluster).

    by: the user who asked for the scan ("Sync now"): the job, its events, the connection's last scan and the log
    say so.
    """
    worker = worker or worker_name()
    result = ScanResult(connection=connection, by=by)
    if by:
        log.info("scan of %s asked for by %s (Sync now), run by %s", connection.code, by, worker)
    if run_here:
        _finish_open_jobs(connection)
    if not _scan_claim(connection=connection, worker=worker, result=result):
        return result
    try:
        with Heartbeat(
            lambda: _scan_renew(connection=connection, worker=worker),
            every=settings.IMPEX_SCAN_LEASE_SECONDS / 3,
            name=f"scan-{connection.code}",
        ):
            _scan(connection=connection, worker=worker, result=result)
            if result.job is not None:
                # Filled: from now on it is this scanner's to start, not a job a stopped scanner left half-filled
                # for the next scan to adopt (and report as its own); if this process dies before starting it,
                # the requeue schedule hands it to the cluster.
                ImportJob.objects.filter(pk=result.job.pk, queued_at__isnull=True).update(queued_at=timezone.now())
    except Exception as exc:  # an unreachable inbox must not stop the scheduler: the connection says why
        if isinstance(exc, OSError | ConfigurationError):
            log.warning("scan of %s failed: %s", connection.code, exc)
        else:
            log.exception("scan of %s failed", connection.code)
        # The inbox as configured: building its folder again could fail again (a location the hub refuses).
        inbox = connection.inbox.strip() or f"{connection.code}/inbox"
        result.error = f"the inbox {inbox} could not be scanned: {exc}"
    finally:
        _scan_release(connection=connection, worker=worker, result=result)
    if result.job is not None:
        if run_here:
            result.job = run_job(result.job.pk, worker=worker)
        else:
            with transaction.atomic():
                job_enqueue(job=result.job, reason="files taken from the inbox by a scan")
    return result


def _finish_open_jobs(connection: Connection) -> None:
    """Run (or help with, or take over) the connection's unfinished scan jobs here, so that files go in order.

    A job another scanner is still filling (it holds the connection's scan) is left to it: it starts it when full.
    """
    for job_id in ImportJob.objects.filter(
        connection=connection, source=JobSource.SCAN, status__in=OPEN_JOB
    ).values_list("pk", flat=True):
        if not _scan_held_by_another(connection):
            run_job(job_id)


def _scan_held_by_another(connection: Connection) -> bool:
    return (
        ConnectionState.objects.filter(connection=connection, scan_until__gte=timezone.now())
        .exclude(scan_by="")
        .exists()
    )


def _scan_claim(*, connection: Connection, worker: str, result: ScanResult) -> bool:
    """Hold the connection's scan for this worker; say who holds it if another does."""
    try:
        with transaction.atomic():
            ConnectionState.objects.get_or_create(connection=connection)
    except IntegrityError:
        pass  # another scanner made it first
    now = timezone.now()
    taken = (
        ConnectionState.objects.filter(connection=connection)
        .filter(Q(scan_until__isnull=True) | Q(scan_until__lt=now) | Q(scan_by=worker))
        .update(scan_by=worker, scan_until=now + _lease())
    )
    if not taken:
        result.busy_with = ConnectionState.objects.get(connection=connection).scan_by
    return bool(taken)


NOT_IMPORTED = "Files that arrive there are not imported until this is fixed."


def inbox_problem_mail(*, problem, to: list[str]) -> EmailMessage | None:
    """Build the mail of an inbox that cannot be scanned (the subject and lines it had before problems existed)."""
    if problem.connection is None:
        return None
    code = problem.connection.code
    error = problem.message.removesuffix(f". {NOT_IMPORTED}")
    return EmailMessage(
        subject=f"[impex-hub] {code}: the inbox cannot be scanned",
        body=(
            f"The scan of {code}'s inbox failed:\n\n{error}\n\n{NOT_IMPORTED} You get this mail once; the connections "
            "list shows each scan's result, and the hub's home page lists it under \"Needs attention\" until it is "
            f"resolved.\n\nThe connection's page: {problem.url}\n"
        ),
        to=to,
    )


def _scan_renew(*, connection: Connection, worker: str) -> None:
    ConnectionState.objects.filter(connection=connection, scan_by=worker).update(scan_until=timezone.now() + _lease())


def _scan_release(*, connection: Connection, worker: str, result: ScanResult) -> None:
    """Let the connection's scan go and record how it went: an inbox that cannot be read is a problem until it can."""
    with transaction.atomic():
        ConnectionState.objects.filter(connection=connection, scan_by=worker).update(scan_by="", scan_until=None)
        ConnectionState.objects.filter(connection=connection).update(
            last_scan_at=timezone.now(),
            last_scan_ok=not result.error,
            last_scan_message=result.summary,
            last_scan_job=result.job,  # none when the scan started none: the list links only this scan's job
        )
        key = f"scan:{connection.code}"
        if result.error:
            problem_raise(
                kind=ProblemKind.INBOX,
                key=key,
                connection=connection,
                message=f"{result.error}. {NOT_IMPORTED}",
                url=reverse("admin:impex_connection_change", args=[connection.pk]),
            )
        else:
            problem_resolve(key=key)


def _scan(*, connection: Connection, worker: str, result: ScanResult) -> None:
    # The job the scan fills moves its files to the archive and error folders: all three are checked before a file
    # leaves the inbox.
    connection_folders_check(connection, kinds=("inbox", "archive", "error"))
    folder = connection_folder(connection, "inbox")
    _check_inbox(folder)
    _finish_removals(connection=connection, folder=folder, worker=worker)
    listed = {}
    for stored in list_folder(folder.storage, folder.prefix):
        name = stored.name[len(folder.prefix) :].lstrip("/") if folder.prefix else stored.name
        if name.lower() in IGNORED_NAMES:
            continue
        if name.lower().endswith(WRITING_SUFFIXES):
            result.left.append((name, "still being written (a .part or .tmp name)"))
            continue
        if len(name) > NAME_LIMIT:
            result.left.append((name, f"a name of {len(name)} characters: the hub keeps names of {NAME_LIMIT} at most"))
            continue
        listed[name] = stored
    _mark_gone(connection=connection, present=set(listed), worker=worker)
    abandoned = _abandoned_job(connection)
    if abandoned is not None:
        # A scanner stopped while filling this job: start it now; the files found meanwhile go in after it.
        result.job = abandoned
        result.left.extend((name, f"waits for job #{abandoned.pk} to finish") for name in sorted(listed))
        return
    settled = _settled(connection=connection, folder=folder, listed=listed, worker=worker, result=result)
    if settled:
        blocker = ImportJob.objects.filter(connection=connection, source=JobSource.SCAN, status__in=OPEN_JOB).first()
        if blocker is not None:
            # A later job could overtake it: the files wait so that they go in after that job's files.
            result.left.extend((f.name, f"waits for job #{blocker.pk} to finish") for f in settled)
            return
        result.job = _take(connection=connection, folder=folder, files=settled, worker=worker, result=result)
    if result.job is None and _released_waits(connection):
        result.job = ImportJob.objects.create(connection=connection, source=JobSource.SCAN, created_by=result.starter)
        events.job_note(result.job, f"started by a scan{_asked(result)}: files that waited may go in now")


def _abandoned_job(connection: Connection) -> ImportJob | None:
    """Return a scan job that was never started: its scanner stopped while taking files into it."""
    return (
        ImportJob.objects.filter(connection=connection, source=JobSource.SCAN, status=JobStatus.QUEUED)
        .filter(queued_at__isnull=True)
        .order_by("pk")
        .first()
    )


def _check_inbox(folder: Folder) -> None:
    """Create a default local inbox; refuse to scan a configured local folder that is not there (a typo?)."""
    folder.storage.check_folder(folder.prefix, create=folder.in_hub)


def _finish_removals(*, connection: Connection, folder: Folder, worker: str) -> None:
    """Remove the originals of files an earlier scan took into a job but could not remove (it was stopped)."""
    for f in InboxFile.objects.filter(connection=connection, status=InboxStatus.TAKEN, left_inbox_at__isnull=True):
        now_there = look_at(folder.storage, folder.name(f.name))
        if now_there is not None and _same_look(now_there.size, now_there.modified, f.size, f.modified):
            delete_file(folder.storage, folder.name(f.name))
        InboxFile.objects.filter(pk=f.pk).update(left_inbox_at=timezone.now())


def _mark_gone(*, connection: Connection, present: set[str], worker: str) -> None:
    for f in InboxFile.objects.filter(connection=connection, status__in=[InboxStatus.SEEN, InboxStatus.CLAIMED]):
        if f.name not in present:
            inbox_file_transition(
                f, new=InboxStatus.GONE, message="removed from the inbox before a scan took it", worker=worker
            )


def _settled(
    *, connection: Connection, folder: Folder, listed: dict[str, StoredFile], worker: str, result: ScanResult
) -> list[InboxFile]:
    """Record this look at each file; return those whose size and time did not change since the last look."""
    quiet = timedelta(seconds=settings.IMPEX_INBOX_QUIET_SECONDS)
    settled, fresh = [], []
    with transaction.atomic():  # one commit for the looks, not one per file
        now = timezone.now()
        known = {
            f.name: f
            for f in InboxFile.objects.filter(connection=connection, status__in=[InboxStatus.SEEN, InboxStatus.CLAIMED])
        }
        unchanged = []
        for name, stored in sorted(listed.items(), key=_arrival):
            f = known.get(name)
            if f is None:
                f = _first_look(connection=connection, name=name, stored=stored, worker=worker)
                if stored.modified is not None and stored.modified > now - quiet:
                    fresh.append(f)  # just written: look again in a moment
                else:
                    settled.append(f)
            elif not _same_look(f.size, f.modified, stored.size, stored.modified):
                change = f"size {f.size:,} -> {stored.size:,} bytes" if f.size != stored.size else "modified again"
                InboxFile.objects.filter(pk=f.pk).update(size=stored.size, modified=stored.modified, last_seen=now)
                why = f"still being written ({change} since the last look)"
                inbox_file_transition(f, new=InboxStatus.SEEN, expect=f.status, worker=worker, message=why)
                result.left.append((name, why))
            else:
                unchanged.append(f.pk)
                settled.append(f)
        InboxFile.objects.filter(pk__in=unchanged).update(last_seen=now)
    if fresh:
        newest = max(f.modified for f in fresh)
        time.sleep(max(0.0, min(quiet, newest + quiet - timezone.now()).total_seconds()))
        for f in fresh:
            again = look_at(folder.storage, folder.name(f.name))
            if again is None:
                inbox_file_transition(
                    f, new=InboxStatus.GONE, message="removed from the inbox before a scan took it", worker=worker
                )
            elif not _same_look(again.size, again.modified, f.size, f.modified):
                InboxFile.objects.filter(pk=f.pk).update(size=again.size, modified=again.modified)
                why = "still being written (it changed while the scan looked)"
                inbox_file_transition(f, new=InboxStatus.SEEN, worker=worker, message=why)
                result.left.append((f.name, why))
            else:
                settled.append(f)
    return settled


def _arrival(item: tuple[str, StoredFile]) -> tuple:
    """Order a listing as the files arrived: by modification time (those without one last), then by name.

    The files first seen in one look are recorded in this order, and a scan takes files in the order they were seen,
    which is the order of a patterns connection's files (their names carry none, SPEC section 3).
    """
    name, stored = item
    modified = stored.modified
    return (modified is None, modified.timestamp() if modified is not None else 0.0, name)


def _same_look(size: int, modified, other_size: int, other_modified) -> bool:
    """Tell whether two looks at a file saw the same size and time, to the second.

    Listings and single look-ups may give times at different precisions (S3 lists milliseconds on some servers and
    heads whole seconds; SFTP has seconds): a finer difference would keep a file "being written" for ever.
    """
    if size != other_size:
        return False
    if modified is None or other_modified is None:
        return modified is other_modified
    return int(modified.timestamp()) == int(other_modified.timestamp())


def _first_look(*, connection: Connection, name: str, stored: StoredFile, worker: str) -> InboxFile:
    """Record a file seen for the first time (or find the row another scanner made a moment ago)."""
    try:
        with transaction.atomic():
            f = InboxFile.objects.create(
                connection=connection, name=name, size=stored.size, modified=stored.modified, message="seen"
            )
            InboxEvent.objects.create(
                inbox_file=f, status=InboxStatus.SEEN, message=f"seen ({stored.size:,} bytes)", worker=worker
            )
            return f
    except IntegrityError:
        return InboxFile.objects.get(
            connection=connection, name=name, status__in=[InboxStatus.SEEN, InboxStatus.CLAIMED]
        )


def _take(
    *, connection: Connection, folder: Folder, files: list[InboxFile], worker: str, result: ScanResult
) -> ImportJob | None:
    """Claim the files, copy them into a new job and remove the originals; return the job (None if none was taken).

    A batch of files at a time: one commit claims the batch, one records it once copied (a commit per file
    would cost more than the copies on one local disk); the originals leave the inbox only after that.
    """
    job = None
    ordered = sorted(files, key=lambda f: (f.first_seen, f.pk))  # as seen: the job's files keep that order
    for first in range(0, len(ordered), TAKE_BATCH):
        batch = _claim(ordered[first : first + TAKE_BATCH], worker=worker)
        if not batch:
            continue
        if job is None:
            job = ImportJob.objects.create(connection=connection, source=JobSource.SCAN, created_by=result.starter)
        copies = _copy(batch, first=first, folder=folder, job=job, worker=worker, result=result)
        _record(copies, connection=connection, job=job, worker=worker)
        left = []
        for f, *_ in copies:
            try:
                delete_file(folder.storage, folder.name(f.name))
            except Exception:
                log.exception("could not remove %s from the inbox of %s; the next scan does", f.name, connection.code)
            else:
                left.append(f.pk)
            result.taken.append(f.name)
        InboxFile.objects.filter(pk__in=left).update(left_inbox_at=timezone.now())
        _scan_renew(connection=connection, worker=worker)
    if job is not None and not result.taken:
        job.delete()
        return None
    if job is not None:
        events.job_note(
            job,
            f"{len(result.taken)} file(s) taken from the inbox {folder.location} by {worker}{_asked(result)}",
            worker=worker,
        )
    return job


def _asked(result: ScanResult) -> str:
    return f" (Sync now by {result.by})" if result.by else ""


@transaction.atomic
def _claim(files: list[InboxFile], *, worker: str) -> list[InboxFile]:
    """Claim each file for this worker (one UPDATE each, naming the status it expects); return those claimed."""
    now = timezone.now()
    return [
        f
        for f in files
        if inbox_file_transition(
            f,
            new=InboxStatus.CLAIMED,
            expect=f.status,
            worker=worker,
            message=f"claimed by {worker}",
            claimed_by=worker,
            claimed_at=now,
            lease_until=now + _lease(),
        )
    ]


def _copy(
    files: list[InboxFile], *, first: int, folder: Folder, job: ImportJob, worker: str, result: ScanResult
) -> list[tuple[InboxFile, str, str, int, str]]:
    """Copy each claimed file into the job's folder; return (file, stored name, SHA-256, size, kind) of each copied."""
    hub = hub_storage()
    copies = []
    for n, f in enumerate(files, start=first):
        try:
            stored, content_hash, size = copy_in(
                folder.storage, folder.name(f.name), to=hub, to_name=f"{job_prefix(job)}/{n}"
            )
            kind = FileKind.ARCHIVE if _starts_like_zip(hub, stored) else FileKind.DATA
        except FileNotFoundError:
            inbox_file_transition(
                f, new=InboxStatus.GONE, message="removed from the inbox while the scan took it", worker=worker
            )
            continue
        except Exception as exc:
            log.exception("could not take %s from the inbox of %s", f.name, job.connection_id)
            inbox_file_transition(
                f,
                new=InboxStatus.SEEN,
                worker=worker,
                message=f"could not be copied into a job ({exc}); the next scan tries again",
            )
            result.left.append((f.name, f"could not be copied ({exc})"))
            continue
        copies.append((f, stored, content_hash, size, kind))
    return copies


@transaction.atomic
def _record(copies: list, *, connection: Connection, job: ImportJob, worker: str) -> None:
    """Record the copied files as the job's, and their inbox rows as taken, in one commit."""
    import_files = ImportFile.objects.bulk_create(
        [
            ImportFile(
                job=job,
                processed_by=job,
                connection=connection,
                name=f.name,
                kind=kind,
                path=stored,
                content_hash=content_hash,
                size=size,
            )
            for f, stored, content_hash, size, kind in copies
        ]
    )
    if any(i.pk is None for i in import_files):  # a database that returns no ids from a bulk insert
        by_path = dict(ImportFile.objects.filter(job=job).values_list("path", "pk"))
        for i in import_files:
            i.pk = by_path[i.path]
    for (f, *_), import_file in zip(copies, import_files, strict=True):
        inbox_file_transition(
            f,
            new=InboxStatus.TAKEN,
            worker=worker,
            message=f"taken into import job #{job.pk}",
            job=job,
            import_file=import_file,
            lease_until=None,
        )


def _starts_like_zip(storage, name: str) -> bool:
    with open_file(storage, name) as stream:
        return is_zip_start(stream.read(4))


def _released_waits(connection: Connection) -> bool:
    """Tell whether a file of the connection waits for nothing any more (its window opened, its gap was filled)."""
    waiting = ImportFile.objects.filter(
        connection=connection, status=FileStatus.WAITING, job__dry_run=False
    ).select_related("connection")
    if not waiting.exists():
        return False
    if ImportJob.objects.filter(connection=connection, status__in=OPEN_JOB).exists():
        return False  # that job releases them when it ends
    return any(not file_blocked_reason(f) for f in waiting)


def inbox_scan_start(*, connection: Connection, by: str = "") -> None:
    """Queue a scan of the connection's inbox now ("Sync now" by the user by) once the request's transaction commits."""
    log.info("%s asked for a scan of %s (Sync now)", by or "someone", connection.code)
    transaction.on_commit(
        lambda: async_task(SCAN_TASK, connection.pk, by, task_name=f"scan {connection.code} (Sync now by {by})")
    )
