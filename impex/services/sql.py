"""Set-based writes for the import engine: staging tables and upserts on PostgreSQL and SQLite."""

import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.db.models.constants import OnConflict
from django.db.models.sql import DeleteQuery, InsertQuery, UpdateQuery

logger = logging.getLogger(__name__)
_counter = itertools.count(1)
# The database session whose statements are bounded for as long as a job runs (per thread, as connections are).
_guarded = threading.local()


def qn(name: str) -> str:
    """Quote an identifier for the current database."""
    return connection.ops.quote_name(name)


def is_postgres() -> bool:
    """Tell whether the default database is PostgreSQL (COPY and xmax are available)."""
    return connection.vendor == "postgresql"


def joinable() -> bool:
    """Tell whether several statements may go in one execute: PostgreSQL with psycopg's client-side binding
    (Django's default; not under the server_side_binding option)."""
    return is_postgres() and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")


class Stage:
    """A temporary table holding one batch of rows before it is merged into the target table.

    Made once per database session and reused batch after batch, file after file. On PostgreSQL its rows go
    with each commit (ON COMMIT DELETE ROWS: a small file's transaction needs no statement to empty it); within
    one transaction it is emptied by a DELETE while few rows have gone through it, and by a TRUNCATE before
    dead rows pile up. It is only ever loaded inside a transaction.
    """

    TRUNCATE_AFTER = 1000
    DEFER_ROWS = 50  # rows a deferred load sends by INSERT (a small file's)

    def __init__(self, *, columns: Sequence[tuple[str, str]]):
        self.name = f"impex_stage_{next(_counter)}"
        self.columns = list(columns)  # (name, sql type)
        self._session = None  # the database session the table is known to exist in (committed)
        self._filled = 0  # rows loaded since the table was last emptied by a TRUNCATE (or made)
        self._pending: tuple[list[str], list] | None = None  # a deferred load: its statements and values
        self._made = False  # whether this process ever created the table (a pipeline that only reads never does)

    def _known(self) -> bool:
        return self._session is not None and self._session is connection.connection

    def ensure(self, cursor) -> None:
        """Create the table in this session if it is not there (a rollback drops it on PostgreSQL)."""
        if self._known():
            return
        cols = ", ".join(f"{qn(n)} {t}" for n, t in self.columns)
        on_commit = " ON COMMIT DELETE ROWS" if is_postgres() else ""
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {qn(self.name)} ({cols}){on_commit}")
        self._made = True
        session = connection.connection
        # Known only once the transaction that made it commits: a rollback would drop it again.
        transaction.on_commit(lambda: setattr(self, "_session", session))

    def load(
        self, cursor, rows: Iterable[Sequence], *, fields: Sequence[models.Field | None], defer: bool = False
    ) -> None:
        """Empty the table and fill it with rows (COPY on PostgreSQL).

        defer (PostgreSQL, a few rows): the rows go in by an INSERT sent with the next statement run through
        execute(), in one round trip (a COPY costs two); the caller's next statement on the table must be that.
        """
        self._pending = None
        self.ensure(cursor)
        name = qn(self.name)
        names = ", ".join(qn(n) for n, _ in self.columns)
        if is_postgres():
            if not connection.in_atomic_block:
                # Outside a transaction the COPY's own commit would empty the table again.
                raise RuntimeError("a staging table is loaded inside a transaction")
            empty = None
            if self._filled >= self.TRUNCATE_AFTER:
                empty = f"TRUNCATE {name}"
                self._filled = 0
            elif self._filled:
                empty = f"DELETE FROM {name}"
            rows = list(rows) if not isinstance(rows, list) else rows
            if not self._filled:
                transaction.on_commit(self._emptied)  # (a rollback empties it too, unseen: one DELETE too many)
            self._filled += max(1, len(rows))
            if defer and 0 < len(rows) <= self.DEFER_ROWS and joinable():
                marks = ", ".join(["(" + ", ".join(["%s"] * len(self.columns)) + ")"] * len(rows))
                statements = [*([empty] if empty else []), f"INSERT INTO {name} ({names}) VALUES {marks}"]
                self._pending = (statements, [value for row in rows for value in row])
                return
            if empty:
                cursor.execute(empty)
            with cursor.cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.execute(f"DELETE FROM {name}")
            prep = [
                (lambda v, f=f: v if v is None else f.get_db_prep_save(v, connection)) if f is not None else None
                for f in fields
            ]
            marks = ", ".join(["%s"] * len(self.columns))
            cursor.executemany(
                f"INSERT INTO {name} ({names}) VALUES ({marks})",
                [tuple(p(v) if p else v for p, v in zip(prep, row, strict=True)) for row in rows],
            )

    def execute(self, cursor, sql: str, params: Sequence) -> None:
        """Run a statement that reads the table, after the load deferred to it (in the same round trip); the
        cursor is then at that statement's result."""
        pending, self._pending = self._pending, None
        if pending is None:
            cursor.execute(sql, params)
            return
        statements, values = pending
        cursor.execute("; ".join([*statements, sql]), [*values, *params])
        for _ in statements:
            cursor.nextset()

    def _emptied(self) -> None:
        self._filled = 0

    def drop(self) -> None:
        """Drop the table (best effort: it is temporary anyway)."""
        if self._made:  # a single-record update's check (POST /api/events/...) made none: no statement
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {qn(self.name)}")
        self._made = False
        self._session = None
        self._filled = 0
        self._pending = None


