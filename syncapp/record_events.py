"""Single-record updates sent over HTTP (SPEC section 10, POST /api/events/customers/ and products/).

A changed customer or product variant is checked when it arrives (a body that does not read is a 400), kept as a
RecordEvent, and applied by a worker through the record pipeline, the rule book of files: absent columns are left
alone, an update that changes nothing writes nothing, a bad value is refused. A worker claims the due events in
batches and applies a batch set-based: the events of one connection and descriptor that send the same columns go
through one pipeline call, and each event still gets its own outcome. The outcome is a partial sync of the
connection's sync log (SPEC section 8). The events of one record apply in the order they were received (a batch
holds at most the earliest unfinished one of each record); a reference to a record that is not there yet (a parent
customer) is tried again with back-off, then fails.
"""

import logging
import operator
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import reduce

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q, TextField, Value
from django.db.models.functions import Concat
from django.urls import reverse
from django.utils import timezone

from impex.choices import ColumnType, ProblemKind
from impex.exceptions import ImpexError
from impex.formats.readers import Record
from impex.models import Connection, DataDescriptor
from impex.services.columns import compile_descriptor, format_value, value_styles
from impex.services.exports import column_lookup
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.pipeline import KEY_SEP, RecordPipeline
from impex.services.problems import problem_raise, problem_resolve
from impex.services.queue import (
    WorkQueue,
    queue_claim,
    queue_finish,
    queue_finish_each,
    queue_hold,
    queue_pass,
    queue_release,
    retry_plan,
    worker_name,
)
from impex.services.webhooks import webhook_records_changed
from syncapp import services as sync
from syncapp.choices import RECORD_EVENT_FINISHED, RecordEventStatus
from syncapp.models import RecordEvent

log = logging.getLogger(__name__)

# The path's name -> the descriptor whose columns a body carries.
EVENT_DESCRIPTORS = {"customers": "KS_CUSTOMERS", "products": "KS_PRODUCTS"}
# Updates claimed and applied together: a batch applies in a fixed number of queries, well inside one lease.
CLAIM_BATCH = 500
# An update is claimed (running), then applied, found unchanged, tried again later (pending) or failed for good.
RECORD_EVENTS = WorkQueue(
    RecordEvent,
    moves={
        RecordEventStatus.PENDING: (RecordEventStatus.RUNNING,),
        RecordEventStatus.RUNNING: (
            RecordEventStatus.PENDING,
            RecordEventStatus.APPLIED,
            RecordEventStatus.UNCHANGED,
            RecordEventStatus.FAILED,
        ),
    },
)
RECORD_EVENTS_PASS = Pass(
    "single-record updates", "syncapp.tasks.record_events", "single-record updates", "single-record update(s)"
)


