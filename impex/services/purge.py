"""Purge the history older than the retention (SPEC 9, impex_purge): jobs, their files, row errors and events,
export runs and the files they sent, webhook deliveries, inbox records, resolved problems; never what is still
at work, what a connection's ledger needs, or an open problem's evidence.

Every kind goes in batches, each its own transaction, so memory and transactions stay small on millions of rows;
each batch deletes what is still there, so two purges at once, or one killed half-way and run again, end the same.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from impex.choices import (
    FILE_FINAL,
    JOB_STOPPED,
    DeliveryStatus,
    ExportRunStatus,
    FileStatus,
    InboxStatus,
    ProblemKind,
)
from impex.models import (
    ExportRun,
    ImportChunk,
    ImportEvent,
    ImportFile,
    ImportJob,
    InboxFile,
    Problem,
    RowError,
    SentFile,
    WebhookDelivery,
)
from impex.registry import purgers_registered
from impex.runner import reason_file_name
from impex.storage import delete_file, resolve_path

log = logging.getLogger(__name__)

# Jobs (and export runs) per batch: their files' copies are deleted from storage one by one.
BATCH = 200
# Rows of one kind (row errors, events, chunks) deleted per transaction.
ROW_BATCH = 10_000
# What a purge reports, in this order (then the apps' purgers').
KINDS = (
    "jobs",
    "files",
    "row_errors",
    "events",
    "stored_copies",
    "export_runs",
    "sent_files",
    "sent_copies",
    "webhook_deliveries",
    "inbox_files",
    "resolved_problems",
)


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove), by kind; and the stored copies it could not delete."""

    before: datetime
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)
    kept_copies: list[str] = field(default_factory=list)

    def add(self, kind: str, count: int) -> None:
        self.removed[kind] = self.removed.get(kind, 0) + count


