"""Single-record updates sent over HTTP (SPEC section 10, POST /api/events/customers/ and products/).

A changed customer or product variant is checked when it arrives (a body that does not read is a 400), kept as a
RecordEvent, and applied by a worker through the record pipeline, the rule book of files: absent columns are left
alone, an update that changes nothing writes nothing, a bad value is refused. The outcome is a partial sync of the
connection's sync log (SPEC section 8). The events of one record apply in the order they were received; a
reference to a record that is not there yet (a parent customer) is tried again with back-off, then fails.
"""

import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from impex.choices import ColumnType, ProblemKind
from impex.exceptions import ImpexError
from impex.formats.readers import Record
from impex.models import DataDescriptor
from impex.services.backoff import backoff
from impex.services.columns import compile_descriptor, format_value, value_styles
from impex.services.exports import _lookup
from impex.services.lifecycle import claim_due, claim_release, claim_renew, claim_size, claimed_pass, worker_name
from impex.services.passes import Pass, pass_enqueue, pass_run
from impex.services.pipeline import KEY_SEP, RecordPipeline, sync_log_record
from impex.services.problems import problem_raise, problem_resolve
from impex.services.webhooks import webhook_records_changed
from syncapp import services as sync
from syncapp.choices import RECORD_EVENT_FINISHED, RecordEventStatus
from syncapp.models import RecordEvent

log = logging.getLogger(__name__)

# The path's name -> the descriptor whose columns a body carries.
EVENT_DESCRIPTORS = {"customers": "KS_CUSTOMERS", "products": "KS_PRODUCTS"}
CLAIM_BATCH = 50
# What one update may take (a database write): batches are sized so that one lease covers them.
EVENT_SECONDS = 1
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