class RecordRefused(ImpexError):
    """A body that is not one readable record: errors maps a column (or "non_field_errors") to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class EventReport:
    event: int
    record: str
    status: str
    message: str

    def as_json(self) -> dict:
        return asdict(self)


def _compiled(descriptor_code: str, connection):
    descriptor = DataDescriptor.objects.prefetch_related("columns").get(code=descriptor_code)
    return compile_descriptor(descriptor, tz=connection.timezone or settings.TIME_ZONE)


def _cells(body: dict, compiled) -> tuple[list[str], list[str], dict]:
    """Turn a JSON record into a header and the cells of a file row; JSON types a file cannot hold are errors."""
    styles = value_styles(compiled.descriptor)
    header, cells, errors = [], [], {}
    for name, value in body.items():
        column = compiled.columns.get(name)
        if column is None:
            errors[name] = [f"unknown column (KS columns: {', '.join(compiled.columns)})"]
            continue
        if isinstance(value, dict | list):
            errors[name] = ["a single value is expected, not an object or a list"]
            continue
        if isinstance(value, bool):
            text = format_value(value, kind=ColumnType.BOOLEAN, **styles) if column.kind == ColumnType.BOOLEAN else ""
            if column.kind != ColumnType.BOOLEAN:
                errors[name] = [f"true or false is not a {column.kind}"]
                continue
        elif value is None:
            text = ""
        else:
            text = str(value)
        header.append(name)
        cells.append(text)
    return header, cells, errors


def record_event_read(*, connection, kind: str, body) -> tuple[str, str, dict, str]:
    """Check a body as the pipeline would read it, writing nothing; return its descriptor, entity, cells and record
    key.

    Raise RecordRefused with the errors of each column (unknown references are not errors here: they may come).
    """
    if not isinstance(body, dict) or not body:
        raise RecordRefused({"non_field_errors": ["send one record as a JSON object of its columns"]})
    code = EVENT_DESCRIPTORS[kind]
    compiled = _compiled(code, connection)
    header, cells, errors = _cells(body, compiled)
    missing = [c.name for c in compiled.key_columns if c.name not in header and c.default is None]
    for name in missing:
        errors.setdefault(name, []).append("this key column is required")
    if errors:
        raise RecordRefused(errors)
    try:
        pipeline = RecordPipeline(
            compiled=compiled, header=header, connection_id=connection.pk, in_file=False, partial=True
        )
    except ImpexError as exc:
        raise RecordRefused({"non_field_errors": [str(exc)]}) from exc
    try:
        (reading,) = pipeline.read([Record(index=0, row=1, values=cells, error=None)])
    finally:
        pipeline.drop()
    refs = {c.name for _, c in pipeline.refs}
    for name, message in reading.errors.items():
        if name not in refs or not message.startswith("unknown "):
            errors.setdefault(name, []).append(message)
    if reading.problems:
        errors.setdefault("non_field_errors", []).extend(reading.problems)
    if errors:
        raise RecordRefused(errors)
    key = KEY_SEP.join(str(reading.values[c.name]) for c in compiled.key_columns if c.name in reading.values)
    return code, compiled.descriptor.entity, dict(zip(header, cells, strict=True)), key.replace(KEY_SEP, "/")


def record_event_receive(*, connection, kind: str, body) -> RecordEvent:
    """Keep a changed record for the worker (202): checked now, applied soon, in the order received."""
    code, entity, cells, key = record_event_read(connection=connection, kind=kind, body=body)
    # One statement, committed on its own (no BEGIN and COMMIT to send); the pass is queued once it has committed.
    event = RecordEvent.objects.create(
        connection=connection, entity=entity, descriptor_code=code, record_key=key[:200], payload=cells
    )
    record_events_soon()
    return event


def record_events_soon() -> None:
    """Have a worker apply the updates once the current transaction commits (one task waits at most)."""
    pass_enqueue(RECORD_EVENTS_PASS)


def record_events_task(*, ticket: str | None = None) -> str:
    """Run one bounded pass of single-record updates as a cluster task (impex.services.passes)."""
    return pass_run(
        RECORD_EVENTS_PASS,
        run=lambda worker, seconds: len(record_events_pass(by="task: record_events", worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
        ticket=ticket,
    )


# -- applying ------------------------------------------------------------------------------------------


def _due(now):
    earlier_open = RecordEvent.objects.filter(
        entity=OuterRef("entity"), record_key=OuterRef("record_key"), pk__lt=OuterRef("pk")
    ).exclude(status__in=RECORD_EVENT_FINISHED)
    return RecordEvent.objects.filter(
        Q(status=RecordEventStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=RecordEventStatus.RUNNING, lease_until__lt=now)
    ).exclude(Exists(earlier_open))


def _claim(*, worker: str, size: int) -> list[RecordEvent]:
    """Take up to size due events for this worker; two workers never take the same one, nor two of one record."""
    ids = queue_claim(RECORD_EVENTS, _due(timezone.now()), worker=worker, size=size, order_by=("pk",))
    events = list(
        RecordEvent.objects.filter(pk__in=ids, claimed_by=worker, status=RecordEventStatus.RUNNING)
        .only("connection", "entity", "descriptor_code", "record_key", "payload", "attempts")
        .order_by("pk")
    )
    connections = Connection.objects.in_bulk({e.connection_id for e in events})
    for event in events:
        event.connection = connections[event.connection_id]
    return events


def record_events_pass(
    *, by: str = "", limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[EventReport]:
    """Apply every due single-record update (or up to limit, or for about so many seconds); return what each did.

    Updates are claimed CLAIM_BATCH at a time and each batch is applied set-based; once seconds are up (after one
    batch at least, so that every pass moves on) no further batch is claimed.
    """
    worker = worker or worker_name()
    return queue_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        apply=lambda events: _apply_batch(events, worker=worker),
        release=lambda events: queue_release(RECORD_EVENTS, [e.pk for e in events], worker=worker),
        size=CLAIM_BATCH,
        limit=limit,
        seconds=seconds,
        on_error=lambda event, exc: _failed_unexpectedly(event, exc, worker=worker),
    )


def _failed_unexpectedly(event: RecordEvent, exc: Exception, *, worker: str) -> None:
    """Record that applying an update raised something unexpected (a bug, a surprise of the data): tried again
    with the back-off, failed for good (in the sync log, a problem) once its tries are used up."""
    with transaction.atomic():
        if not queue_hold(RECORD_EVENTS, [event.pk], worker=worker, renew=False):
            return
        outcomes = {event.pk: _retry_or_fail(event, f"unexpected error: {exc.__class__.__name__}: {exc}")}
        _log_group([event], outcomes)
        _end([event], outcomes, worker=worker)


@dataclass
class _Outcome:
    """What applying one event did: its status, result and message, and for a failure the sync log's message."""

    status: str
    result: str = ""
    message: str = ""
    log_message: str = ""
    log_row: int | None = None
    next_attempt_at: datetime | None = None