def db_param(field: models.Field, value):
    """Adapt a Python value to a query parameter the way the ORM would save it."""
    if value is None:
        return None
    return field.get_db_prep_save(value, connection)


def distinct(a: str, b: str) -> str:
    """Return a null-safe 'differs' comparison for the current database."""
    return f"{a} IS DISTINCT FROM {b}" if is_postgres() else f"{a} IS NOT {b}"


def _set_guard(cursor, *, local: bool) -> None:
    # One statement for both.
    cursor.execute(
        "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        [
            f"{int(settings.IMPEX_LOCK_TIMEOUT_SECONDS)}s",
            local,
            f"{int(settings.IMPEX_STATEMENT_TIMEOUT_SECONDS)}s",
            local,
        ],
    )


def guard_statements() -> None:
    """Bound how long this transaction's statements wait for locks and run (PostgreSQL).

    A stuck import then fails with a clear message (see stuck_reason) and can be run again, instead
    of waiting forever behind a lock held elsewhere. Nothing to do inside statements_guarded().
    """
    if is_postgres() and not _session_guarded():
        with connection.cursor() as cursor:
            _set_guard(cursor, local=True)  # SET LOCAL: for the rest of the transaction


def _session_guarded() -> bool:
    session = getattr(_guarded, "session", None)
    return session is not None and session is connection.connection


@contextmanager
def statements_guarded():
    """Bound every statement of this session as guard_statements() does, for as long as the block runs.

    A job of many small files sets the bounds once instead of once per file's transaction. Enter it outside a
    transaction (a rollback would undo the setting); the bounds are reset when the block ends.
    """
    if not is_postgres() or _session_guarded() or connection.in_atomic_block:
        yield
        return
    connection.ensure_connection()
    with connection.cursor() as cursor:
        _set_guard(cursor, local=False)
    session = _guarded.session = connection.connection
    try:
        yield
    finally:
        _guarded.session = None
        if connection.connection is session:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET lock_timeout; RESET statement_timeout")
            except DatabaseError:  # a broken session goes with its connection
                pass


