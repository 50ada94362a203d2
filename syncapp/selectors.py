"""What the sync dashboards show: a log, its open errors, every log of the hub, and rows synced and errors per day."""

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from django.db.models import Count, IntegerField, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.urls import reverse
from django.utils import timezone

from impex.choices import FileStatus
from impex.entities import entity_verbose_name
from impex.models import ImportFile
from syncapp.choices import RecordEventStatus
from syncapp.models import RecordEvent, SyncError, SyncLog

CHART_DAYS = 30
# The hub-wide dashboard's choices of how many days its chart and totals cover.
DASHBOARD_DAYS = (7, 14, 30)


@dataclass
class Day:
    day: date
    rows: int = 0
    errors: int = 0
    files: int = 0
    events: int = 0
    jobs_url: str = ""


@dataclass
class LogActivity:
    """Rows synced and refused over the chart's days for one connection's entity."""

    rows: int = 0
    errors: int = 0


@dataclass
class SyncActivity:
    """Rows synced and refused per day (oldest first), and over those days per (connection id, entity)."""

    days: list[Day]
    by_log: dict[tuple[int, str], LogActivity]

    @property
    def totals(self) -> dict:
        return {"rows": sum(d.rows for d in self.days), "errors": sum(d.errors for d in self.days)}


def sync_activity(*, connection_id: int | None = None, entity: str | None = None, days: int = CHART_DAYS):
    """Return rows synced and rows refused per day (in the site's time zone) over the last days, in two queries.

    Files count their applied rows (created, updated, unchanged, retired) and refused rows; single-record updates
    count one row each, applied or failed. No connection or entity: the whole hub's.
    """
    tz = timezone.get_current_timezone()
    first = timezone.localdate() - timedelta(days=days - 1)
    start = timezone.make_aware(timezone.datetime.combine(first, timezone.datetime.min.time()), tz)
    chart = {first + timedelta(days=n): Day(first + timedelta(days=n)) for n in range(days)}
    by_log: dict[tuple[int, str], LogActivity] = {}
    files = ImportFile.objects.filter(status=FileStatus.IMPORTED, finished_at__gte=start, job__dry_run=False)
    events = RecordEvent.objects.filter(applied_at__gte=start)
    if connection_id is not None:
        files, events = files.filter(connection=connection_id), events.filter(connection=connection_id)
    if entity is not None:
        files, events = files.filter(descriptor__entity=entity), events.filter(entity=entity)
    file_days = (
        files.annotate(day=TruncDate("finished_at", tzinfo=tz))
        .values("day", "connection_id", "descriptor__entity")
        .annotate(
            created=Sum("created"),
            updated=Sum("updated"),
            unchanged=Sum("unchanged"),
            retired=Sum("retired"),
            failed=Sum("failed"),
            files=Count("pk"),
        )
        .order_by()
    )
    for row in file_days:
        rows = sum(row[k] or 0 for k in ("created", "updated", "unchanged", "retired"))
        _add(chart, by_log, row["day"], (row["connection_id"], row["descriptor__entity"]), rows, row["failed"] or 0)
        if row["day"] in chart:
            chart[row["day"]].files += row["files"]
    event_days = (
        events.annotate(day=TruncDate("applied_at", tzinfo=tz))
        .values("day", "connection_id", "entity")
        .annotate(
            ok=Count("pk", filter=Q(status__in=(RecordEventStatus.APPLIED, RecordEventStatus.UNCHANGED))),
            failed=Count("pk", filter=Q(status=RecordEventStatus.FAILED)),
        )
        .order_by()
    )
    for row in event_days:
        _add(chart, by_log, row["day"], (row["connection_id"], row["entity"]), row["ok"], row["failed"])
        if row["day"] in chart:
            chart[row["day"]].events += row["ok"] + row["failed"]
    jobs = reverse("admin:impex_importjob_changelist")
    for day in chart.values():
        query = {} if connection_id is None else {"connection__id__exact": connection_id}
        query.update(created_at__year=day.day.year, created_at__month=day.day.month, created_at__day=day.day.day)
        day.jobs_url = f"{jobs}?{urlencode(query)}"
    return SyncActivity(days=list(chart.values()), by_log=by_log)


