"""The job runner: drives an ImportJob from queued to completed, failed or errored, file by file, in order."""

import logging
import shutil
import traceback
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from impex.choices import FileStatus, JobStatus, Mode
from impex.exceptions import FileRejected
from impex.models import Connection, ImportedFileName, ImportFile, ImportJob, RowError
from impex.services.imports import FileImport, reject_reason
from impex.services.jobs import connection_folder, file_match, file_reject, job_folder

log = logging.getLogger(__name__)

DONE_STATUSES = (FileStatus.IMPORTED, FileStatus.REJECTED, FileStatus.DUPLICATE)


class _DryRunRollback(Exception):
    """Raised to undo a dry run's writes."""


def _append_log(job: ImportJob, line: str) -> None:
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
    job.log += f"[{stamp}] {line}\n"
    ImportJob.objects.filter(pk=job.pk).update(log=job.log)


def _sort_key(f: ImportFile):
    precedence = f.descriptor.precedence if f.descriptor else 0
    return (f.connection_id or 0, f.order_key, precedence, f.name)


def run_job(job_id: int) -> ImportJob:
    """Run (or resume) a job: match, order and import its files, then report; never leave it running."""
    job = ImportJob.objects.select_related("group", "connection").get(pk=job_id)
    if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
        return job
    ImportJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, started_at=job.started_at or timezone.now(), error=""
    )
    job.refresh_from_db()
    _append_log(job, f"started{' (dry run)' if job.dry_run else ''}")
    runner = _JobRun(job)
    try:
        runner.run()
    except Exception as exc:  # the scheduler must keep running: record the failure on the job
        log.exception("import job %s errored", job.pk)
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.ERRORED, finished_at=timezone.now(), error=f"{exc.__class__.__name__}: {exc}"
        )
        _append_log(job, "errored:\n" + traceback.format_exc())
        job.refresh_from_db()
        return job
    return runner.finish()