# How an event that was written (or found equal) ends: its result and the message after its record key.
_WRITTEN = {
    "created": (RecordEventStatus.APPLIED, " created"),
    "updated": (RecordEventStatus.APPLIED, " updated"),
    "unchanged": (RecordEventStatus.UNCHANGED, " unchanged: nothing written"),
}


def _written(event: RecordEvent, result: str) -> _Outcome:
    status, tail = _WRITTEN[result]
    return _Outcome(status, result=result, message=f"{event.record_key}{tail}")


def _refused(message: str, *, log_message: str = "", log_row: int | None = None) -> _Outcome:
    return _Outcome(RecordEventStatus.FAILED, message=message, log_message=log_message or message, log_row=log_row)


def _retry_or_fail(event: RecordEvent, reason: str) -> _Outcome:
    """Back off and try again later (the shared back-off), or fail for good once the tries are used up."""
    plan = retry_plan(attempt=event.attempts + 1, limit=settings.IMPEX_EVENT_MAX_ATTEMPTS, message=reason)
    if plan.final:
        return _refused(plan.message)
    return _Outcome(RecordEventStatus.PENDING, message=plan.message, next_attempt_at=plan.next_at)


def _apply_batch(events: list[RecordEvent], *, worker: str) -> list[EventReport]:
    """Apply the claimed events this worker still holds, one pipeline call per group, in one transaction."""
    compiled: dict[tuple[str, str], object] = {}
    with transaction.atomic():
        # One statement re-checks every claim just before the writes and locks the rows until the batch commits: a
        # row another worker took over after a lost lease is skipped, and a worker claiming meanwhile skips these.
        held = set(queue_hold(RECORD_EVENTS, [e.pk for e in events], worker=worker, renew=False))
        events = [e for e in events if e.pk in held]
        # Events of one connection and descriptor that send the same columns go through one pipeline call.
        groups: dict[tuple, list[RecordEvent]] = {}
        for event in events:
            groups.setdefault((event.connection_id, event.descriptor_code, frozenset(event.payload)), []).append(event)
        outcomes: dict[int, _Outcome] = {}
        for group in groups.values():
            first = group[0]
            tz = first.connection.timezone or settings.TIME_ZONE
            if (first.descriptor_code, tz) not in compiled:
                compiled[first.descriptor_code, tz] = _compiled(first.descriptor_code, first.connection)
            done = _apply_group(group, compiled=compiled[first.descriptor_code, tz])
            _log_group(group, done)
            outcomes.update(done)
        _end(events, outcomes, worker=worker)
    return [EventReport(e.pk, e.record_key, outcomes[e.pk].status, outcomes[e.pk].message) for e in events]