def stuck_reason(exc: BaseException) -> str | None:
    """Say why a database error means the import is stuck behind others (a lock or time limit), or None."""
    sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
    if sqlstate == "55P03":
        return (
            f"waited more than {settings.IMPEX_LOCK_TIMEOUT_SECONDS} s for a lock held by another database "
            "session (another import, or someone editing the same records); nothing of the unfinished chunk "
            "was kept: run the job again when that session is done"
        )
    if sqlstate == "57014":
        return (
            f"a statement ran longer than {settings.IMPEX_STATEMENT_TIMEOUT_SECONDS} s and was cancelled; "
            "nothing of the unfinished chunk was kept: run the job again"
        )
    if connection.vendor == "sqlite" and "database is locked" in str(exc):
        return (
            "the SQLite database stayed locked by another process; nothing of the unfinished chunk was kept: "
            "run the job again"
        )
    return None


RELAX_COMMIT = "SET LOCAL synchronous_commit TO OFF"


def relax_commit(writes: "WriteBatch | None" = None) -> None:
    """Let this transaction's commit return before its WAL is flushed (PostgreSQL).

    Safe for import chunks and small files: a chunk's rows and its "done" mark (a small file's rows, ledger entry
    and status) commit together, so a server crash loses at most whole chunks or files, which the runner applies
    again (an idempotent upsert); the job's own end commits as usual, and flushes them with it.
    writes: set it in the batch the transaction sends last (no round trip of its own).
    """
    if not is_postgres():
        return
    if writes is not None:
        writes.raw(RELAX_COMMIT, [])
        return
    with connection.cursor() as cursor:
        cursor.execute(RELAX_COMMIT)


def flush_commits() -> None:
    """Make every commit made so far durable (PostgreSQL), those of relax_commit() included: a transaction given an
    id commits synchronously, and its commit flushes the WAL written before it. Outside a transaction only."""
    if is_postgres() and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")