def record_event_read(*, connection, kind: str, body) -> tuple[str, dict, str]:
    """Check a body as the pipeline would read it, writing nothing; return its descriptor, cells and record key.

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
    return code, dict(zip(header, cells, strict=True)), key.replace(KEY_SEP, "/")


def record_event_receive(*, connection, kind: str, body) -> RecordEvent:
    """Keep a changed record for the worker (202): checked now, applied soon, in the order received."""
    code, cells, key = record_event_read(connection=connection, kind=kind, body=body)
    entity = DataDescriptor.objects.values_list("entity", flat=True).get(code=code)
    with transaction.atomic():
        event = RecordEvent.objects.create(
            connection=connection, entity=entity, descriptor_code=code, record_key=key[:200], payload=cells
        )
        record_events_soon()
    return event


def record_events_soon() -> None:
    """Have a worker apply the updates once the current transaction commits (one task waits at most)."""
    pass_enqueue(RECORD_EVENTS_PASS)


def record_events_task() -> str:
    """Run one bounded pass of single-record updates as a cluster task (impex.services.passes)."""
    return pass_run(
        RECORD_EVENTS_PASS,
        run=lambda worker, seconds: len(record_events_pass(by="task: record_events", worker=worker, seconds=seconds)),
        due=lambda: _due(timezone.now()).exists(),
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
    now = timezone.now()
    ids = claim_due(
        _due(now), worker=worker, size=size, lease_seconds=settings.IMPEX_LEASE_SECONDS, now=now, order_by=("pk",)
    )
    return list(
        RecordEvent.objects.filter(pk__in=ids, claimed_by=worker, status=RecordEventStatus.RUNNING)
        .select_related("connection")
        .order_by("pk")
    )


def record_events_pass(
    *, by: str = "", limit: int | None = None, worker: str | None = None, seconds: float | None = None
) -> list[EventReport]:
    """Apply every due single-record update (or up to limit, or for about so many seconds); return what each did."""
    worker = worker or worker_name()
    return claimed_pass(
        claim=lambda size: _claim(worker=worker, size=size),
        act=lambda event: _run(event, worker=worker),
        release=lambda rest: claim_release(RecordEvent, pks=[e.pk for e in rest], worker=worker),
        size=claim_size(item_seconds=EVENT_SECONDS, limit=CLAIM_BATCH),
        limit=limit,
        seconds=seconds,
    )


class _TryAgain(Exception):
    pass


def _run(event: RecordEvent, *, worker: str) -> EventReport | None:
    """Apply one event if this worker still holds its claim (None if another took it over) and record it."""
    try:
        with transaction.atomic():
            # The renewal locks the event's row until the apply commits: a worker claiming it meanwhile skips it
            # (SKIP LOCKED); one that took it over after a lost lease holds it, and this renewal finds no row.
            if not claim_renew(RecordEvent, pk=event.pk, worker=worker, seconds=settings.IMPEX_LEASE_SECONDS):
                return None
            status, result, message = _apply(event)
            _end(event, status=status, result=result, message=message)
            _report(event, status=status, message=message)
        return EventReport(event.pk, event.record_key, status, message)
    except _TryAgain as exc:
        return _retry_or_fail(event, str(exc), worker=worker)
    except DatabaseError as exc:
        log.warning("single-record update %s: %s", event.pk, exc)
        return _retry_or_fail(event, f"the database refused the write: {exc}", worker=worker)


def _apply(event: RecordEvent) -> tuple[str, str, str]:
    """Apply one event in the caller's transaction; return status, result and message."""
    connection = event.connection
    compiled = _compiled(event.descriptor_code, connection)
    header, cells = list(event.payload), list(event.payload.values())
    model = compiled.model
    key_lookup = _key_lookup(compiled, event.payload)
    existing = model.objects.filter(**key_lookup).first() if key_lookup is not None else None
    missing = [n for n in compiled.required_names if n not in header]
    if existing is not None and missing:
        # Required columns the update leaves out keep the record's values (the database wants every one).
        header, cells = header + missing, cells + _current_cells(compiled, existing, missing)
    pipeline = RecordPipeline(
        compiled=compiled, header=header, connection_id=connection.pk, in_file=False, partial=True
    )
    try:
        record = Record(index=0, row=1, values=cells, error=None)
        (reading,) = pipeline.read([record])
        unknown = [m for m in reading.errors.values() if m.startswith("unknown ")]
        for _, column in pipeline.self_refs:
            value = reading.values.get(column.name)
            if value is not None and not model.objects.filter(**{column.ref_key: value}).exists():
                unknown.append(f"unknown {model._meta.verbose_name} '{value}'")
        if unknown and not reading.problems and all(m.startswith("unknown ") for m in reading.errors.values()):
            raise _TryAgain("; ".join(unknown))
        if existing is None and missing and not reading.errors:
            message = f"a new {model._meta.verbose_name} needs {', '.join(missing)}"
            sync.sync_log_add_errors(
                connection=connection,
                entity=event.entity,
                errors={event.record_key: (message, None)},
                record_event_id=event.pk,
            )
            sync.sync_log_finish(connection=connection, entity=event.entity, full=False)
            return RecordEventStatus.FAILED, "", message
        since = timezone.now()
        result = pipeline.apply([record], final=True, collect_applied=True)
    finally:
        pipeline.drop()
    sync_log_record(result, connection=connection, entity=event.entity, open_errors=True, record_event_id=event.pk)
    sync.sync_log_finish(connection=connection, entity=event.entity, full=False)
    if result.problems:
        return RecordEventStatus.FAILED, "", "; ".join(p.message for p in result.problems)
    totals = result.totals
    if totals.created or totals.updated:
        pk = model.objects.filter(**key_lookup).values_list("pk", flat=True).first()
        if compiled.spec.after_records is not None and pk is not None:
            compiled.spec.after_records([pk])
        key_field = compiled.key_columns[0].model_field.name
        webhook_records_changed(
            entity=event.entity,
            model=model,
            key_field=key_field,
            keys=[str(key_lookup[key_field])],
            since=since,
            connection=connection,
            source={"source": "api", "event": event.pk},
        )
        result_name = "created" if totals.created else "updated"
        return RecordEventStatus.APPLIED, result_name, f"{event.record_key} {result_name}"
    return RecordEventStatus.UNCHANGED, "unchanged", f"{event.record_key} unchanged: nothing written"