def _apply_group(events: list[RecordEvent], *, compiled) -> dict[int, _Outcome]:
    """Apply events of one connection and descriptor that send the same columns; return each one's outcome."""
    header = list(events[0].payload)
    cells = {e.pk: [e.payload[name] for name in header] for e in events}
    missing = [n for n in compiled.required_names if n not in header]
    outcomes: dict[int, _Outcome] = {}
    if missing:
        # Required columns an update leaves out keep the stored record's values (the database wants every one);
        # a record that is not there yet cannot be created without them.
        stored = _stored_cells(compiled, events, missing)
        new = [e for e in events if e.pk not in stored]
        if new:
            outcomes.update(_refuse_new(new, compiled=compiled, header=header, cells=cells, missing=missing))
        events = [e for e in events if e.pk in stored]
        for event in events:
            cells[event.pk] += stored[event.pk]
        header = header + missing
    if not events:
        return outcomes
    try:
        with transaction.atomic():
            outcomes.update(_write(events, compiled=compiled, header=header, cells=cells))
    except DatabaseError as exc:
        if len(events) > 1:
            # One event's write broke the statement (a value a unique index refuses): each on its own finds which.
            for event in events:
                outcomes.update(_apply_group([event], compiled=compiled))
        else:
            log.warning("single-record update %s: %s", events[0].pk, exc)
            outcomes[events[0].pk] = _retry_or_fail(events[0], f"the database refused the write: {exc}")
    return outcomes


def _write(events: list[RecordEvent], *, compiled, header: list[str], cells: dict) -> dict[int, _Outcome]:
    """Write the events' records through one pipeline call; announce what changed. Return each event's outcome."""
    connection = events[0].connection
    model = compiled.model
    pipeline = RecordPipeline(
        compiled=compiled, header=header, connection_id=connection.pk, in_file=False, partial=True
    )
    records = [Record(index=n, row=n + 1, values=cells[e.pk], error=None) for n, e in enumerate(events)]
    since = timezone.now()
    result = pipeline.apply(records, final=True)
    pipeline.drop()
    references = {c.name for _, c in (*pipeline.refs, *pipeline.self_refs)}
    refused: dict[int, list] = {}
    for problem in result.problems:
        refused.setdefault(problem.row, []).append(problem)
    log_messages = {row: message for message, row in result.failed_ext.values()}
    outcomes: dict[int, _Outcome] = {}
    for row, problems in refused.items():
        event = events[row - 1]
        message = "; ".join(p.message for p in problems)
        if all(p.column in references and p.message.startswith("unknown ") for p in problems):
            # A reference to a record that is not there yet: it may come.
            outcomes[event.pk] = _retry_or_fail(event, message)
        else:
            # As before batches: the sync log names a single record's refusal as its row 1.
            outcomes[event.pk] = _refused(message, log_message=log_messages.get(row, message), log_row=1)
    written = [e for e in events if e.pk not in outcomes]
    if not written:
        return outcomes
    parent = pipeline.parent_ref[1].field_name if pipeline.parent_cols else None
    states = _states(compiled, written, since=since, parent=parent)
    changed = []
    for event in written:
        result_name, _ = states.get(event.pk, ("unchanged", None))
        outcomes[event.pk] = _written(event, result_name)
        if result_name != "unchanged":
            changed.append(event)
    if changed:
        if compiled.spec.after_records is not None:
            compiled.spec.after_records([states[e.pk][1] for e in changed])
        key_field = compiled.key_columns[0].model_field.name
        webhook_records_changed(
            entity=events[0].entity,
            model=model,
            key_field=key_field,
            keys=[str(_key_lookup(compiled, e.payload)[key_field]) for e in changed],
            since=since,
            connection=connection,
            source={"source": "api", "events": [e.pk for e in changed]},
        )
    return outcomes


def _key_lookup(compiled, cells: dict) -> dict | None:
    """Return the ORM lookup of the record a payload names, or None if its key does not read."""
    lookup = {}
    for column in compiled.key_columns:
        try:
            lookup[column.model_field.name] = column.convert(cells.get(column.name, ""))
        except ImpexError:
            return None
    return lookup


