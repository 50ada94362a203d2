"""The django-q2 schedules of the hub, derived from code and data (connections, export groups) by one function.

The apps above impex ask for theirs in their ready() (impex.registry.schedule_register); impex names none of them.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connections, transaction
from django.utils import timezone
from django_q.models import Schedule

from impex.choices import GroupDirection
from impex.models import Connection, DataGroup
from impex.registry import schedules_registered
from impex.services.scan_loop import LOOP_TIMEOUT, fast_connections

# Every schedule impex owns has a name starting so; schedules_sync removes those no longer wanted.
PREFIX = "impex: "
SCAN_TASK = "impex.tasks.inbox_scan"
EXPORT_TASK = "impex.tasks.export_group_run"
LOOP_TASK = "impex.tasks.inbox_scan_loop"
# The scan loop of the connections scanned every few seconds: a task a minute, each running about a minute
# (impex.services.scan_loop), so that a late one is covered by the one before it.
LOOP_SCHEDULE = f"{PREFIX}scan the inboxes scanned every few seconds"

# impex's own: name -> (task, minutes between runs); the other apps' come from the registry (system_schedules)
SYSTEM_SCHEDULES = {
    "impex: queue again import jobs whose worker died": ("impex.tasks.import_jobs_requeue", 1),
    "impex: fail export runs whose worker died, remove temporary files": ("impex.tasks.export_runs_sweep", 1),
    "impex: tell contacts about long sequence waits": ("impex.tasks.sequence_wait_alerts", 5),
    "impex: deliver outbound webhooks": ("impex.tasks.webhooks_deliver", 1),
    "impex: purge the history older than the retention": ("impex.tasks.history_purge", 24 * 60),
}


@dataclass(frozen=True)
class Wanted:
    """A schedule that should exist: by name, its task and arguments, every so many minutes or by cron.

    kwargs: the task's keyword arguments as django-q2 keeps them (a dict's repr); "q_options" in it are the task's
    own options (its timeout).
    """

    name: str
    func: str
    args: str = ""
    minutes: int | None = None
    cron: str = ""
    kwargs: str = ""

    @property
    def fields(self) -> dict:
        kind = Schedule.CRON if self.cron else Schedule.MINUTES
        return {
            "func": self.func,
            "args": self.args or None,
            "kwargs": self.kwargs or None,
            "schedule_type": kind,
            "minutes": None if self.cron else self.minutes,
            "cron": self.cron or None,
        }


def scan_schedule_name(connection: Connection) -> str:
    """Return the name of a connection's scan schedule."""
    return f"{PREFIX}scan the inbox of {connection.code}"


def export_schedule_name(group: DataGroup) -> str:
    """Return the name of an export group's schedule."""
    return f"{PREFIX}export {group.code}"


def system_schedules() -> dict[str, tuple[str, int]]:
    """Return the schedules wanted whatever the data, impex's and those the apps registered: name -> (task, minutes)."""
    registered = {f"{PREFIX}{s.name}": (s.func, s.minutes) for s in schedules_registered()}
    return {**SYSTEM_SCHEDULES, **registered}


def _system() -> Iterator[Wanted]:
    for name, (func, minutes) in system_schedules().items():
        yield Wanted(name=name, func=func, minutes=minutes)


def _connection_scans() -> Iterator[Wanted]:
    scanned = Connection.objects.filter(active=True, scan_enabled=True, scan_seconds__isnull=True)
    for conn in scanned.order_by("code"):
        yield Wanted(
            name=scan_schedule_name(conn),
            func=SCAN_TASK,
            args=f"({conn.pk},)",
            minutes=conn.interval_minutes or 1,
            cron=conn.scan_cron,
        )


def _scan_loop() -> Iterator[Wanted]:
    if fast_connections().exists():
        options = {"q_options": {"timeout": LOOP_TIMEOUT}}
        yield Wanted(name=LOOP_SCHEDULE, func=LOOP_TASK, minutes=1, kwargs=repr(options))


def _group_exports() -> Iterator[Wanted]:
    groups = DataGroup.objects.filter(direction=GroupDirection.EXPORT, schedule_enabled=True).order_by("code")
    for group in groups:
        if not (group.cron or group.interval_minutes):
            continue  # DataGroup.clean refuses it; a group made in code without either has no schedule
        yield Wanted(
            name=export_schedule_name(group),
            func=EXPORT_TASK,
            args=f"({group.pk},)",
            minutes=None if group.cron else group.interval_minutes,
            cron=group.cron,
        )


@transaction.atomic
def schedules_sync() -> list[str]:
    """Create, update or remove impex's schedules so that exactly the wanted ones exist, once each; return names.

    Idempotent: run on every migrate (deploys, make run) and whenever a connection or export group is saved.
    A changed schedule runs next at once, so that a shorter interval is not held back by the old one.
    """
    wanted = {w.name: w for w in (*_system(), *_connection_scans(), *_scan_loop(), *_group_exports())}
    kept: dict[str, int] = {}  # name -> pk of the one schedule of that name that stays
    now = timezone.now()
    for schedule in Schedule.objects.select_for_update().filter(name__startswith=PREFIX).order_by("pk"):
        want = wanted.get(schedule.name)
        if want is None or schedule.name in kept:
            continue  # not wanted, or a second of one name: removed below
        kept[schedule.name] = schedule.pk
        fields = want.fields
        if any(getattr(schedule, key) != value for key, value in fields.items()):
            Schedule.objects.filter(pk=schedule.pk).update(**fields, next_run=now, repeats=-1)
    Schedule.objects.filter(name__startswith=PREFIX).exclude(pk__in=kept.values()).delete()
    for name, want in wanted.items():
        if name not in kept:
            Schedule.objects.create(name=name, repeats=-1, next_run=now, **want.fields)
    return list(wanted)


def schedules_sync_after_migrate(sender, using="default", **kwargs) -> None:
    """Sync the schedules after every migrate (post_migrate), once django-q2's tables exist."""
    if Schedule._meta.db_table in connections[using].introspection.table_names():
        schedules_sync()


def schedules_sync_on_commit() -> None:
    """Bring the schedules in line once the change that calls this is committed."""
    transaction.on_commit(schedules_sync)
