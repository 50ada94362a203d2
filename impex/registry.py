"""What the apps above impex register with it in their AppConfig.ready(): impex reads this, never imports them.

The floors: impex (connections, tokens, API auth, the engine, jobs, webhooks, problems) <- syncapp (synced
entities, sync logs, single-record updates) <- orders. An app imports its own floor and the ones below, never one
above (tests/test_layers.py checks it); what the lower floor needs from an upper one (its entities, its schedules,
its demo, the sync-log services the engine calls) the upper one registers here, as NetBox's netbox/registry.py.
Nothing here imports a model: the apps' ready() may import it at any time.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


class SyncLogs(Protocol):
    """The sync-log services of SPEC section 8 that impex calls (syncapp keeps the logs and registers these)."""

    def has_errors(self, *, connection, entity: str) -> bool:
        """Tell whether the connection's log of an entity has open errors."""

    def id(self, *, connection, entity: str) -> int | None:
        """Return the id of the connection's log of an entity, None while it has none."""

    def start_full(self, *, connection, entity: str) -> Any:
        """Start a full sync: clear the errors of the previous log."""

    def lock(self, *, connection, entity: str) -> Any:
        """Lock the log's row until the caller's transaction ends."""

    def finish(self, *, connection, entity: str, full: bool, at=None, writes=None) -> None:
        """Stamp the log when a sync has been applied in full (in writes, a WriteBatch, if given)."""

    def add_errors(
        self,
        *,
        connection,
        entity: str,
        errors: dict,
        file_name: str = "",
        job_id=None,
        record_event_id=None,
        record_event_ids: dict | None = None,
    ) -> None:
        """Add or refresh open errors: errors maps external id -> (message, row)."""

    def resolve(self, *, connection, entity: str, external_ids) -> int:
        """Resolve the open errors of records that have now synced cleanly; return how many."""

    def resolve_later(self, *, writes, log_id: int, external_ids, then=None) -> None:
        """Queue in a WriteBatch the resolution of any open errors of a log's records that synced cleanly."""

    def open_error_counts(self) -> dict[int, int]:
        """Return the number of open errors of each connection that has some, by connection id."""

    def open_error_count(self, *, connection) -> Any:
        """Return an expression counting a connection's open errors, 0 if none (connection: e.g. OuterRef("pk"))."""

    def tables(self) -> tuple[str, ...]:
        """Return the tables the sync logs write, parents first (a dry run copies them empty)."""

    def admin_links(self, *, connection_id: int) -> dict[str, str]:
        """Return the admin's list pages of a connection's sync logs and open errors: {"logs": url, "errors": url}."""


@dataclass(frozen=True)
class SystemSchedule:
    """A schedule an app wants whatever the data: a task (its dotted name) every so many minutes."""

    name: str
    func: str
    minutes: int


@dataclass(frozen=True)
class DemoPart:
    """What an app adds to the demo (impex_demo): set_up runs first and says what it set up; run runs after
    the sample files are imported and returns what to show, by record (the JSON's `name` key, `title: ...`)."""

    name: str
    title: str
    set_up: Callable[[], str]
    run: Callable[[], dict[str, str]]


registry: dict[str, Any] = {
    # entity name -> impex.entities.EntitySpec
    "entities": {},
    # model label -> the field files name its records by
    "natural_keys": {},
    # name (without impex's prefix) -> SystemSchedule
    "schedules": {},
    # DemoPart, in the order the apps registered them
    "demo": {},
    # the one SyncLogs
    "sync_logs": None,
    # impex.choices.ProblemKind -> the function that builds a problem's mail (problem=, to=) or None
    "problem_mails": {},
    # name -> the dotted path of a function that gives a home page panel's context (home_panel_register)
    "home_panels": {},
    # name -> the dotted path of a queue of leased work (impex.services.queue.WorkQueue), for /metrics
    "work_queues": {},
    # kind -> the dotted path of a function that purges an app's history (purger_register)
    "purgers": {},
}


def schedule_register(*, name: str, func: str, minutes: int) -> None:
    """Ask for a schedule that runs func every so many minutes (its name gets impex's prefix)."""
    registry["schedules"][name] = SystemSchedule(name=name, func=func, minutes=minutes)


def schedules_registered() -> Iterable[SystemSchedule]:
    """Return the schedules the apps asked for, in the order they did."""
    return registry["schedules"].values()


def demo_register(part: DemoPart) -> None:
    """Add an app's part to the demo."""
    # Keyed by name: registering a part again (ready() run twice) replaces it.
    registry["demo"][part.name] = part


def demo_parts() -> list[DemoPart]:
    """Return the apps' parts of the demo, in the order they were registered."""
    return list(registry["demo"].values())


def sync_logs_register(service: SyncLogs) -> None:
    """Give impex the sync-log services it calls (syncapp does, in its ready())."""
    registry["sync_logs"] = service


def sync_logs() -> SyncLogs:
    """Return the registered sync-log services (look them up once per call, not per row)."""
    service = registry["sync_logs"]
    if service is None:
        raise ImproperlyConfigured("no sync-log services are registered: syncapp registers them in its ready()")
    return service


def problem_mail_register(kind: str, mail: str) -> None:
    """Give problems of a kind a mail of their own: mail names a function (a dotted path, imported when first needed,
    so that registering loads nothing) whose mail(problem=, to=) returns it, or None for the usual one."""
    registry["problem_mails"][kind] = mail


def problem_mail_of(kind: str) -> Callable | None:
    """Return the function that builds the mail of a kind of problem, None for the usual mail."""
    path = registry["problem_mails"].get(kind)
    return import_string(path) if path else None


def home_panel_register(name: str, context: str) -> None:
    """Add a panel to the home page: context names a function (a dotted path, imported when first needed) whose
    context(request) returns None (nothing for this user) or what templates/admin/hub_panels.html shows: a dict of
    id, title, count, columns, rows (each a list of (text, url) cells, url "" for none), more (rows not shown),
    url and link (the list behind the panel) and empty (what to say with no rows)."""
    # Keyed by name: registering a panel again (ready() run twice) replaces it.
    registry["home_panels"][name] = context


def home_panels(request) -> list[dict]:
    """Return the contexts of the panels registered for the home page that this request's user may see."""
    shown = []
    for path in registry["home_panels"].values():
        panel = import_string(path)(request)
        if panel is not None:
            shown.append(panel)
    return shown


def work_queue_register(name: str, queue: str) -> None:
    """Name a queue of leased work for /metrics: queue is the dotted path of its WorkQueue (imported when first read,
    so that registering loads nothing)."""
    registry["work_queues"][name] = queue


def work_queues() -> dict:
    """Return the registered queues of leased work: name -> WorkQueue."""
    return {name: import_string(path) for name, path in registry["work_queues"].items()}


def purger_register(kind: str, purger: str) -> None:
    """Let impex_purge delete an app's history too: purger names a function (a dotted path, imported when first
    needed) whose purger(before=, dry_run=, batch=) deletes (dry_run: counts) what ended before then, in batches
    of that many rows a transaction, and returns how many; kind names them in the purge's report."""
    registry["purgers"][kind] = purger


def purgers_registered() -> list[tuple[str, str]]:
    """Return the apps' purgers as (kind, dotted path), in the order they registered."""
    return list(registry["purgers"].items())