def _records_of(compiled, events: list[RecordEvent]) -> tuple[list[str], dict[int, tuple], Q | None]:
    """Return the key fields, each event's key (its values of them) and a filter of the events' stored records."""
    fields = [c.model_field.name for c in compiled.key_columns]
    keys = {}
    for event in events:
        lookup = _key_lookup(compiled, event.payload)
        if lookup is not None:
            keys[event.pk] = tuple(lookup[f] for f in fields)
    if not keys:
        return fields, keys, None
    if len(fields) == 1:
        return fields, keys, Q(**{f"{fields[0]}__in": {k[0] for k in keys.values()}})
    return fields, keys, reduce(operator.or_, (Q(**dict(zip(fields, k, strict=True))) for k in set(keys.values())))


def _stored_cells(compiled, events: list[RecordEvent], names: list[str]) -> dict[int, list[str]]:
    """Return the stored values of some columns, as a file would carry them, of the events' records that exist.

    One query for the whole group; an event whose record is not there is left out.
    """
    fields, keys, where = _records_of(compiled, events)
    if where is None:
        return {}
    styles = value_styles(compiled.descriptor)
    columns = {c.name: c for c in compiled.descriptor.columns.all()}
    lookups = [column_lookup(compiled.model, columns[name]) for name in names]
    width = len(fields)
    stored = {row[:width]: row[width:] for row in compiled.model.objects.filter(where).values_list(*fields, *lookups)}
    cells = {}
    for pk, key in keys.items():
        values = stored.get(key)
        if values is not None:
            cells[pk] = [format_value(v, kind=columns[n].type, **styles) for n, v in zip(names, values, strict=True)]
    return cells


def _states(compiled, events: list[RecordEvent], *, since, parent: str | None) -> dict[int, tuple[str, int]]:
    """Return what a write that started at since did to each event's record: created, updated or unchanged, and its
    primary key (one query). A record whose parent changed (a product's title) counts as updated, as in a file."""
    fields, keys, where = _records_of(compiled, events)
    if where is None:
        return {}
    extra = [f"{parent}__updated_at"] if parent else []
    width = len(fields)
    found = {
        row[:width]: row[width:]
        for row in compiled.model.objects.filter(where).values_list(*fields, "pk", "created_at", "updated_at", *extra)
    }
    states = {}
    for pk, key in keys.items():
        if key not in found:
            continue
        record_pk, created_at, updated_at, *parent_updated = found[key]
        if created_at >= since:
            states[pk] = ("created", record_pk)
        elif updated_at >= since or any(t is not None and t >= since for t in parent_updated):
            states[pk] = ("updated", record_pk)
        else:
            states[pk] = ("unchanged", record_pk)
    return states


def _refuse_new(
    events: list[RecordEvent], *, compiled, header: list[str], cells: dict, missing: list[str]
) -> dict[int, _Outcome]:
    """Say why events naming records that are not there, without every required column, are not applied.

    A reference to a record that is not there yet is tried again (it may come); a bad value fails; the others fail
    for the columns a new record needs.
    """
    model = compiled.model
    pipeline = RecordPipeline(
        compiled=compiled, header=header, connection_id=events[0].connection_id, in_file=False, partial=True
    )
    readings = pipeline.read([Record(index=n, row=n + 1, values=cells[e.pk], error=None) for n, e in enumerate(events)])
    references = {c.name for _, c in pipeline.refs}
    stored_refs = {}
    for _, column in pipeline.self_refs:
        named = {r.values.get(column.name) for r in readings} - {None}
        stored_refs[column.name] = set(
            model.objects.filter(**{f"{column.ref_key}__in": named}).values_list(column.ref_key, flat=True)
        )
    outcomes = {}
    for event, reading in zip(events, readings, strict=True):
        unknown = [m for name, m in reading.errors.items() if name in references and m.startswith("unknown ")]
        for _, column in pipeline.self_refs:
            value = reading.values.get(column.name)
            if value is not None and value not in stored_refs[column.name]:
                unknown.append(f"unknown {model._meta.verbose_name} '{value}'")
        only_unknown = all(name in references and m.startswith("unknown ") for name, m in reading.errors.items())
        if unknown and not reading.problems and only_unknown:
            outcomes[event.pk] = _retry_or_fail(event, "; ".join(unknown))
        elif reading.errors or reading.problems:
            outcomes[event.pk] = _refused(
                "; ".join([*reading.errors.values(), *reading.problems]),
                log_message="; ".join(f"{name}: {m}" for name, m in reading.errors.items()),
                log_row=1,
            )
        else:
            outcomes[event.pk] = _refused(f"a new {model._meta.verbose_name} needs {', '.join(missing)}")
    return outcomes


