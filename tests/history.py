"""A year of hourly deliveries, written straight into the tables (bulk_create): jobs with their files, events, row
errors and ledger entries, for the tests and the bench of the pages that list them."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from impex.models import (
    Connection,
    DataDescriptor,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    RowError,
)

BATCH = 2000


@dataclass
class History:
    connections: list[Connection]
    jobs: int = 0
    files: int = 0
    events: int = 0
    row_errors: int = 0


def history_make(
    *,
    hours: int,
    connections: int = 2,
    end: datetime | None = None,
    errors_every: int = 10,
    errors_per_file: int = 20,
    first_hour: int = 0,
) -> History:
    """Write one job per connection each hour for hours hours before end (from first_hour on, to grow a history).

    Every job has one KS_CUSTOMERS file (imported, in the ledger) and four events; every errors_every-th file
    refused errors_per_file rows; every 97th job failed (its file rejected), every 89th errored, every 101st
    was cancelled with its file queued.
    """
    end = end or timezone.now()
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    conns = []
    for n in range(connections):
        conn, _ = Connection.objects.get_or_create(
            code=f"history-{n}",
            defaults={"name": f"History {n}", "convention": "kore", "integration_id": f"HIST{n}"},
        )
        conns.append(conn)
    history = History(connections=conns)
    hours_left = range(first_hour, hours)
    for start in range(0, len(hours_left), BATCH // connections):
        _write(
            history,
            [hours_left[i] for i in range(start, min(start + BATCH // connections, len(hours_left)))],
            end=end,
            descriptor=descriptor,
            errors_every=errors_every,
            errors_per_file=errors_per_file,
        )
    return history


def _write(history: History, hours: list[int], *, end, descriptor, errors_every: int, errors_per_file: int) -> None:
    jobs, meta = [], []
    for hour in hours:
        at = end - timedelta(hours=hour)
        for conn in history.connections:
            number = hour * len(history.connections) + history.connections.index(conn)
            status = "completed"
            if number % 97 == 1:
                status = "failed"
            elif number % 89 == 2:
                status = "errored"
            elif number % 101 == 3:
                status = "cancelled"
            jobs.append(
                ImportJob(
                    status=status,
                    source="scan",
                    connection=conn,
                    created_at=at,
                    queued_at=at,
                    started_at=at,
                    finished_at=at + timedelta(seconds=20),
                    claimed_by="w-1",
                    attempts=1,
                    rows_total=500,
                    rows_done=500,
                    error="boom" if status == "errored" else "",
                )
            )
            meta.append((conn, number, status, at))
    jobs = ImportJob.objects.bulk_create(jobs)
    files = []
    for job, (conn, number, status, at) in zip(jobs, meta, strict=True):
        failed = errors_per_file if number % errors_every == 0 else 0
        file_status = {"failed": "rejected", "cancelled": "queued"}.get(status, "imported")
        files.append(
            ImportFile(
                job=job,
                processed_by=job,
                connection=conn,
                descriptor=descriptor,
                name=f"ERP_{number + 1:07d}_{conn.integration_id}_KS_CUSTOMERS.NET",
                path=f"{conn.code}/archive/ERP_{number + 1:07d}_{conn.integration_id}_KS_CUSTOMERS.NET",
                status=file_status,
                mode="NET",
                order_key=f"{number + 1:07d}",
                sequence=number + 1,
                content_hash=f"{number:064d}",
                size=40_000,
                rows_total=500,
                rows_done=500 if file_status == "imported" else 0,
                created=500 - failed if file_status == "imported" else 0,
                failed=failed,
                message="bad header" if file_status == "rejected" else "",
                started_at=at,
                finished_at=at + timedelta(seconds=20) if file_status != "queued" else None,
            )
        )
    files = ImportFile.objects.bulk_create(files)
    events, errors, ledger = [], [], []
    for f, job in zip(files, jobs, strict=True):
        for kind, message in (
            ("queued", "queued"),
            ("started", "started by w-1"),
            (f.status, f"{f.name}: {f.status}"),
            (job.status, job.status),
        ):
            events.append(
                ImportEvent(
                    job=job,
                    file=f if kind == f.status else None,
                    at=job.created_at,
                    kind=kind,
                    message=message,
                    worker="w-1",
                )
            )
        errors += [
            RowError(file=f, row=row + 2, column="email", value="", message="a required value is missing")
            for row in range(f.failed)
        ]
        if f.status == "rejected":
            errors.append(RowError(file=f, message="bad header"))
        if f.status == "imported":
            ledger.append(
                ImportedFileName(
                    connection_id=f.connection_id,
                    name=f.name,
                    content_hash=f.content_hash,
                    file=f,
                    imported_at=f.finished_at,
                )
            )
    ImportEvent.objects.bulk_create(events, batch_size=BATCH)
    RowError.objects.bulk_create(errors, batch_size=BATCH)
    ImportedFileName.objects.bulk_create(ledger, batch_size=BATCH)
    history.jobs += len(jobs)
    history.files += len(files)
    history.events += len(events)
    history.row_errors += len(errors)


def history_pages(history: History) -> dict[str, str]:
    """Return the admin pages that list a history, by name: the job list and its filters, a job with refused rows,
    the row errors, files, ledger and events, the home page and the first connection's page."""
    from impex.selectors.statuses import SHOWN_STATUSES

    conn = history.connections[0]
    job = ImportJob.objects.filter(connection=conn, files__failed__gt=0).order_by("-pk").first()
    deep = min(50, -(-ImportJob.objects.count() // 100))  # the admin lists 100 jobs a page
    return {
        "job list": "/admin/impex/importjob/",
        **{f"job list, {status}": f"/admin/impex/importjob/?status={status}" for status in SHOWN_STATUSES},
        "job list, one connection": f"/admin/impex/importjob/?connection__id__exact={conn.pk}",
        "job list, a year": f"/admin/impex/importjob/?created_at__year={job.created_at.year}",
        "job list, a search": "/admin/impex/importjob/?q=KS_CUSTOMERS",
        "job list, a deep page": f"/admin/impex/importjob/?p={deep}",
        "job page": f"/admin/impex/importjob/{job.pk}/change/",
        "row errors": "/admin/impex/rowerror/",
        "row errors of a job": f"/admin/impex/rowerror/?job={job.pk}",
        "files": "/admin/impex/importfile/",
        "ledger": "/admin/impex/importedfilename/",
        "events": "/admin/impex/importevent/",
        "home": "/admin/",
        "connection page": f"/admin/impex/connection/{conn.pk}/change/",
    }