def _add(chart: dict, by_log: dict, day: date, log_key: tuple[int, str], rows: int, errors: int) -> None:
    if day not in chart:
        return
    chart[day].rows += rows
    chart[day].errors += errors
    activity = by_log.setdefault(log_key, LogActivity())
    activity.rows += rows
    activity.errors += errors


def sync_days(log: SyncLog, *, days: int = CHART_DAYS) -> list[Day]:
    """Return rows synced and rows refused per day of one sync log over the last days, oldest first."""
    return sync_activity(connection_id=log.connection_id, entity=log.entity, days=days).days


# The chart's frame in SVG units: it is drawn at the box's full width (the SVG scales), labels included.
CHART_WIDTH, CHART_HEIGHT = 1000, 250
CHART_MARGIN = {"left": 56, "right": 10, "top": 12, "bottom": 40}


def chart_scale(top: int, *, ticks: int = 4) -> tuple[int, int]:
    """Return a round step for the y-axis (1, 2, 5, 10, 20, 50, ...) and the axis' top, a multiple of it >= top."""
    top = max(top, 1)
    step = 1
    while step * ticks < top:
        lead = int(str(step)[0])
        step = step // lead * {1: 2, 2: 5, 5: 10}[lead]
    return step, step * -(-top // step)


def chart_layout(days: list[Day]) -> dict:
    """Lay out the chart (server-rendered SVG, no script): bars of rows and errors per day, axes, every date."""
    left, top_margin = CHART_MARGIN["left"], CHART_MARGIN["top"]
    plot_w = CHART_WIDTH - left - CHART_MARGIN["right"]
    plot_h = CHART_HEIGHT - top_margin - CHART_MARGIN["bottom"]
    step, axis_top = chart_scale(max([d.rows for d in days] + [d.errors for d in days] + [0]))
    bottom = top_margin + plot_h
    y_ticks = [
        {"value": value, "y": round(bottom - plot_h * value / axis_top, 1)} for value in range(0, axis_top + 1, step)
    ]
    slot = plot_w / len(days)
    bar = max((slot - 4) / 2, 1)
    bars = []
    for n, d in enumerate(days):
        x = left + n * slot
        rows_h = round(plot_h * d.rows / axis_top, 1)
        errors_h = round(plot_h * d.errors / axis_top, 1)
        # A day with rows but too few to see gets a sliver, so that it never looks like a day of nothing.
        rows_h = max(rows_h, 1.5) if d.rows else 0
        errors_h = max(errors_h, 1.5) if d.errors else 0
        new_month = n == 0 or d.day.day == 1
        bars.append(
            {
                "day": d,
                "slot_x": round(x, 1),
                "slot_w": round(slot, 1),
                "x": round(x + 2, 1),
                "x_errors": round(x + 2 + bar, 1),
                "width": round(bar, 1),
                "rows_y": round(bottom - rows_h, 1),
                "rows_h": rows_h,
                "errors_y": round(bottom - errors_h, 1),
                "errors_h": errors_h,
                "label_x": round(x + slot / 2, 1),
                "month": d.day.strftime("%b") if new_month else "",
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": left,
        "right": CHART_WIDTH - CHART_MARGIN["right"],
        "top": top_margin,
        "bottom": bottom,
        "middle": round(top_margin + plot_h / 2, 1),
        "day_y": bottom + 16,
        "month_y": bottom + 32,
        "tick_x": left - 6,
        "y_ticks": y_ticks,
        "bars": bars,
        "axis_top": axis_top,
    }


def sync_logs_overview(*, activity: SyncActivity) -> list[dict]:
    """Return every sync log of the hub with its connection, open errors and activity, by connection and entity."""
    logs = SyncLog.objects.select_related("connection").annotate(open_error_count=Count("errors"))
    return [
        {
            "log": log,
            "entity_name": entity_verbose_name(log.entity),
            "activity": activity.by_log.get((log.connection_id, log.entity), LogActivity()),
        }
        for log in logs.order_by("connection__code", "entity")
    ]


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