def _log_group(events: list[RecordEvent], outcomes: dict[int, _Outcome]) -> None:
    """Patch the group's sync log (a partial sync) and its problems with each event's outcome, a few queries in all."""
    first = events[0]
    connection, entity = first.connection, first.entity
    failed = [e for e in events if outcomes[e.pk].status == RecordEventStatus.FAILED]
    synced = [e for e in events if outcomes[e.pk].status in (RecordEventStatus.APPLIED, RecordEventStatus.UNCHANGED)]
    if failed:
        sync.sync_log_add_errors(
            connection=connection,
            entity=entity,
            errors={e.record_key: (outcomes[e.pk].log_message, outcomes[e.pk].log_row) for e in failed},
            record_event_ids={e.record_key: e.pk for e in failed},
        )
    if synced:
        sync.sync_log_resolve(connection=connection, entity=entity, external_ids=[e.record_key for e in synced])
        # The records are in sync now: the updates of them that failed before are behind them.
        latest = {e.record_key: e.pk for e in synced}
        earlier = RecordEvent.objects.filter(
            connection_id=connection.pk,
            entity=entity,
            record_key__in=list(latest),
            status=RecordEventStatus.FAILED,
            pk__lt=max(latest.values()),
        ).values_list("pk", "record_key")
        stale = [f"record-event:{pk}" for pk, key in earlier if pk < latest[key]]
        if stale:
            problem_resolve(keys=stale)
    if failed or synced:
        sync.sync_log_finish(connection=connection, entity=entity, full=False)
    for event in failed:
        problem_raise(
            kind=ProblemKind.RECORD_EVENT,
            key=f"record-event:{event.pk}",
            connection=connection.pk,
            message=(
                f"the update of {entity} {event.record_key} (event #{event.pk}) failed for good: "
                f"{outcomes[event.pk].message}"
            ),
            url=reverse("admin:syncapp_recordevent_change", args=[event.pk]),
        )


def _end(events: list[RecordEvent], outcomes: dict[int, _Outcome], *, worker: str) -> None:
    """Record each event's outcome: one UPDATE per kind of success, one each for failures and retries."""
    now = timezone.now()
    for result_name, (status, tail) in _WRITTEN.items():
        pks = [pk for pk, o in outcomes.items() if o.result == result_name]
        if pks:
            queue_finish(
                RECORD_EVENTS,
                pks,
                worker=worker,
                status=status,
                result=result_name,
                message=Concat("record_key", Value(tail), output_field=TextField()),
                applied_at=now,
            )
    others = [e for e in events if not outcomes[e.pk].result]
    retried = {
        e.pk: (outcomes[e.pk].message, e.attempts + 1, outcomes[e.pk].next_attempt_at)
        for e in others
        if outcomes[e.pk].status == RecordEventStatus.PENDING
    }
    queue_finish_each(
        RECORD_EVENTS,
        retried,
        fields=["message", "attempts", "next_attempt_at"],
        status=RecordEventStatus.PENDING,
        result="",
    )
    failed = {
        e.pk: (outcomes[e.pk].message, e.attempts + 1)
        for e in others
        if outcomes[e.pk].status == RecordEventStatus.FAILED
    }
    queue_finish_each(
        RECORD_EVENTS,
        failed,
        fields=["message", "attempts"],
        status=RecordEventStatus.FAILED,
        result="",
        applied_at=now,
    )