def history_purge(*, days: int | None = None, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Delete the history older than days (IMPEX_RETENTION_DAYS by default); dry_run only counts it."""
    days = settings.IMPEX_RETENTION_DAYS if days is None else days
    if days < 1:
        raise ValueError("the retention is at least one day")
    try:
        before = (now or timezone.now()) - timedelta(days=days)
    except OverflowError:  # a retention longer than the calendar goes back: nothing is that old
        before = datetime.min.replace(tzinfo=UTC)
    report = PurgeReport(before=before, dry_run=dry_run)
    report.removed = dict.fromkeys(KINDS, 0)
    _jobs(report)
    _export_runs(report)
    _plain(report, "webhook_deliveries", _webhook_deliveries(report.before), children=("attempt_log",))
    _plain(report, "inbox_files", _inbox_files(report.before), children=("events",))
    _plain(report, "resolved_problems", Problem.objects.filter(resolved_at__lt=report.before))
    for name, purger in purgers_registered():
        report.add(name, import_string(purger)(before=report.before, dry_run=dry_run, batch=ROW_BATCH))
    return report


# -- import jobs -------------------------------------------------------------------------------------------------


def _open_problem_jobs() -> set[int]:
    """Return the jobs an open problem names (job:12, job:12:CODE): its evidence stays."""
    ids = set()
    for key in Problem.objects.filter(resolved_at__isnull=True, kind=ProblemKind.IMPORT_JOB).values_list(
        "key", flat=True
    ):
        number = key.split(":")[1] if key.count(":") >= 1 else ""
        if number.isdigit():
            ids.add(int(number))
    return ids


def jobs_purgeable(before: datetime) -> models.QuerySet[ImportJob]:
    """Return the jobs that ended before then whose files have all ended before then too.

    A job still queued or running, one with a file (of its own, or taken over) still queued, running or waiting (a
    sequence wait, a cancelled job's file a re-run finishes), one whose file a later job finished after then, and
    one an open problem names are kept. The ledger of imported names (ImportedFileName) is never deleted: it
    outlives its files.
    """
    # Its own files, and those it took over from another job: a file it stopped in (cancelled, or errored) is
    # its to finish; purged, the file would look abandoned and a sweeper job would import it behind the cancel.
    at_work = ImportFile.objects.filter(job=OuterRef("pk")).exclude(status__in=FILE_FINAL)
    taken_at_work = ImportFile.objects.filter(processed_by=OuterRef("pk")).exclude(status__in=FILE_FINAL)
    lately = ImportFile.objects.filter(job=OuterRef("pk"), finished_at__gte=before)
    return (
        ImportJob.objects.annotate(ended=Coalesce("finished_at", "created_at"))
        .filter(status__in=JOB_STOPPED, ended__lt=before)
        .exclude(pk__in=_open_problem_jobs())
        .exclude(Exists(at_work))
        .exclude(Exists(taken_at_work))  # (two lookups, each by its own index: an OR of both would scan the files)
        .exclude(Exists(lately))
    )


def _jobs(report: PurgeReport) -> None:
    jobs = jobs_purgeable(report.before)
    if report.dry_run:
        files = ImportFile.objects.filter(job__in=jobs)
        report.add("jobs", jobs.count())
        report.add("files", files.count())
        report.add("row_errors", RowError.objects.filter(file__in=files).count())
        report.add("events", ImportEvent.objects.filter(job__in=jobs).count())
        report.add("stored_copies", files.exclude(path="").count())
        return
    last = 0
    while ids := list(jobs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:BATCH]):
        last = ids[-1]
        # The big children first, a transaction per ROW_BATCH: the job's own transaction stays small.
        files = ImportFile.objects.filter(job_id__in=ids)
        report.add("row_errors", delete_in_batches(RowError.objects.filter(file__in=files)))
        report.add("events", delete_in_batches(ImportEvent.objects.filter(job_id__in=ids)))
        delete_in_batches(ImportEvent.objects.filter(file__in=files))  # a later job's events of these files
        delete_in_batches(ImportChunk.objects.filter(file__in=files))
        with transaction.atomic():
            # The jobs another purge holds are its own to delete; a job that changed since it was listed (run again
            # meanwhile: queued) is no longer history: asked again under the lock.
            ids = list(
                jobs.filter(pk__in=ids).select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)
            )
            files = ImportFile.objects.filter(job_id__in=ids)
            stored = list(files.exclude(path="").values_list("path", "status"))
            kept = _delete_copies([path for path, _ in stored], report, count_as="stored_copies")
            # The reason written beside a rejected file goes with it (a missing one is gone already).
            _delete_copies([reason_file_name(path) for path, status in stored if status == FileStatus.REJECTED])
            if kept:
                # A copy that could not be deleted keeps its job (and its path): the next purge tries again.
                failed = set(files.filter(path__in=kept).values_list("job_id", flat=True))
                ids = [pk for pk in ids if pk not in failed]
            report.add("files", ImportFile.objects.filter(job_id__in=ids).delete()[1].get("impex.ImportFile", 0))
            report.add("jobs", ImportJob.objects.filter(pk__in=ids).delete()[1].get("impex.ImportJob", 0))


# -- export runs, and the files they sent ------------------------------------------------------------------------


def export_runs_purgeable(before: datetime) -> models.QuerySet[ExportRun]:
    """Return the export runs that ended before then, but the failed runs of a group with an open export problem."""
    open_groups = [
        key.removeprefix("export-group:")
        for key in Problem.objects.filter(resolved_at__isnull=True, kind=ProblemKind.EXPORT).values_list(
            "key", flat=True
        )
    ]
    ended = [ExportRunStatus.COMPLETED, ExportRunStatus.FAILED, ExportRunStatus.SKIPPED]
    return (
        ExportRun.objects.annotate(ended=Coalesce("finished_at", "created_at"))
        .filter(status__in=ended, ended__lt=before)
        .exclude(Q(status=ExportRunStatus.FAILED) & Q(group__code__in=open_groups))
    )


def _export_runs(report: PurgeReport) -> None:
    runs = export_runs_purgeable(report.before)
    sent = SentFile.objects.filter(run__in=runs)
    if report.dry_run:
        report.add("export_runs", runs.count())
        report.add("sent_files", sent.count())
        report.add("sent_copies", sent.exclude(copy_path="").count())
        return
    last = 0
    while ids := list(runs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:BATCH]):
        last = ids[-1]
        with transaction.atomic():
            ids = list(
                ExportRun.objects.filter(pk__in=ids).select_for_update(skip_locked=True).values_list("pk", flat=True)
            )
            files = SentFile.objects.filter(run_id__in=ids)
            # Only the hub's own copy: the file sent is the destination's.
            # A resend's record shares the copy of the file it sends again: a copy still named elsewhere stays.
            named_elsewhere = SentFile.objects.exclude(run_id__in=ids).filter(copy_path=OuterRef("copy_path"))
            copies = list(
                files.exclude(copy_path="").exclude(Exists(named_elsewhere)).values_list("copy_path", flat=True)
            )
            kept = _delete_copies(copies, report, count_as="sent_copies")
            if kept:
                failed = set(files.filter(copy_path__in=kept).values_list("run_id", flat=True))
                ids = [pk for pk in ids if pk not in failed]
            report.add("sent_files", SentFile.objects.filter(run_id__in=ids).delete()[0])
            report.add("export_runs", ExportRun.objects.filter(pk__in=ids).delete()[1].get("impex.ExportRun", 0))


# -- the rest: rows with nothing stored beside them --------------------------------------------------------------


def _webhook_deliveries(before: datetime) -> models.QuerySet[WebhookDelivery]:
    """Deliveries done (delivered, or given up without an open problem) before then."""
    open_keys = Problem.objects.filter(resolved_at__isnull=True, kind=ProblemKind.WEBHOOK).values_list("key", flat=True)
    given_up = [int(key.rpartition(":")[2]) for key in open_keys if key.rpartition(":")[2].isdigit()]
    return WebhookDelivery.objects.filter(
        status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED], created_at__lt=before
    ).exclude(pk__in=given_up)


def _inbox_files(before: datetime) -> models.QuerySet[InboxFile]:
    """The inbox's records of files that left it (taken into a job and removed, or gone) before then."""
    left = Q(status=InboxStatus.GONE) | Q(status=InboxStatus.TAKEN, left_inbox_at__isnull=False)
    return InboxFile.objects.filter(left, last_seen__lt=before)


def _plain(report: PurgeReport, kind: str, rows: models.QuerySet, *, children: Iterable[str] = ()) -> None:
    if report.dry_run:
        report.add(kind, rows.count())
        return
    model = rows.model
    for name in children:  # their many small rows first, in their own batches
        related = model._meta.get_field(name)
        child = related.related_model.objects.filter(**{f"{related.field.name}__in": rows})
        delete_in_batches(child)
    report.add(kind, delete_in_batches(rows))


def delete_in_batches(rows: models.QuerySet, *, batch: int = ROW_BATCH) -> int:
    """Delete the rows a queryset selects, batch by batch (a transaction each); return how many went."""
    model = rows.model
    deleted = 0
    while True:
        with transaction.atomic():
            # Rows another purge is deleting now are skipped: two purges at once take turns, never wait on each other.
            pks = list(rows.order_by("pk").select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch])
            if pks:
                deleted += model.objects.filter(pk__in=pks).delete()[1].get(model._meta.label, 0)
        if len(pks) < batch:
            return deleted


def _delete_copies(names: list[str], report: PurgeReport | None = None, *, count_as: str = "") -> list[str]:
    """Delete stored copies (a missing one is gone already); return the paths that could not be deleted."""
    kept = []
    for path in names:
        try:
            storage, name = resolve_path(path)
            delete_file(storage, name)
        except Exception as exc:  # a location refused or out of reach: the record stays, to be purged next time
            log.warning("could not delete %s: %s", path, exc)
            kept.append(path)
            if report is not None:
                report.kept_copies.append(f"{path}: {exc}")
            continue
        if report is not None:
            report.add(count_as, 1)
    return kept
