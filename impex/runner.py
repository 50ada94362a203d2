"""The job runner: claims a job, applies its files in order with any number of helpers, and ends it once.

Modelled on NetBox's JobRunner: one worker claims the job (a conditional UPDATE with a lease it renews),
runs it and ends it as completed, failed or errored, never swallowing a failure. Other workers on the
same job help with the chunks of the file being imported. A job whose worker died is taken over when
its lease runs out.
"""

import hashlib
import io
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from impex import events
from impex.choices import FILE_FINAL, JOB_FINAL, Convention, EventLevel, FileKind, FileStatus, JobStatus
from impex.exceptions import FileRejected, ImportStuck, LeaseLost, LocationRefused
from impex.models import (
    Connection,
    ConnectionState,
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportedFileName,
    ImportFile,
    ImportJob,
)
from impex.services.dryrun import Sandbox, file_dry_run
from impex.services.heartbeat import Heartbeat
from impex.services.imports import FileImport, JobShared, bspk_timestamp_of, reject_reason
from impex.services.jobs import (
    MATCH_FIELDS,
    archive_unpack,
    connection_folder,
    connection_folders_check,
    file_match,
    file_reject,
    job_prefix,
)
from impex.services.lifecycle import (
    TASK_RUN,
    connection_hold,
    connection_let_go,
    file_transition,
    job_claim,
    job_lease_renew,
    job_set_aside,
    job_terminate,
)
from impex.services.queue import worker_name
from impex.services.sql import (
    database_url,
    fields_read,
    flush_commits,
    rows_update,
    statements_guarded,
    stuck_reason,
)
from impex.services.waits import file_blocked_reason
from impex.storage import copy_file, delete_file, file_exists, hub_storage, move_file, save_file

log = logging.getLogger(__name__)

# Set in the environment of the helper processes a runner starts: they never start helpers of their own.
HELPER_ENV = "IMPEX_HELPER"


# What a sender changes to send changed data again, by its connection's naming convention (a conflict's hint).
NEW_NAME_HINT = {
    Convention.BSPK: "a new timestamp",
    Convention.KORE: "a new sequence",
    Convention.PATTERNS: "a new file name",
}


class _SetAside(Exception):
    """The job waits for a connection another job holds; it went back to the queue."""


def run_job(
    job_id: int, *, worker: str | None = None, rerun: bool = False, wait: bool = True, helper_of: int | None = None
) -> ImportJob:
    """Run or resume a job in this process; if another worker runs it, help with its chunks.

    wait: stay until the job has ended (a command does); a cluster task stops helping when no chunk is
    left to take. rerun: also run a job that ended in an error. helper_of: only help the runner that
    started this process (its pid), and stop when it is gone; never take the job over.
    """
    worker = worker or worker_name()
    if helper_of is not None:
        job = ImportJob.objects.get(pk=job_id)
        return _help(job, worker=worker, wait=True, parent=helper_of) or job
    while True:
        job, claimed = job_claim(job_id=job_id, worker=worker, rerun=rerun)
        if claimed:
            return _JobRun(job, worker=worker, wait=wait).handle()
        if job.status != JobStatus.RUNNING:
            return job
        helped = _help(job, worker=worker, wait=wait)
        if helped is not None:
            return helped


class _HoldLost(Exception):
    """The job stalled past its lease and another job took its connection meanwhile (its file was rolled back)."""


class _Orphaned(Exception):
    """The runner that started this helper process is gone."""


class _Cancelled(Exception):
    """The job was cancelled: a helper stops between two chunks."""


def _check_parent(parent: int | None) -> None:
    """Stop a helper process, between two chunks, once the runner that started it is gone."""
    if parent is not None and os.getppid() != parent:
        raise _Orphaned


def _check_helping(job_id: int, parent: int | None) -> None:
    """Stop a helper between two chunks once its runner is gone or the job was cancelled (one query per chunk)."""
    _check_parent(parent)
    if ImportJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists():
        raise _Cancelled