class _JobRun:
    """One pass of the runner over a job's files."""

    def __init__(self, job: ImportJob):
        self.job = job
        self.expected: dict[int, int | None] = {}

    def run(self) -> None:
        job = self.job
        for f in job.files.filter(status=FileStatus.PENDING, descriptor__isnull=True):
            try:
                file_match(f, group=job.group)
            except FileRejected as exc:
                self._reject(f, str(exc))
        self._report_unknown_archives()
        if job.connection_id is None:
            # A job given no connection belongs to the one its files name, when they all name the same.
            found = set(job.files.exclude(connection=None).values_list("connection_id", flat=True))
            if len(found) == 1:
                job.connection_id = found.pop()
                ImportJob.objects.filter(pk=job.pk).update(connection_id=job.connection_id)
        pending = list(
            job.files.filter(status__in=[FileStatus.PENDING, FileStatus.RUNNING, FileStatus.WAITING]).select_related(
                "descriptor", "connection"
            )
        )
        pending.sort(key=_sort_key)
        touched = {job.connection_id} if job.connection_id else set()
        for f in pending:
            self._process(f)
            if f.connection_id:
                touched.add(f.connection_id)
        if not job.dry_run:
            self._release_waiting(touched)

    def _report_unknown_archives(self) -> None:
        """Say so plainly when a zip holds nothing the group (or the connection's descriptors) knows."""
        archives: dict[str, list[ImportFile]] = {}
        for f in self.job.files.exclude(archive=""):
            archives.setdefault(f.archive, []).append(f)
        for name, files in archives.items():
            if all(f.descriptor_id is None for f in files):
                known = f"the group {self.job.group.code}" if self.job.group else "any descriptor"
                listing = ", ".join(f.name for f in files[:10])
                message = f"{name}: the zip holds nothing {known} knows ({listing})"
                ImportJob.objects.filter(pk=self.job.pk).update(error=message)
                _append_log(self.job, message)

    def _release_waiting(self, connections: set[int]) -> None:
        """Pick up files of earlier jobs that waited for a sequence this job brought."""
        progress = True
        while progress:
            progress = False
            waiting = list(
                ImportFile.objects.filter(connection_id__in=connections, status=FileStatus.WAITING, job__dry_run=False)
                .exclude(job=self.job)
                .select_related("descriptor", "connection")
            )
            waiting.sort(key=_sort_key)
            for f in waiting:
                if self._blocked_reason(f):
                    continue
                old_job = f.job_id
                ImportFile.objects.filter(pk=f.pk).update(job=self.job)
                f.job = self.job
                _append_log(self.job, f"{f.name}: released from job #{old_job}")
                self._process(f)
                if f.status == FileStatus.IMPORTED:
                    progress = True

    def _expected(self, conn: Connection) -> int | None:
        if conn.pk not in self.expected:
            conn.refresh_from_db(fields=["next_expected_sequence"])
            self.expected[conn.pk] = conn.next_expected_sequence
        return self.expected[conn.pk]

    def _blocked_reason(self, f: ImportFile) -> str:
        """Say why a file must wait (a sequence gap or the full-refresh window), or return ''."""
        conn = f.connection
        if conn is None:
            return ""
        if f.sequence is not None:
            expected = self._expected(conn)
            if expected is not None and f.sequence > expected:
                return f"waiting for sequence {expected}"
        if f.mode == Mode.FULL and conn.full_window_start and conn.full_window_end:
            now = datetime.now(ZoneInfo(conn.timezone or "UTC")).time()
            start, end = conn.full_window_start, conn.full_window_end
            inside = start <= now < end if start <= end else (now >= start or now < end)
            if not inside:
                return f"held until the full-refresh window {start:%H:%M}-{end:%H:%M} ({conn.timezone})"
        return ""

    def _process(self, f: ImportFile) -> None:
        job = self.job
        if f.status in DONE_STATUSES:
            return
        conn = f.connection
        if conn is not None and f.status != FileStatus.RUNNING:
            seen = ImportedFileName.objects.filter(connection=conn, name=f.name).first()
            if seen is not None:
                if seen.content_hash == f.content_hash:
                    ImportFile.objects.filter(pk=f.pk).update(
                        status=FileStatus.DUPLICATE,
                        message=f"already imported on {seen.imported_at:%Y-%m-%d %H:%M} (same content): skipped",
                    )
                    f.status = FileStatus.DUPLICATE
                    _append_log(job, f"{f.name}: duplicate, skipped")
                    self._discard_copy(f)
                    return
                self._reject(
                    f,
                    f"{f.name}: a file of this name was imported on {seen.imported_at:%Y-%m-%d %H:%M} with other "
                    "content: conflict, not imported (send changed data under a new timestamp or sequence)",
                )
                return
        reason = self._blocked_reason(f)
        if reason:
            ImportFile.objects.filter(pk=f.pk).update(
                status=FileStatus.WAITING, message=reason, waiting_since=f.waiting_since or timezone.now()
            )
            f.status = FileStatus.WAITING
            _append_log(job, f"{f.name}: {reason}")
            return
        if f.sequence is not None and conn is not None and self._expected(conn) is None:
            self.expected[conn.pk] = f.sequence
        _append_log(job, f"{f.name}: importing with {f.descriptor.code} ({f.mode})")
        importer = FileImport(f, dry_run=job.dry_run)
        try:
            if job.dry_run:
                totals = self._dry_run(importer)
            else:
                totals = importer.run()
        except FileRejected as exc:
            self._reject(f, reject_reason(exc) if str(exc).startswith(f.name) else f"{f.name}: {exc}")
            return
        if not job.dry_run and not importer.finished:
            _append_log(job, f"{f.name}: chunks still held by another worker; it finishes the file")
            return
        f.refresh_from_db()
        if f.sequence is not None and conn is not None:
            self.expected[conn.pk] = max(self._expected(conn) or 0, f.sequence + 1)
            if not job.dry_run:
                Connection.objects.filter(pk=conn.pk).update(next_expected_sequence=self.expected[conn.pk])
        _append_log(
            job,
            f"{f.name}: imported: {totals.created} created, {totals.updated} updated, {totals.unchanged} unchanged, "
            f"{totals.retired} retired, {totals.failed} failed",
        )
        if not job.dry_run:
            self._move(f, "archive")

    def _dry_run(self, importer: FileImport):
        """Run the import inside a transaction that is rolled back, then record what it would have done."""
        f = importer.file
        try:
            with transaction.atomic():
                importer.run()
                raise _DryRunRollback
        except _DryRunRollback:
            pass
        t = importer.totals
        ImportFile.objects.filter(pk=f.pk).update(
            status=FileStatus.IMPORTED,
            rows_total=importer.record_count,
            rows_done=t.rows_done,
            created=t.created,
            updated=t.updated,
            unchanged=t.unchanged,
            retired=t.retired,
            failed=t.failed,
            message="dry run: nothing was written",
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
        for e in importer.reported_errors:
            e.pk = None
            e.file = f
        RowError.objects.bulk_create(importer.reported_errors)
        return t

    def _reject(self, f: ImportFile, message: str) -> None:
        with transaction.atomic():
            file_reject(f, message=message)
            ImportFile.objects.filter(pk=f.pk).update(finished_at=timezone.now())
        _append_log(self.job, f"rejected: {message}")
        if not self.job.dry_run:
            self._move(f, "error", reason=message)

    def _discard_copy(self, f: ImportFile) -> None:
        """Remove the job's copy of a duplicate: the archive keeps the file imported first, same content."""
        if self.job.dry_run or not f.path:
            return
        Path(f.path).unlink(missing_ok=True)
        ImportFile.objects.filter(pk=f.pk).update(path="", finished_at=timezone.now())

    def _move(self, f: ImportFile, kind: str, *, reason: str = "") -> None:
        """Move the job's copy of a file to its connection's archive or error folder."""
        if not f.path:
            return
        src = Path(f.path)
        if not src.exists():
            return
        dest_dir = connection_folder(f.connection, kind)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f.name
        if dest.exists():
            dest = dest_dir / f"{f.name}.{f.pk}"
        shutil.move(str(src), dest)
        if reason:
            dest.with_name(dest.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        ImportFile.objects.filter(pk=f.pk).update(path=str(dest))

    def finish(self) -> ImportJob:
        job = self.job
        files = list(job.files.all())
        # A file waiting for its sequence is not a failure of this job: the job that fills the gap imports it.
        bad = [f for f in files if f.status not in (FileStatus.IMPORTED, FileStatus.DUPLICATE, FileStatus.WAITING)]
        totals = job.files.aggregate(total=Sum("rows_total"), done=Sum("rows_done"))
        status = JobStatus.COMPLETED if not bad else JobStatus.FAILED
        ImportJob.objects.filter(pk=job.pk).update(
            status=status,
            finished_at=timezone.now(),
            rows_total=totals["total"] or 0,
            rows_done=totals["done"] or 0,
        )
        _append_log(job, f"finished: {status}")
        _remove_empty_dirs(job_folder(job))
        job.refresh_from_db()
        if not job.dry_run:
            transaction.on_commit(lambda: notify_contacts(job.pk))
        return job


def _remove_empty_dirs(folder: Path) -> None:
    """Remove a job's folder tree where nothing is left in it (waiting files keep theirs)."""
    if not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def notify_contacts(job_id: int) -> int:
    """E-mail each connection's contacts when the job rejected a file or refused rows; return mails sent."""
    job = ImportJob.objects.get(pk=job_id)
    sent = 0
    by_conn: dict[int, list[ImportFile]] = {}
    for f in job.files.select_related("connection").all():
        if f.connection and (f.status == FileStatus.REJECTED or f.failed):
            by_conn.setdefault(f.connection_id, []).append(f)
    for files in by_conn.values():
        conn = files[0].connection
        if not conn.contact_list:
            continue
        lines = []
        for f in files:
            if f.status == FileStatus.REJECTED:
                lines.append(f"- {f.name}: rejected: {f.message}")
            else:
                lines.append(f"- {f.name}: {f.failed} rows refused")
        send_mail(
            subject=f"[impex-hub] {conn.code}: import job #{job.pk} has errors",
            message="Import job #{} for {}:\n\n{}\n".format(job.pk, conn.code, "\n".join(lines)),
            from_email=None,
            recipient_list=conn.contact_list,
            fail_silently=True,
        )
        sent += 1
    return sent
