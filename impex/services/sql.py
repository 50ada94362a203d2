"""Set-based writes for the import engine: staging tables and upserts on PostgreSQL and SQLite."""

import itertools
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection, models, transaction

_counter = itertools.count(1)


def qn(name: str) -> str:
    """Quote an identifier for the current database."""
    return connection.ops.quote_name(name)


def is_postgres() -> bool:
    """Tell whether the default database is PostgreSQL (COPY and xmax are available)."""
    return connection.vendor == "postgresql"


class Stage:
    """A temporary table holding one batch of rows before it is merged into the target table.

    Made once per database session and reused batch after batch, file after file: emptied by a DELETE while few
    rows have gone through it since its last TRUNCATE (a TRUNCATE of a temporary table costs milliseconds, a
    job of many small files would pay it per file), and by a TRUNCATE before dead rows pile up.
    """

    TRUNCATE_AFTER = 1000

    def __init__(self, *, columns: Sequence[tuple[str, str]]):
        self.name = f"impex_stage_{next(_counter)}"
        self.columns = list(columns)  # (name, sql type)
        self._session = None  # the database session the table is known to exist in (committed)
        self._filled = 0  # rows loaded since the table was last emptied by a TRUNCATE (or made)

    def _known(self) -> bool:
        return self._session is not None and self._session is connection.connection

    def ensure(self, cursor) -> None:
        """Create the table in this session if it is not there (a rollback drops it on PostgreSQL)."""
        if self._known():
            return
        cols = ", ".join(f"{qn(n)} {t}" for n, t in self.columns)
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {qn(self.name)} ({cols})")
        session = connection.connection
        # Known only once the transaction that made it commits: a rollback would drop it again.
        transaction.on_commit(lambda: setattr(self, "_session", session))

    def load(self, cursor, rows: Iterable[Sequence], *, fields: Sequence[models.Field | None]) -> None:
        """Empty the table and fill it with rows (COPY on PostgreSQL)."""
        self.ensure(cursor)
        names = ", ".join(qn(n) for n, _ in self.columns)
        if is_postgres():
            if self._filled >= self.TRUNCATE_AFTER:
                cursor.execute(f"TRUNCATE {qn(self.name)}")
                self._filled = 0
            elif self._filled:
                cursor.execute(f"DELETE FROM {qn(self.name)}")
            rows = list(rows) if not isinstance(rows, list) else rows
            self._filled += max(1, len(rows))
            with cursor.cursor.copy(f"COPY {qn(self.name)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.execute(f"DELETE FROM {qn(self.name)}")
            prep = [
                (lambda v, f=f: v if v is None else f.get_db_prep_save(v, connection)) if f is not None else None
                for f in fields
            ]
            marks = ", ".join(["%s"] * len(self.columns))
            cursor.executemany(
                f"INSERT INTO {qn(self.name)} ({names}) VALUES ({marks})",
                [tuple(p(v) if p else v for p, v in zip(prep, row, strict=True)) for row in rows],
            )

    def drop(self) -> None:
        """Drop the table (best effort: it is temporary anyway)."""
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {qn(self.name)}")
        self._session = None
        self._filled = 0


def db_param(field: models.Field, value):
    """Adapt a Python value to a query parameter the way the ORM would save it."""
    if value is None:
        return None
    return field.get_db_prep_save(value, connection)


def distinct(a: str, b: str) -> str:
    """Return a null-safe 'differs' comparison for the current database."""
    return f"{a} IS DISTINCT FROM {b}" if is_postgres() else f"{a} IS NOT {b}"


def guard_statements() -> None:
    """Bound how long this transaction's statements wait for locks and run (PostgreSQL).

    A stuck import then fails with a clear message (see stuck_reason) and can be run again, instead
    of waiting forever behind a lock held elsewhere.
    """
    if is_postgres():
        with connection.cursor() as cursor:
            # One statement for both (SET LOCAL, for the rest of the transaction).
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                [f"{int(settings.IMPEX_LOCK_TIMEOUT_SECONDS)}s", f"{int(settings.IMPEX_STATEMENT_TIMEOUT_SECONDS)}s"],
            )


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


def relax_commit() -> None:
    """Let this transaction's commit return before its WAL is flushed (PostgreSQL).

    Safe for import chunks: a chunk's rows and its "done" mark commit together, so a server crash
    loses at most whole chunks, which the runner applies again (an idempotent upsert).
    """
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def database_url() -> str:
    """Return the URL of the database this process uses, for a process it starts (tests use their own)."""
    from urllib.parse import quote

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
    table = qn(model._meta.db_table)
    pk = model._meta.pk
    targets = [model._meta.get_field(name) for name in fields]
    same = {model._meta.get_field(name): value for name, value in (same or {}).items()}

    def column(number: int, field: models.Field) -> str:
        # VALUES columns are column1, column2 ... on both databases; PostgreSQL wants their types said.
        name = f"v.column{number}"
        return f"CAST({name} AS {field.db_type(connection)})" if is_postgres() else name

    params = [db_param(f, v) for f, v in same.items()]
    if _unnestable([pk, *targets]):
        # One array per column: a short statement whatever the batch's size, which the driver and the server parse
        # once, instead of a placeholder per value (the array types without a length, as Django's bulk_create).
        columns = [[] for _ in range(len(targets) + 1)]
        for key, row in values.items():
            columns[0].append(db_param(pk, key))
            for values_of, f, v in zip(columns[1:], targets, row, strict=True):
                values_of.append(db_param(f, v))
        arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in [pk, *targets])
        source = f"UNNEST({arrays}) AS v({', '.join(f'column{n}' for n in range(1, len(targets) + 2))})"
        params += columns
    else:
        source = "(VALUES " + ", ".join(["(" + ", ".join(["%s"] * (len(targets) + 1)) + ")"] * len(values)) + ") AS v"
        for key, row in values.items():
            params += [db_param(pk, key), *(db_param(f, v) for f, v in zip(targets, row, strict=True))]
    sets = [f"{qn(f.column)} = {column(n, f)}" for n, f in enumerate(targets, start=2)]
    sets += [f"{qn(f.column)} = %s" for f in same]
    where = f"{table}.{qn(pk.column)} = {column(1, pk)}"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {', '.join(sets)} FROM {source} WHERE {where}", params)
        return cursor.rowcount


def _unnestable(fields: Sequence[models.Field]) -> bool:
    """Tell whether the fields' values can go in PostgreSQL arrays (Django's bulk_create asks the same)."""
    return is_postgres() and not any(
        hasattr(f, "get_placeholder")
        or (f.target_field if f.is_relation else f).get_internal_type() not in connection.data_types
        for f in fields
    )