def _help(job: ImportJob, *, worker: str, wait: bool, parent: int | None = None) -> ImportJob | None:
    """Apply chunks of the files the job's runner is importing; return the job when done, None to claim it."""
    handles: dict[int, FileImport] = {}
    joined = False
    try:
        while True:
            job.refresh_from_db()
            if parent is not None and (os.getppid() != parent or job.status != JobStatus.RUNNING):
                return job  # the runner that started this helper is gone, or its job has ended
            if job.status != JobStatus.RUNNING:
                ended = job.status in JOB_FINAL or job.status in (JobStatus.ERRORED, JobStatus.CANCELLED)
                return job if ended or not wait else None
            if job.lease_until is None or job.lease_until < timezone.now():
                return job if parent is not None else None
            applied = 0
            for f in ImportFile.objects.filter(processed_by=job, status=FileStatus.RUNNING).select_related(
                "descriptor", "connection"
            ):
                handle = handles.get(f.pk)
                if handle is None:
                    handle = handles[f.pk] = FileImport(f, worker=worker, job_id=job.pk)
                try:
                    done = handle.work(between=lambda: _check_helping(job.pk, parent))
                except (_Orphaned, _Cancelled):
                    job.refresh_from_db()
                    return job
                except FileRejected as exc:
                    file_reject(f, message=reject_reason(exc, name=f.name), job_id=job.pk, worker=worker)
                    continue
                if done and not joined:
                    events.job_helper_joined(job, worker=worker)
                    joined = True
                applied += done
                if done:
                    handle.finish()
            if applied:
                continue
            if not wait:
                return job
            time.sleep(settings.IMPEX_POLL_SECONDS)
    finally:
        for handle in handles.values():
            handle.close()