def _key_lookup(compiled, cells: dict) -> dict | None:
    """Return the ORM lookup of the record a payload names, or None if its key does not read."""
    lookup = {}
    for column in compiled.key_columns:
        try:
            lookup[column.model_field.name] = column.convert(cells.get(column.name, ""))
        except ImpexError:
            return None
    return lookup


def _current_cells(compiled, record, names: list[str]) -> list[str]:
    """Return a stored record's values of some columns as a file would carry them."""
    styles = value_styles(compiled.descriptor)
    columns = {c.name: c for c in compiled.descriptor.columns.all()}
    lookups = [_lookup(compiled.model, columns[name]) for name in names]
    values = compiled.model.objects.filter(pk=record.pk).values_list(*lookups).get()
    return [format_value(v, kind=columns[n].type, **styles) for n, v in zip(names, values, strict=True)]


def _end(event: RecordEvent, *, status: str, result: str, message: str) -> None:
    RecordEvent.objects.filter(pk=event.pk).update(
        status=status,
        result=result,
        message=message,
        attempts=event.attempts + 1,
        applied_at=timezone.now(),
        claimed_by="",
        lease_until=None,
    )


def _report(event: RecordEvent, *, status: str, message: str) -> None:
    """A single-record update that failed for good is a problem of its connection; one applied resolves its own."""
    if status != RecordEventStatus.FAILED:
        # The record is in sync now: the updates of it that failed before are behind it.
        failed = RecordEvent.objects.filter(
            connection_id=event.connection_id,
            entity=event.entity,
            record_key=event.record_key,
            status=RecordEventStatus.FAILED,
            pk__lt=event.pk,
        ).values_list("pk", flat=True)
        problem_resolve(keys=[f"record-event:{pk}" for pk in failed])
        return
    problem_raise(
        kind=ProblemKind.RECORD_EVENT,
        key=f"record-event:{event.pk}",
        connection=event.connection_id,
        message=f"the update of {event.entity} {event.record_key} (event #{event.pk}) failed for good: {message}",
        url=reverse("admin:syncapp_recordevent_change", args=[event.pk]),
    )


def _retry_or_fail(event: RecordEvent, message: str, *, worker: str) -> EventReport:
    """Back off and try again later, or fail for good once the tries are used up (and say so in the sync log)."""
    attempt = event.attempts + 1
    limit = settings.IMPEX_EVENT_MAX_ATTEMPTS
    with transaction.atomic():
        mine = RecordEvent.objects.filter(pk=event.pk, claimed_by=worker, status=RecordEventStatus.RUNNING)
        if attempt >= limit:
            message = f"{message} ({attempt} tries used up)"
            done = mine.update(
                status=RecordEventStatus.FAILED,
                attempts=attempt,
                message=message,
                applied_at=timezone.now(),
                claimed_by="",
                lease_until=None,
            )
            if done:
                sync.sync_log_add_errors(
                    connection=event.connection,
                    entity=event.entity,
                    errors={event.record_key: (message, None)},
                    record_event_id=event.pk,
                )
                sync.sync_log_finish(connection=event.connection, entity=event.entity, full=False)
                _report(event, status=RecordEventStatus.FAILED, message=message)
            return EventReport(event.pk, event.record_key, RecordEventStatus.FAILED, message)
        wait = backoff(attempt)
        message = f"{message} (try {attempt} of {limit}; next in {wait})"
        mine.update(
            status=RecordEventStatus.PENDING,
            attempts=attempt,
            message=message,
            next_attempt_at=timezone.now() + wait,
            claimed_by="",
            lease_until=None,
        )
    return EventReport(event.pk, event.record_key, RecordEventStatus.PENDING, message)