def database_url() -> str:
    """Return the URL of the database this process uses, for a process it starts (tests use their own)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    password = quote(db["PASSWORD"] or "", safe="")
    return f"postgres://{user}:{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def rows_update(model: type[models.Model], *, values: dict, fields: Sequence[str], same: dict | None = None) -> int:
    """Give each row its own values of fields (values: {pk: (value, ...)}), and every row the same values of same, in
    one UPDATE ... FROM UNNEST(arrays) on PostgreSQL, FROM (VALUES ...) elsewhere; return how many rows it wrote.

    A batch's rows each take their own message, state or time this way in one statement: the ORM's CASE per row
    (bulk_update) costs a comparison per row and value, in Python and in the database.
    """
    if not values:
        return 0
    if connection.vendor == "sqlite" and connection.Database.sqlite_version_info < (3, 33):
        # No UPDATE ... FROM before SQLite 3.33: one UPDATE per row.
        return sum(
            model.objects.filter(pk=key).update(**dict(zip(fields, row, strict=True)), **(same or {}))
            for key, row in values.items()
        )
    table = qn(model._meta.db_table)
    pk = model._meta.pk
    targets = [model._meta.get_field(name) for name in fields]
    same = {model._meta.get_field(name): value for name, value in (same or {}).items()}

    def column(number: int, field: models.Field) -> str:
        # VALUES columns are column1, column2 ... on both databases; PostgreSQL wants their types said.
        name = f"v.column{number}"
        return f"CAST({name} AS {field.db_type(connection)})" if is_postgres() else name

    sets = [f"{qn(f.column)} = {column(n, f)}" for n, f in enumerate(targets, start=2)]
    sets += [f"{qn(f.column)} = %s" for f in same]
    where = f"{table}.{qn(pk.column)} = {column(1, pk)}"
    shared = [db_param(f, v) for f, v in same.items()]
    items = list(values.items())
    if _unnestable([pk, *targets]):
        # One array per column: a short statement whatever the batch's size, which the driver and the server parse
        # once, instead of a placeholder per value (the array types without a length, as Django's bulk_create).
        columns = [[] for _ in range(len(targets) + 1)]
        for key, row in items:
            columns[0].append(db_param(pk, key))
            for values_of, f, v in zip(columns[1:], targets, row, strict=True):
                values_of.append(db_param(f, v))
        arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in [pk, *targets])
        source = f"UNNEST({arrays}) AS v({', '.join(f'column{n}' for n in range(1, len(targets) + 2))})"
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {', '.join(sets)} FROM {source} WHERE {where}", [*shared, *columns])
            return cursor.rowcount
    # As many rows per statement as the database takes parameters (SQLite: 999 in old builds), 1,000 at most.
    limit = connection.features.max_query_params or 65535
    per_statement = max(1, min(1000, (limit - len(shared)) // (len(targets) + 1)))
    written = 0
    with connection.cursor() as cursor:
        for start in range(0, len(items), per_statement):
            part = items[start : start + per_statement]
            marks = ", ".join(["(" + ", ".join(["%s"] * (len(targets) + 1)) + ")"] * len(part))
            params = list(shared)
            for key, row in part:
                params += [db_param(pk, key), *(db_param(f, v) for f, v in zip(targets, row, strict=True))]
            cursor.execute(f"UPDATE {table} SET {', '.join(sets)} FROM (VALUES {marks}) AS v WHERE {where}", params)
            written += cursor.rowcount
    return written


def _unnestable(fields: Sequence[models.Field]) -> bool:
    """Tell whether the fields' values can go in PostgreSQL arrays (Django's bulk_create asks the same)."""
    return is_postgres() and not any(
        hasattr(f, "get_placeholder")
        or (f.target_field if f.is_relation else f).get_internal_type() not in connection.data_types
        for f in fields
    )


def fields_read(cursor, sql: str, params: Sequence, fields: Sequence[models.Field]) -> list[tuple]:
    """Run a SELECT of model fields' columns written by hand; return its rows converted as the ORM would.

    For the few reads a job runs once per small file: the ORM spends more building such a query than the
    database spends running it.
    """
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    steps = []
    for i, field in enumerate(fields):
        col = field.get_col(field.model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if found:
            steps.append((i, col, found))
    if not steps:
        return rows
    out = []
    for row in rows:
        row = list(row)
        for i, col, found in steps:
            for convert in found:
                row[i] = convert(row[i], col, connection)
        out.append(tuple(row))
    return out


@dataclass(frozen=True)
class Plus:
    """A value of WriteBatch.update_where: the column's own value plus n (as F(name) + n)."""

    n: int


# The statements WriteBatch.update_where and insert have built, by their shape (table, columns, which values are
# NULL, rows): the ORM's SQL, built once per process and reused with parameters made here. Each shape's first use
# checks those parameters against the ORM's; False marks a shape whose parameters differed, built by the ORM
# every time (and logged once).
_shapes: dict[tuple, str | bool] = {}


def statement_shapes() -> dict[tuple, str | bool]:
    """Return the shapes WriteBatch has met in this process: their SQL, or False where it fell back to the ORM."""
    return dict(_shapes)


def _auto_now(field: models.Field) -> bool:
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


def _same_params(ours: Sequence, orm: Sequence, skip: set[int]) -> bool:
    """Tell whether our parameters are the ORM's (positions in skip: times the ORM's pre_save set again)."""
    return len(ours) == len(orm) and all(
        i in skip or _same_value(a, b) for i, (a, b) in enumerate(zip(ours, orm, strict=True))
    )


