"""What the sync-log dashboard shows: the log, its open errors, and rows synced and errors per day."""

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from django.db.models import Count, IntegerField, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.urls import reverse
from django.utils import timezone

from impex.choices import FileStatus
from impex.models import ImportFile
from syncapp.choices import RecordEventStatus
from syncapp.models import RecordEvent, SyncError, SyncLog

CHART_DAYS = 30


@dataclass
class Day:
    day: date
    rows: int = 0
    errors: int = 0
    files: int = 0
    events: int = 0
    jobs_url: str = ""


def sync_days(log: SyncLog, *, days: int = CHART_DAYS) -> list[Day]:
    """Return rows synced and rows refused per day (in the site's time zone) over the last days, oldest first.

    Files count their applied rows (created, updated, unchanged, retired) and refused rows; single-record updates
    count one row each, applied or failed.
    """
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(timezone.datetime.combine(first, timezone.datetime.min.time()), tz)
    chart = {first + timedelta(days=n): Day(first + timedelta(days=n)) for n in range(days)}
    files = (
        ImportFile.objects.filter(
            connection=log.connection_id,
            descriptor__entity=log.entity,
            status=FileStatus.IMPORTED,
            finished_at__gte=start,
            job__dry_run=False,
        )
        .annotate(day=TruncDate("finished_at", tzinfo=tz))
        .values("day")
        .annotate(
            created=Sum("created"),
            updated=Sum("updated"),
            unchanged=Sum("unchanged"),
            retired=Sum("retired"),
            failed=Sum("failed"),
            files=Count("pk"),
        )
    )
    for row in files:
        day = chart.get(row["day"])
        if day is not None:
            day.rows += sum(row[k] or 0 for k in ("created", "updated", "unchanged", "retired"))
            day.errors += row["failed"] or 0
            day.files += row["files"]
    events = (
        RecordEvent.objects.filter(connection=log.connection_id, entity=log.entity, applied_at__gte=start)
        .annotate(day=TruncDate("applied_at", tzinfo=tz))
        .values("day")
        .annotate(
            ok=Count("pk", filter=Q(status__in=(RecordEventStatus.APPLIED, RecordEventStatus.UNCHANGED))),
            failed=Count("pk", filter=Q(status=RecordEventStatus.FAILED)),
        )
    )
    for row in events:
        day = chart.get(row["day"])
        if day is not None:
            day.rows += row["ok"]
            day.errors += row["failed"]
            day.events += row["ok"] + row["failed"]
    jobs = reverse("admin:impex_importjob_changelist")
    for day in chart.values():
        query = {
            "connection__id__exact": log.connection_id,
            "created_at__year": day.day.year,
            "created_at__month": day.day.month,
            "created_at__day": day.day.day,
        }
        day.jobs_url = f"{jobs}?{urlencode(query)}"
    return list(chart.values())


def chart_bars(days: list[Day], *, width: int = 720, height: int = 160) -> dict:
    """Lay out the chart's bars (server-rendered SVG, no script): one group per day, rows and errors side by side."""
    top = max([d.rows for d in days] + [d.errors for d in days] + [1])
    slot = width / len(days)
    bar = max(slot / 2 - 2, 1)
    bars = []
    for n, d in enumerate(days):
        rows_h = round(height * d.rows / top, 1)
        errors_h = round(height * d.errors / top, 1)
        x = round(n * slot + 1, 1)
        bars.append(
            {
                "day": d,
                "x": x,
                "x_errors": round(x + bar + 1, 1),
                "width": round(bar, 1),
                "rows_h": rows_h,
                "rows_y": round(height - rows_h, 1),
                "errors_h": errors_h,
                "errors_y": round(height - errors_h, 1),
                "label": n % 5 == 0 or n == len(days) - 1,
            }
        )
    return {"bars": bars, "width": width, "height": height, "top": top}


def open_errors(log: SyncLog, *, query: str = ""):
    """Return the log's open errors, newest seen first, narrowed by a search of external id, message or file."""
    errors = SyncError.objects.filter(log=log).select_related("job", "record_event")
    if query:
        errors = errors.filter(
            Q(external_id__icontains=query) | Q(message__icontains=query) | Q(file_name__icontains=query)
        )
    return errors.order_by("-updated_at", "external_id")


def open_error_counts() -> dict[int, int]:
    """Return the number of open errors of each connection that has some, by connection id."""
    return dict(SyncError.objects.values_list("log__connection").annotate(n=Count("pk")).order_by())


def open_error_count(*, connection) -> Coalesce:
    """Count, in a subquery, a connection's open errors, 0 if none (connection: e.g. OuterRef("pk"))."""
    errors = SyncError.objects.filter(log__connection=connection)
    counted = errors.order_by().values("log__connection").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)