class _Helpers:
    """More workers for a big file: child `impex_job` processes of a command, or more tasks of the cluster."""

    def __init__(self, job: ImportJob, *, worker: str, in_cluster: bool):
        self.job = job
        self.worker = worker
        self.in_cluster = in_cluster
        self.processes: list[subprocess.Popen] = []
        self.asked = False

    def ask(self, f: ImportFile) -> None:
        """Ask for IMPEX_WORKERS - 1 helpers once per job, when a file big enough is being imported."""
        count = settings.IMPEX_WORKERS - 1
        if self.asked or count < 1 or f.rows_total < settings.IMPEX_WORKERS_MIN_ROWS or os.environ.get(HELPER_ENV):
            return
        self.asked = True
        job_id = self.job.pk
        if self.in_cluster:
            for _ in range(count):
                async_task(TASK_RUN, job_id, task_name=f"import job #{job_id} (helper)", group="impex-import")
        else:
            env = {
                **os.environ,
                HELPER_ENV: "1",
                "DATABASE_URL": database_url(),
                "IMPEX_ROOT": str(settings.IMPEX_ROOT),
                "IMPEX_ALLOWED_LOCAL_ROOTS": ",".join(settings.IMPEX_ALLOWED_LOCAL_ROOTS),
                "IMPEX_STORAGE": settings.IMPEX_STORAGE,
                "IMPEX_CACHE_DIR": str(settings.IMPEX_CACHE_DIR),
                "IMPEX_BATCH_SIZE": str(settings.IMPEX_BATCH_SIZE),
                "IMPEX_LEASE_SECONDS": str(settings.IMPEX_LEASE_SECONDS),
                "IMPEX_POLL_SECONDS": str(settings.IMPEX_POLL_SECONDS),
            }
            command = [
                sys.executable,
                str(Path(settings.BASE_DIR) / "manage.py"),
                "impex_job",
                str(job_id),
                "--helper-of",
                str(os.getpid()),
            ]
            for _ in range(count):
                self.processes.append(
                    subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
        helpers = ("task", "tasks of the cluster") if self.in_cluster else ("helper process", "helper processes")
        events.job_note(self.job, f"{f.name}: {count} more {helpers[count > 1]} share its chunks", worker=self.worker)

    def close(self) -> None:
        """Wait for the helper processes (they stop once the job has ended); stop those that do not."""
        for process in self.processes:
            try:
                process.wait(timeout=max(5.0, 10 * settings.IMPEX_POLL_SECONDS))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# What may change on a file while its job runs (all but the connection and descriptor a match gave it).
_FILE_STATE = [f.attname for f in ImportFile._meta.concrete_fields if f.name not in ("connection", "descriptor")]


def _match_of(f: ImportFile) -> tuple:
    """Return what file_match gave a file, as MATCH_FIELDS name them."""
    return tuple(getattr(f, name) for name in MATCH_FIELDS)


def _quoted(column: str) -> str:
    return f'"{column}"'  # as both databases quote a name


_STATE_FIELDS = [
    *(ImportFile._meta.get_field(name) for name in _FILE_STATE),
    Connection._meta.get_field("next_expected_sequence"),
    ConnectionState._meta.get_field("last_applied_sequence"),
    ConnectionState._meta.get_field("last_applied_timestamps"),
]
# A file's own fields, and what the gates compare with: written once (see sql.fields_read).
_STATE_SQL = (
    f"SELECT {', '.join('f.' + _quoted(f.column) for f in _STATE_FIELDS[: len(_FILE_STATE)])}, "
    "c.next_expected_sequence, s.last_applied_sequence, s.last_applied_timestamps "
    f"FROM {ImportFile._meta.db_table} f "
    f"LEFT JOIN {Connection._meta.db_table} c ON c.id = f.connection_id "
    f"LEFT JOIN {ConnectionState._meta.db_table} s ON s.connection_id = f.connection_id "
    "WHERE f.id = %s"
)


def _sort_key(f: ImportFile):
    """Order files by their names' order key, then precedence (SPEC section 4); a name that carries no order (the
    patterns convention) goes by arrival: its upload or scan, then precedence, then the order it came in."""
    precedence = f.descriptor.precedence if f.descriptor else 0
    return (f.order_key, precedence, f.name if f.order_key else "", f.pk)


def _resume_key(f: ImportFile):
    """Order a job's files: those already running first (they started in order), then the rest in order."""
    return (f.status != FileStatus.RUNNING, *_sort_key(f))


def _not_imported(files: list[ImportFile]) -> str:
    """Say which files of a job did not go in and why (a job never fails without saying so)."""
    shown = []
    for f in files[:5]:
        why = f.message.removeprefix(f"{f.name}: ")
        why = why if len(why) <= 200 else why[:199] + "…"
        shown.append(f"{f.name} ({f.status}{': ' + why if why else ''})")
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return f"{len(files)} file{'s' if len(files) != 1 else ''} not imported: {', '.join(shown)}{more}"


class _JobRun:
    """The runner of one job: unpack, match, then each connection's files in order, then end the job."""

    def __init__(self, job: ImportJob, *, worker: str, wait: bool):
        self.job = job
        self.worker = worker
        self.wait = wait
        self.problems: list[str] = []
        self.helpers = _Helpers(job, worker=worker, in_cluster=not wait)
        self.sandbox: Sandbox | None = None  # a dry run's copies of the tables, kept across its files
        self.shared = JobShared()  # descriptors, pipelines and subscriptions, read once for all the files
        self.candidates: dict = {}  # the descriptors a connection's files may match, read once
        self._held_files: list[ImportFile] = []  # the files of the connection this job holds
        self._ledger: dict[tuple, ImportedFileName | None] = {}  # (connection, name) -> its ledger entry
        self._holding: int | None = None  # the connection this job holds now
        self._known: dict[int, list] = {}  # its [next expected sequence, last applied, timestamps], as kept

    def handle(self) -> ImportJob:
        try:
            return self._handle()
        finally:
            self.helpers.close()
            self.shared.close()

    def _handle(self) -> ImportJob:
        job = self.job
        try:
            with (
                Heartbeat(
                    lambda: job_lease_renew(job_id=job.pk, worker=self.worker),
                    every=settings.IMPEX_LEASE_SECONDS / 3,
                    name=f"lease-{job.pk}",
                ),
                statements_guarded(),  # bounds set once for the job's session, not per file
            ):
                self.run()
        except LeaseLost:
            job.refresh_from_db()
            if job.status == JobStatus.CANCELLED:
                # Cancelled: what it finished is put away (its copies to the archive); the rest waits for a re-run.
                self._put_away_quietly()
                events.job_stopped(job, worker=self.worker)
            return job
        except _SetAside:
            self._put_away_quietly()  # what it imported of other connections meanwhile
            job.refresh_from_db()
            return job
        except Exception as exc:  # the scheduler must keep running: record the failure on the job
            self._put_away_quietly()
            reason = stuck_reason(exc)
            if reason is None and isinstance(exc, ImportStuck | LocationRefused):
                reason = str(exc)
            if reason is None:
                log.exception("import job %s errored", job.pk)
                events.job_note(job, "errored:\n" + traceback.format_exc(), level=EventLevel.ERROR, worker=self.worker)
                reason = f"{exc.__class__.__name__}: {exc}"
            return job_terminate(job=job, worker=self.worker, status=JobStatus.ERRORED, error=reason)
        finally:
            if self.sandbox is not None:
                self.sandbox.close()
            _remove_empty_dirs(job)
        files = ImportFile.objects.filter(Q(job=job) | Q(processed_by=job)).exclude(kind=FileKind.ARCHIVE)
        # A file waiting for its sequence is not a failure of this job: the job that fills the gap imports it.
        bad = list(files.exclude(status__in=[FileStatus.IMPORTED, FileStatus.DUPLICATE, FileStatus.WAITING]))
        bad += ImportFile.objects.filter(job=job, kind=FileKind.ARCHIVE, status=FileStatus.REJECTED)
        problems = [*self.problems, _not_imported(sorted(bad, key=lambda f: f.pk))] if bad else self.problems
        return job_terminate(
            job=job,
            worker=self.worker,
            status=JobStatus.FAILED if bad else JobStatus.COMPLETED,
            error="; ".join(problems),
        )

    def _still_holding(self, writes) -> None:
        """Make the file's commit depend on this job still holding its connection: a job that stalled past its
        lease may have lost it to another job, and what it remembers of the connection is then out of date."""

        def lost(count: int) -> None:
            if count != 1:
                raise _HoldLost(
                    "another job took the connection while this one stalled past its lease: it waits for it again"
                )

        held = {"connection_id": self._holding, "job_id": self.job.pk}
        writes.update_where(ConnectionState, held, {"job_id": self.job.pk}, then=lost, fence=True)

    def renew(self, *, grown: tuple[int, int] | None = None, writes=None) -> None:
        """Extend the lease (and show progress); stop if another worker has taken the job over.

        writes: a WriteBatch the renewal goes in; LeaseLost is raised once it is sent, before the commit.
        """

        def lost() -> None:
            raise LeaseLost(f"import job #{self.job.pk}: the lease of {self.worker} was taken over")

        if not job_lease_renew(
            job_id=self.job.pk, worker=self.worker, progress=True, grown=grown, writes=writes, lost=lost
        ):
            lost()

    # -- the steps --------------------------------------------------------------------------------

    def run(self) -> None:
        job = self.job
        if job.connection is not None:
            self._check_folders(job.connection)
        for archive in job.files.filter(kind=FileKind.ARCHIVE, status=FileStatus.QUEUED).order_by("pk"):
            archive_unpack(archive, job=job, worker=self.worker)
            if archive.status == FileStatus.REJECTED and not job.dry_run:
                self._move(archive, "error", reason=archive.message)  # kept with its reason, like any file
            self.renew()
        self._refuse_repeated_names()
        refused, matched = [], []
        with transaction.atomic():  # one commit for all the files matched, and one UPDATE per 500 of them
            matching = job.files.filter(kind=FileKind.DATA, status=FileStatus.QUEUED, descriptor__isnull=True)
            for f in matching.select_related("connection"):
                try:
                    file_match(f, group=job.group, candidates=self.candidates, save=False)
                except FileRejected as exc:
                    refused.append((f, str(exc)))
                else:
                    matched.append(f)
            rows_update(ImportFile, values={f.pk: _match_of(f) for f in matched}, fields=MATCH_FIELDS)
        for f, message in refused:
            self._reject(f, message)
        self._report_unknown_archives()
        if job.connection_id is None:
            # A job given no connection belongs to the one its files name, when they all name the same.
            found = set(job.files.exclude(connection=None).values_list("connection_id", flat=True))
            if len(found) == 1:
                job.connection_id = found.pop()
                ImportJob.objects.filter(pk=job.pk).update(connection_id=job.connection_id)
        # Its own files, and those it took on from earlier jobs (a file that waited there, then started here).
        pending = list(
            ImportFile.objects.filter(
                Q(job=job) | Q(processed_by=job),
                kind=FileKind.DATA,
                status__in=[FileStatus.QUEUED, FileStatus.RUNNING, FileStatus.WAITING],
            ).select_related("descriptor", "connection")
        )
        by_connection: dict[int, list[ImportFile]] = {}
        for f in pending:
            if f.connection is not None and f.connection_id not in by_connection:
                self._check_folders(f.connection)
            by_connection.setdefault(f.connection_id, []).append(f)
        if job.connection_id is not None:
            by_connection.setdefault(job.connection_id, [])  # a job of no files releases the waiting ones
        for connection_id in sorted(by_connection, key=lambda pk: (pk is None, pk or 0)):
            files = by_connection[connection_id]
            if job.dry_run or connection_id is None:
                for f in sorted(files, key=_resume_key):
                    self.process(f)
                continue
            connection = Connection.objects.get(pk=connection_id)
            while True:
                try:
                    self.import_held(connection, files)
                    break
                except _HoldLost as exc:
                    # Stalled past its lease, the job lost the connection to another job: what it remembered
                    # of it is out of date. Its file went back as it was; it waits for the hold again and goes on.
                    events.job_note(job, str(exc), level=EventLevel.WARNING, worker=self.worker)
        self.put_away()

    def import_held(self, connection: Connection, files: list[ImportFile]) -> None:
        """Hold the connection, import its files in order, then the files that waited for them; let it go."""
        self.hold(connection)
        try:
            mine = {f.pk for f in files}
            files = files + [f for f in self.left_running(connection) if f.pk not in mine]
            self._held_files, self._holding = files, connection.pk
            self.renew()  # the job's rows as its files now have them: small files add theirs as they go in
            for f in sorted(files, key=_resume_key):
                if not self.process(f):
                    self.renew()
            self.release_waiting(connection)
        finally:
            connection_let_go(connection_id=connection.pk, job=self.job)
            # No longer held: other jobs write its ledger and move its sequence.
            self._held_files, self._ledger, self._holding, self._known = [], {}, None, {}

    def _check_folders(self, connection: Connection) -> None:
        """Stop the job before any file is imported or moved if the connection's archive or error folder is refused."""
        if not self.job.dry_run:  # a dry run moves nothing
            connection_folders_check(connection, kinds=("archive", "error"))

    def _refuse_repeated_names(self) -> None:
        """Reject every file after the first of a name: each name is one file of one job."""
        seen: set[str] = set()
        for f in self.job.files.filter(kind=FileKind.DATA).order_by("pk"):
            if f.name in seen and f.status == FileStatus.QUEUED:
                self._reject(f, f"{f.name}: the same file name twice in one job")
            seen.add(f.name)

    def _report_unknown_archives(self) -> None:
        """Say so plainly when a zip holds nothing the group (or the connection's descriptors) knows."""
        for archive in self.job.files.filter(kind=FileKind.ARCHIVE, status=FileStatus.UNPACKED):
            entries = list(self.job.files.filter(kind=FileKind.DATA, archive=archive.name))
            if entries and all(f.descriptor_id is None for f in entries):
                known = f"the group {self.job.group.code}" if self.job.group else "any descriptor"
                listing = ", ".join(f.name for f in entries[:10])
                message = f"{archive.name}: the zip holds nothing {known} knows ({listing})"
                self.problems.append(message)
                events.job_note(self.job, message, level=EventLevel.WARNING, worker=self.worker)

    def hold(self, connection: Connection) -> None:
        """Wait until no other job imports this connection's files, then hold it."""
        limit = None if self.wait else time.monotonic() + settings.IMPEX_CONNECTION_WAIT_SECONDS
        announced = False
        first_come = connection.convention == Convention.PATTERNS  # names without an order key: as they arrived
        while (holder := connection_hold(connection_id=connection.pk, job=self.job, first_come=first_come)) is not None:
            if not announced:
                events.job_waits_for_connection(self.job, connection=connection, holder_id=holder, worker=self.worker)
                announced = True
            if limit is not None and time.monotonic() > limit:
                reason = f"job #{holder} is importing files of {connection.code}"
                if job_set_aside(job=self.job, worker=self.worker, reason=reason, retry_in=60):
                    raise _SetAside(reason)
            time.sleep(settings.IMPEX_POLL_SECONDS)
            self.renew()

    def left_running(self, connection: Connection) -> list[ImportFile]:
        """Return the connection's files that another job left running (its worker died, or it ended) to go on with.

        Only the job holding the connection imports its files, so a running file of another job is one that job
        stopped importing: finished first, it keeps the connection's files in order.
        """
        alive = ImportJob.objects.filter(status=JobStatus.RUNNING, lease_until__gte=timezone.now())
        return list(
            ImportFile.objects.filter(
                connection=connection, kind=FileKind.DATA, status=FileStatus.RUNNING, job__dry_run=False
            )
            .exclude(processed_by=self.job)
            .exclude(processed_by__in=alive)
            .select_related("descriptor", "connection")
        )

    PUT_AWAY_BATCH = 100

    def put_away(self) -> None:
        """Move the copies of the files this job finished (imported, or rejected by a helper) still in the job's folder
        to the archive or error folder: the small files' at the end of the job, their new paths 100 at a time."""
        if self.job.dry_run:
            return
        # The files' commits did not wait for their WAL flush: made durable before their copies go anywhere.
        flush_commits()
        finished = ImportFile.objects.filter(
            processed_by=self.job,
            kind=FileKind.DATA,
            status__in=[FileStatus.IMPORTED, FileStatus.REJECTED],
            path__startswith="jobs/",
        ).select_related("job", "connection")
        moved: dict[int, tuple[str, str]] = {}
        for f in finished.order_by("pk").iterator(chunk_size=self.PUT_AWAY_BATCH):
            if f.status == FileStatus.IMPORTED:
                self._move(f, "archive", moved=moved)
            else:
                self._move(f, "error", reason=f.message, moved=moved)
            if len(moved) >= self.PUT_AWAY_BATCH:
                self._moved(moved)
                moved = {}
        self._moved(moved)

    @staticmethod
    def _moved(moved: dict[int, tuple[str, str]]) -> None:
        """Record the new paths of files copied to their folders, then delete their copies in the job's folder.

        Stopped in between, a file's path names a copy that is there (a second copy may be left behind).
        """
        rows_update(ImportFile, values={pk: (new,) for pk, (new, _) in moved.items()}, fields=["path"])
        hub = hub_storage()
        for _, old in moved.values():
            delete_file(hub, old)

    def _put_away_quietly(self) -> None:
        """Put away what the job finished before it stopped (best effort: it stops for a reason already)."""
        try:
            self.put_away()
        except Exception:
            log.warning("import job %s: could not put its finished files away", self.job.pk, exc_info=True)

    def release_waiting(self, connection: Connection) -> None:
        """Import the connection's files that waited (in this or earlier jobs) and may go in now."""
        progress = True
        while progress:
            progress = False
            waiting = list(
                ImportFile.objects.filter(connection=connection, status=FileStatus.WAITING, job__dry_run=False)
                .select_related("descriptor", "connection")
                .order_by("id")
            )
            for f in sorted(waiting, key=_sort_key):
                if file_blocked_reason(f):
                    continue
                self.process(f)
                f.refresh_from_db(fields=["status"])
                progress = progress or f.status == FileStatus.IMPORTED

    # -- one file -------------------------------------------------------------------------------

    def process(self, f: ImportFile) -> bool:
        """Take one file through the ledger and sequence gates, then import it (or dry-run it).

        A small file goes in whole in one transaction, which also renews the job's lease: return True then.
        """
        job = self.job
        # What the gates compare with: as this job left it, on the connection it holds (only its files move it);
        # else read, with the file's own fields (its connection and descriptor stay as read with the job's files).
        known = self._known.get(f.connection_id) if f.connection_id == self._holding else None
        state = tuple(known) if known is not None else self._read_state(f)
        if f.status in FILE_FINAL:
            return False
        if f.processed_by_id != job.pk:
            before = f.processed_by_id
            ImportFile.objects.filter(pk=f.pk).update(processed_by=job)
            f.processed_by = job
            if f.status == FileStatus.RUNNING:
                events.file_taken_over(f, job_id=job.pk, from_job_id=before, worker=self.worker)
            elif f.job_id != job.pk:
                events.file_taken_up(f, job_id=job.pk, worker=self.worker)
        if not self.gate(f, state, remembered=known is not None):
            return False
        if job.dry_run:
            self._dry_run(f)
            return False
        handle = FileImport(f, worker=self.worker, job_id=job.pk, shared=self.shared)
        try:
            if f.status != FileStatus.RUNNING:
                scanned = handle.scan()
                if scanned.small():
                    # The file commits with the renewal of the lease: only ever while this worker holds the job.
                    def renew_with_file(writes) -> None:
                        self.renew(grown=(f.rows_total, f.rows_done), writes=writes)
                        if f.connection_id is not None and f.connection_id == self._holding:
                            self._still_holding(writes)

                    if not handle.import_whole(scanned, before_commit=renew_with_file):
                        return False
                    self._imported(f)  # (its copy goes to the archive with the others: see put_away)
                    return True
                if not handle.start(scanned=scanned):
                    return False
            self.renew()
            self.helpers.ask(f)
            while True:
                handle.work(between=self.renew)
                f.refresh_from_db(fields=["status"])
                if f.status != FileStatus.RUNNING or not handle.chunks_left():
                    break
                # Helpers hold the last chunks: wait for them (or for their leases to run out).
                time.sleep(settings.IMPEX_POLL_SECONDS)
                self.renew()
            handle.finish()
        except FileRejected as exc:
            self._reject(f, reject_reason(exc, name=f.name))
            return False
        finally:
            handle.close()
        f.refresh_from_db()
        if f.status == FileStatus.IMPORTED:
            self._imported(f)
            self._move(f, "archive")
        return False

    def _read_state(self, f: ImportFile) -> tuple:
        """Read the file's own fields again, and in the same query what the gates compare with: the connection's
        next expected sequence, and the last sequence and newest timestamps it applied (under its hold, so they
        cannot move while the gates look). Kept for the next files of the connection this job holds."""
        with db_connection.cursor() as cursor:
            (row,) = fields_read(cursor, _STATE_SQL, [f.pk], _STATE_FIELDS)
        for field, value in zip(_STATE_FIELDS, row[: len(_FILE_STATE)], strict=False):
            setattr(f, field.attname, value)
        state = row[len(_FILE_STATE) :]
        if f.connection_id is not None and f.connection_id == self._holding:
            self._known[f.connection_id] = [state[0], state[1], dict(state[2] or {})]
        return state

    def _ledger_entry(self, f: ImportFile) -> ImportedFileName | None:
        """Return the connection's ledger entry of the file's name (another file's), read once per connection.

        Under the connection's hold only this job's files write the connection's ledger, and it keeps what it
        writes (see _imported): the names of the files it holds are looked up in one query.
        """
        key = (f.connection_id, f.name)
        if key not in self._ledger:
            names = {g.name for g in self._held_files if g.connection_id == f.connection_id} | {f.name}
            names = sorted(name for name in names if (f.connection_id, name) not in self._ledger)
            for name in names:
                self._ledger[(f.connection_id, name)] = None
            for start in range(0, len(names), 500):
                part = names[start : start + 500]
                for entry in ImportedFileName.objects.filter(connection_id=f.connection_id, name__in=part):
                    self._ledger[(f.connection_id, entry.name)] = entry
        seen = self._ledger[key]
        return seen if seen is not None and seen.file_id != f.pk else None

    def _imported(self, f: ImportFile) -> None:
        """Keep what the file's finish wrote: its ledger entry, and the connection's sequence and timestamp as
        FileImport._advance_sequence and _advance_timestamp moved them."""
        self._ledger[(f.connection_id, f.name)] = ImportedFileName(
            connection_id=f.connection_id,
            name=f.name,
            content_hash=f.content_hash,
            file_id=f.pk,
            imported_at=f.finished_at or timezone.now(),
        )
        known = self._known.get(f.connection_id)
        if known is None:
            return
        seq = f.sequence
        if seq is not None:
            if known[0] is None or known[0] <= seq:
                known[0] = seq + 1
            if known[1] is None or known[1] < seq:
                known[1] = seq
        stamp = bspk_timestamp_of(f)
        if stamp is not None and known[2].get(f.descriptor.code, "") < stamp:
            known[2][f.descriptor.code] = stamp

    def gate(self, f: ImportFile, state: tuple, *, remembered: bool = False) -> bool:
        """Decide whether a file may go in now: not imported before, not too late, not waiting; say why not.

        state: what _read_state read of the connection, or (remembered) what this job's own files made of it:
        a file is only held back or refused on what is read again then.
        """
        verdict = self._verdict(f, state)
        if verdict is not None and remembered:
            self._ledger.pop((f.connection_id, f.name), None)  # its ledger entry too
            state = self._read_state(f)
            if f.status in FILE_FINAL:
                return False
            verdict = self._verdict(f, state)
        if verdict is None:
            conn = f.connection
            if conn is not None and f.sequence is not None and not self.job.dry_run and state[0] is None:
                # The first file a connection ever receives starts its sequence (a rejection does not move it).
                Connection.objects.filter(pk=conn.pk, next_expected_sequence__isnull=True).update(
                    next_expected_sequence=f.sequence
                )
                if conn.pk in self._known:
                    self._known[conn.pk][0] = f.sequence
            return True
        kind, message = verdict
        if kind == FileStatus.DUPLICATE:
            self._drop(f, FileStatus.DUPLICATE, message)
            self._discard_copy(f)
        elif kind == FileStatus.WAITING:
            file_transition(
                f,
                new=FileStatus.WAITING,
                job_id=self.job.pk,
                message=message,
                worker=self.worker,
                waiting_since=f.waiting_since or timezone.now(),
            )
        else:
            self._reject(f, message)
        return False

    def _verdict(self, f: ImportFile, state: tuple) -> tuple[str, str] | None:
        """Return why a file may not go in now, as (the status it takes, the reason), or None if it may."""
        conn = f.connection
        if conn is None:
            return None
        seen = self._ledger_entry(f)
        if seen is not None:
            if seen.content_hash == f.content_hash:
                message = f"already imported on {seen.imported_at:%Y-%m-%d %H:%M} (same content): skipped"
                return FileStatus.DUPLICATE, message
            return (
                FileStatus.REJECTED,
                f"{f.name}: a file of this name was imported on {seen.imported_at:%Y-%m-%d %H:%M} with other "
                f"content: conflict, not imported (send changed data under {NEW_NAME_HINT[conn.convention]})",
            )
        conn.next_expected_sequence, last, applied = state
        if f.sequence is not None and last is not None and f.sequence < last:
            return (
                FileStatus.REJECTED,
                f"{f.name}: sequence {f.sequence} is behind: sequence {last} is already applied "
                "(send it again with a new sequence)",
            )
        stamp = bspk_timestamp_of(f)
        if stamp is not None and f.status != FileStatus.RUNNING:
            newest = (applied or {}).get(f.descriptor.code)
            if newest is not None and stamp < newest:
                return (
                    FileStatus.REJECTED,
                    f"{f.name}: timestamp {stamp} is behind: {f.descriptor.code} of {newest} is already applied "
                    "(send it again with a new timestamp)",
                )
        reason = file_blocked_reason(f, refresh=False)
        if reason and f.status != FileStatus.RUNNING:
            return FileStatus.WAITING, reason
        return None

    def _dry_run(self, f: ImportFile) -> None:
        """Import the file into the job's sandbox (temporary copies of the tables), recording what it would do."""
        if self.sandbox is None:
            self.sandbox = Sandbox()
        handle = FileImport(f, worker=self.worker, job_id=self.job.pk)
        try:
            file_dry_run(handle=handle, sandbox=self.sandbox)
        except FileRejected as exc:
            self._reject(f, reject_reason(exc, name=f.name))

    def _drop(self, f: ImportFile, status: str, message: str) -> None:
        """Mark a file skipped (a duplicate), dropping what a start had prepared."""
        with transaction.atomic():
            locked = ImportFile.objects.select_for_update().get(pk=f.pk)
            f.status = locked.status
            if f.status in FILE_FINAL:
                return
            for model in (FileKey, FileDuplicate, DeferredRow):
                model.objects.filter(file=f).delete()
            file_transition(
                f, new=status, job_id=self.job.pk, message=message, worker=self.worker, finished_at=timezone.now()
            )

    def _reject(self, f: ImportFile, message: str) -> None:
        if file_reject(f, message=message, job_id=self.job.pk, worker=self.worker) and not self.job.dry_run:
            self._move(f, "error", reason=message)

    def _discard_copy(self, f: ImportFile) -> None:
        """Remove the job's copy of a duplicate: the archive keeps the file imported first, same content."""
        if self.job.dry_run or not f.path:
            return
        delete_file(hub_storage(), f.path)
        ImportFile.objects.filter(pk=f.pk).update(path="")

    def _move(self, f: ImportFile, kind: str, *, reason: str = "", moved: dict | None = None) -> None:
        """Move the job's copy of a file to its connection's archive or error folder (with the reason).

        moved: only copy it there and record {pk: (new path, old path)} for the caller, who writes the new paths and
        then deletes the old copies (so that a file's recorded path always names a copy that is there).
        """
        hub = hub_storage()
        if not f.path or not f.path.startswith(f"{job_prefix(f.job_id)}/") or not file_exists(hub, f.path):
            return
        folder = connection_folder(f.connection or self.job.connection, kind)
        name = f.name if f.name not in ("", ".", "..") else f"file-{f.pk}"
        place = move_file if moved is None else copy_file
        try:
            stored = place(hub, f.path, to=folder.storage, to_name=folder.name(name))
        except Exception as exc:  # the import stands; the copy stays in the job's folder, and the job says why
            log.exception("could not move %s to the %s folder", f.name, kind)
            self._note_problem(
                f"{f.name}: could not be moved to the {kind} folder {folder.location} ({exc}); it stays at {f.path}"
            )
            return
        if moved is None:
            ImportFile.objects.filter(pk=f.pk).update(path=folder.path(stored))
        else:
            moved[f.pk] = (folder.path(stored), f.path)
        if reason:
            try:
                save_file(folder.storage, reason_file_name(stored), io.BytesIO((reason + "\n").encode("utf-8")))
            except Exception as exc:
                log.exception("could not write the reason file of %s", f.name)
                self._note_problem(f"{f.name}: its reason file could not be written in {folder.location} ({exc})")

    def _note_problem(self, message: str) -> None:
        self.problems.append(message)
        events.job_note(self.job, message, level=EventLevel.WARNING, worker=self.worker)


def reason_file_name(stored: str) -> str:
    """Return the name of the reason file beside a stored file: NAME.reason.txt, shortened past the name limit."""
    folder, _, base = stored.rpartition("/")
    if len(f"{base}.reason.txt".encode()) > 255:
        base = f"{base[:150]}-{hashlib.sha256(base.encode()).hexdigest()[:12]}"
    return f"{folder}/{base}.reason.txt" if folder else f"{base}.reason.txt"


def _remove_empty_dirs(job: ImportJob) -> None:
    """Remove a job's folder tree on local disk where nothing is left in it (waiting files keep theirs)."""
    hub_storage().remove_empty_folders(job_prefix(job))