def _same_value(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b  # the ORM sends an F() + n's n as psycopg's Int4, an int all the same
    if type(a) is not type(b):
        return False
    if hasattr(a, "obj") and hasattr(a, "dumps"):  # psycopg's Json/Jsonb wrappers have no ==: what they wrap
        return a.obj == b.obj and a.dumps == b.dumps
    return a == b


def _reuse(key: tuple, ours: list, build, skip: set[int] = frozenset()) -> tuple[str, list]:
    """Return the SQL and parameters of a statement of shape key: the cached SQL with ours, or the ORM's build()."""
    known = _shapes.get(key)
    if known:
        return known, ours
    sql, params = build()
    params = list(params)
    if known is None:
        _shapes[key] = sql if _same_params(ours, params, skip) else False
        if _shapes[key] is False:
            logger.warning("WriteBatch: the ORM's parameters of %s differ from ours; it builds them each time", key)
    return sql, params


class WriteBatch:
    """Writes of one transaction whose outcome is only looked at afterwards, sent in one round trip (PostgreSQL).

    A small file's import ends with a handful of such writes (its ledger entry, its status, its chunk, its events,
    the job's lease); each is built as QuerySet.update() and bulk_create() would, queued, and sent together by
    send() (one statement at a time on SQLite). then= runs with the statement's row count once sent, still inside
    the transaction (to check a fence, or fall back); the fences' first (fence=True: a lease, a hold).
    update_where() and insert() build a statement of a given shape with the ORM once per process and reuse its SQL
    (the ORM spends more building such a statement than the database running it); update() and delete() take any
    queryset and build it each time.
    """

    def __init__(self):
        self._statements: list[tuple[str, list, object]] = []
        self._fences: set[int] = set()  # indexes of the statements whose then= runs first

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.send()

    def raw(self, sql: str, params: Sequence, *, then=None, fence: bool = False) -> None:
        """Queue a statement written by hand."""
        if fence:
            self._fences.add(len(self._statements))
        self._statements.append((sql, list(params), then))

    def update(self, queryset: models.QuerySet, values: dict, *, then=None, fence: bool = False) -> None:
        """Queue queryset.update(**values)."""
        self.raw(*_update_sql(queryset, values), then=then, fence=fence)

    def update_where(
        self, model: type[models.Model], where: dict, values: dict, *, then=None, fence: bool = False
    ) -> None:
        """Queue model._base_manager.filter(**where).update(**values), its SQL built once per shape.

        where: field names (or "pk") and the value each must equal (None: IS NULL); values: field names and
        their new values (None, a value, or Plus(n)).
        """
        changes = {name: F(name) + value.n if isinstance(value, Plus) else value for name, value in values.items()}
        lookups = {
            (f"{name}__isnull" if value is None else name): (True if value is None else value)
            for name, value in where.items()
        }
        built_each_time = [*values.values(), *where.values()]
        if any(hasattr(value, "resolve_expression") or isinstance(value, models.Model) for value in built_each_time):
            # An expression or a model instance: built by the ORM each time.
            self.update(model._base_manager.filter(**lookups), changes, then=then, fence=fence)
            return
        opts = model._meta
        ours = []
        for name, value in values.items():
            if isinstance(value, Plus):
                ours.append(value.n)
            elif value is not None:
                ours.append(opts.get_field(name).get_db_prep_save(value, connection))
        for lookup in sorted(lookups):  # the order Q gives keyword lookups
            if lookup in where:
                field = opts.pk if lookup == "pk" else opts.get_field(lookup)
                ours.append(field.get_db_prep_value(field.get_prep_value(where[lookup]), connection, prepared=True))
        key = (
            "update",
            connection.vendor,
            opts.label,
            tuple(sorted((name, value is None) for name, value in where.items())),
            tuple((name, "plus" if isinstance(value, Plus) else value is None) for name, value in values.items()),
        )
        sql, params = _reuse(key, ours, lambda: _update_sql(model._base_manager.filter(**lookups), changes))
        self.raw(sql, params, then=then, fence=fence)

    def delete(self, queryset: models.QuerySet, *, then=None) -> None:
        """Queue the DELETE of queryset's rows as QuerySet._raw_delete() runs it (no cascade, no signals)."""
        query = queryset.query.clone()
        query.__class__ = DeleteQuery
        sql, params = query.get_compiler(queryset.db).as_sql()
        self._statements.append((sql, list(params), then))

    def insert(
        self,
        model: type[models.Model],
        objs: Sequence[models.Model],
        *,
        unique_fields: Sequence[str] = (),
        update_fields: Sequence[str] = (),
    ) -> None:
        """Queue model.objects.bulk_create(objs) of new rows (their primary keys are not read back); with
        update_fields, as update_conflicts=True on unique_fields: its SQL built by the ORM once per shape."""
        if not objs:
            return
        opts = model._meta
        fields = [f for f in opts.concrete_fields if not f.generated and not f.primary_key]
        for obj in objs:
            if obj._is_pk_set():
                raise ValueError("a WriteBatch inserts new rows")
            obj._prepare_related_fields_for_save(operation_name="bulk_create")
        rows = [[f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields] for obj in objs]
        if not update_fields and not any(hasattr(f, "get_placeholder") for f in fields):
            # A plain INSERT of a few rows, written here: VALUES, which PostgreSQL plans faster than the ORM's
            # UNNEST of arrays for a handful of rows (a small file's events).
            key = ("values", connection.vendor, opts.label, len(rows))
            sql = _shapes.get(key)
            if sql is None:
                marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
                sql = _shapes[key] = (
                    f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
                    f"VALUES {', '.join([marks] * len(rows))}"
                )
            self.raw(sql, [value for row in rows for value in row])
            return
        unnest = len(objs) > 1 and _unnestable(fields)
        if unnest:  # one array per column (Django's bulk_create on PostgreSQL)
            ours = [list(column) for column in zip(*rows, strict=True)]
            skip = {i for i, f in enumerate(fields) if _auto_now(f)}
        else:
            ours = [value for row in rows for value in row]
            skip = {r * len(fields) + i for r in range(len(rows)) for i, f in enumerate(fields) if _auto_now(f)}
        key = (
            "insert",
            connection.vendor,
            opts.label,
            "unnest" if unnest else len(objs),
            tuple(unique_fields),
            tuple(update_fields),
        )

        def build() -> tuple[str, list]:
            query = InsertQuery(
                model,
                on_conflict=OnConflict.UPDATE if update_fields else None,
                update_fields=[opts.get_field(name) for name in update_fields] or None,
                unique_fields=[opts.get_field(name) for name in unique_fields] or None,
            )
            query.insert_values(fields, objs)
            (statement,) = query.get_compiler(connection=connection).as_sql()
            return statement

        self.raw(*_reuse(key, ours, build, skip))

    def send(self) -> None:
        """Run what is queued (PostgreSQL: in one round trip), then each then= with its statement's row count."""
        statements, self._statements = self._statements, []
        fences, self._fences = self._fences, set()
        if not statements:
            return
        counts = []
        with connection.cursor() as cursor:
            if joinable() and len(statements) > 1:
                joined = "; ".join(sql for sql, _, _ in statements)
                cursor.execute(joined, [p for _, params, _ in statements for p in params])
                raw = cursor.cursor
                counts.append(raw.rowcount)
                while raw.nextset():
                    counts.append(raw.rowcount)
            else:
                for sql, params, _ in statements:
                    cursor.execute(sql, params)
                    counts.append(cursor.rowcount)
        done = list(zip(statements, counts, strict=True))
        order = sorted(range(len(done)), key=lambda i: i not in fences)
        for i in order:
            (_, _, then), count = done[i]
            if then is not None:
                then(count)


def _update_sql(queryset: models.QuerySet, values: dict) -> tuple[str, list]:
    """Build queryset.update(**values) as the ORM runs it: (sql, params)."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.clear_select_clause()
    if query.get_related_updates():
        raise ValueError("a WriteBatch updates one table")
    sql, params = query.get_compiler(queryset.db).as_sql()
    return sql, list(params)


@contextmanager
def writes_into(batch: WriteBatch | None):
    """Yield the caller's WriteBatch, or a batch of one's own sent when the block ends."""
    if batch is not None:
        yield batch
        return
    with WriteBatch() as own:
        yield own
