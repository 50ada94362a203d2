"""The dry run: import files into temporary copies of the tables they write, and tell what would happen."""

import re
from datetime import UTC, datetime

from django.db import connection, models, transaction

from impex.choices import ColumnType
from impex.exceptions import ImpexError
from impex.exceptions import RowError as RowProblem
from impex.formats.readers import iter_records
from impex.models import (
    Connection,
    ConnectionState,
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportChunk,
    ImportFile,
    RowError,
)
from impex.registry import sync_logs
from impex.services.columns import Column, CompiledDescriptor, format_value, value_styles, visible_text
from impex.services.imports import FileImport
from impex.services.pipeline import KEY_SEP
from impex.services.sql import is_postgres, qn

PREVIEW_ROWS = 20
PREVIEW_RETIRED = 50
KEY_JOIN = " / "

# Read (as they are) and written by the engine between the files of a dry run: the sequence a file applies
# lets the next one in.
_COPIED = (Connection, ConnectionState)
# The engine's work rows, and the sync logs' tables (impex.registry.SyncLogs): written by a dry run, and by nothing
# else it reads.
_EMPTY = (FileKey, FileDuplicate, DeferredRow, ImportChunk)


class Sandbox:
    """Temporary copies of the tables a dry run writes, named like them, that this database session uses instead.

    PostgreSQL and SQLite look an unqualified table name up among the session's temporary tables first, so
    the engine's own SQL, unchanged, reads and writes the copies: the same rules and counts as a real import,
    while the real tables get plain reads only (no row written or locked, no id drawn from their sequences).
    The copies keep what earlier files of the job did, for the files after them. close() drops them.
    """

    def __init__(self):
        self.tables: list[str] = []
        self.session = None

    def cover(self, tables: list[str]) -> None:
        """Copy the tables not copied yet (outside any file's transaction, so that a rejected file keeps them)."""
        if self.session is None:
            self.session = self._session()
            for model in _COPIED:
                self._copy(model._meta.db_table, rows=True)
            for table in [model._meta.db_table for model in _EMPTY] + list(sync_logs().tables()):
                self._copy(table, rows=False)
        for table in tables:
            if table not in self.tables:
                self._copy(table, rows=True)

    def check(self) -> None:
        """Refuse to go on unless every copy is still there (a new database session would see the real tables)."""
        with connection.cursor() as cursor:
            if is_postgres():
                cursor.execute(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relname = ANY(%s)",
                    [self.tables],
                )
            else:
                marks = ", ".join(["%s"] * len(self.tables))
                cursor.execute(
                    f"SELECT count(*) FROM sqlite_temp_master WHERE type = 'table' AND name IN ({marks})", self.tables
                )
            found = cursor.fetchone()[0]
        if self.session != self._session() or found != len(self.tables):
            raise ImpexError("the dry run lost its temporary tables (the database session ended); run it again")

    def close(self) -> None:
        """Drop the copies; if that fails, end the session, which drops them too."""
        schema = "pg_temp" if is_postgres() else "temp"
        try:
            with connection.cursor() as cursor:
                for table in reversed(self.tables):
                    cursor.execute(f"DROP TABLE IF EXISTS {schema}.{qn(table)}")
        except Exception:
            # A session left with the copies would write them instead of the real tables in its next job.
            connection.close()
            raise
        finally:
            self.tables = []
            self.session = None

    @staticmethod
    def _session():
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return cursor.fetchone()[0]
        return id(connection.connection)

    def _copy(self, table: str, *, rows: bool) -> None:
        with connection.cursor() as cursor:
            if is_postgres():
                self._copy_postgres(cursor, table, rows=rows)
            else:
                self._copy_sqlite(cursor, table, rows=rows)
        self.tables.append(table)

    @staticmethod
    def _copy_postgres(cursor, table: str, *, rows: bool) -> None:
        cursor.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            [qn(table)],
        )
        (schema,) = cursor.fetchone()
        if schema.startswith("pg_temp"):
            raise ImpexError(f"the table {table} has a temporary copy already: a dry run is running in this session")
        source = f"{qn(schema)}.{qn(table)}"
        copy = f"pg_temp.{qn(table)}"
        # Identity columns get sequences of their own (INCLUDING IDENTITY): new rows draw no real ids.
        cursor.execute(f"CREATE TEMPORARY TABLE {qn(table)} (LIKE {source} INCLUDING ALL)")
        cursor.execute(
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = %s::regclass "
            "AND pg_get_expr(adbin, adrelid) LIKE 'nextval(%%'",
            [copy],
        )
        if cursor.fetchone()[0]:
            raise ImpexError(f"the table {table} draws ids from a shared sequence: it cannot be dry-run")
        if not rows:
            return
        cursor.execute(f"INSERT INTO {copy} SELECT * FROM {source}")
        cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attidentity <> ''", [copy])
        for (column,) in cursor.fetchall():
            cursor.execute(f"SELECT coalesce(max({qn(column)}), 0) + 1 FROM {copy}")
            start = cursor.fetchone()[0]
            cursor.execute(f"ALTER TABLE {copy} ALTER COLUMN {qn(column)} RESTART WITH {int(start)}")
        # Temporary tables get no autovacuum statistics; without them the planner joins the staged batches badly.
        cursor.execute(f"ANALYZE {copy}")

    @staticmethod
    def _copy_sqlite(cursor, table: str, *, rows: bool) -> None:
        cursor.execute("SELECT type, sql FROM main.sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL", [table])
        found = cursor.fetchall()
        create = next(sql for kind, sql in found if kind == "table")
        create = re.sub(r"^CREATE TABLE\s+(\"[^\"]+\"|\S+)", f"CREATE TEMPORARY TABLE {qn(table)}", create)
        # A temporary table may name only temporary tables; the engine checks references itself.
        create = re.sub(r'\s+REFERENCES\s+"[^"]+"\s*\("[^"]+"\)(\s+DEFERRABLE INITIALLY DEFERRED)?', "", create)
        cursor.execute(create)
        for kind, sql in found:
            if kind == "index":
                cursor.execute(re.sub(r"^CREATE (UNIQUE )?INDEX\s+", r"CREATE \1INDEX temp.", sql))
        if rows:
            cursor.execute(f"INSERT INTO temp.{qn(table)} SELECT * FROM main.{qn(table)}")


def tables_written(compiled: CompiledDescriptor) -> list[str]:
    """Return the tables a file of this descriptor may write: its entity's and every table that one refers to.

    The references cover the parent records a file fills (products of variants), the records it creates on
    the fly (price lists) and what an entity's after-file step derives (a product's status).
    """
    model = compiled.model
    tables = [model._meta.db_table]
    for f in model._meta.concrete_fields:
        related = f.related_model if f.is_relation else None
        if related is not None and related._meta.app_label != "impex":
            tables.append(related._meta.db_table)
    return list(dict.fromkeys(tables))


def file_dry_run(*, handle: FileImport, sandbox: Sandbox) -> bool:
    """Import a file into the sandbox: the file gets its counts, row errors and preview; False if it had moved on."""
    handle.dry_run = True
    try:
        sandbox.cover(tables_written(handle.compiled))
        with transaction.atomic():
            sandbox.check()
            if not handle.start():
                return False
            preview = _Preview(handle)
            handle.work()
            # Once the chunks have written the file's keys (and before the finish retires what it lacks).
            retire = handle.retire_preview(limit=PREVIEW_RETIRED) if handle.full else []
            handle.finish()
            keys = [visible_text(k.replace(KEY_SEP, KEY_JOIN)) for k in retire]
            result = {"rows": preview.rows(), "retire": {"count": handle.file.retired, "keys": keys}}
            ImportFile.objects.filter(pk=handle.file.pk).update(preview=result)
            handle.file.preview = result
    finally:
        handle.close()
    return True


class _Preview:
    """The first rows of a file as they stand before it goes in: each one's stored record, and what would change."""

    def __init__(self, handle: FileImport):
        self.handle = handle
        pipeline = handle.pipeline
        compiled = handle.compiled
        d = handle.descriptor
        self.styles = value_styles(d)
        self.present = pipeline.present
        self.position = {c.name: i for i, c in enumerate(pipeline.present)}
        self.columns = [compiled.columns[h] for h in pipeline.header if h in compiled.columns]
        model = compiled.model
        fields = {c.field_name for c in self.columns if not c.parent}
        self.revive = []
        if handle.full:
            self.revive = [(model._meta.get_field(n), v) for n, v in compiled.spec.revive.items() if n not in fields]
        self.entries = []
        records = iter_records(
            handle.path, layout=handle.layout, header=handle.file.header, stop=PREVIEW_ROWS, as_list=True
        )
        for record in records:
            self.entries.append(self._entry(record))

    def _entry(self, record) -> dict:
        pipeline = self.handle.pipeline
        entry = {"row": record.row, "key": "", "stored": False, "changes": []}
        if record.error:
            return entry
        cells = list(record.values)
        if len(cells) == pipeline.width:
            cells.append("")
        try:
            values = [convert(cell) for cell, convert in zip(pipeline.pick(cells), pipeline.all_convs, strict=True)]
        except (RowProblem, IndexError, ValueError):
            try:
                entry["key"] = visible_text(KEY_JOIN.join(pipeline.pick_keys(cells)))
            except IndexError:
                pass
            return entry
        key = ("" if values[i] is None else str(values[i]) for i in pipeline.key_idx)
        entry["key"] = visible_text(KEY_JOIN.join(key))
        stored = self._stored(values)
        entry["stored"] = stored is not None
        for n, c in enumerate(self.columns):
            new = values[self.position[c.name]]
            if stored is None:
                entry["changes"].append({"field": c.name, "old": "", "new": self._text(new, c.kind)})
            elif stored[n] != new:
                old = self._text(stored[n], c.kind)
                entry["changes"].append({"field": c.name, "old": old, "new": self._text(new, c.kind)})
        if stored is not None and stored[-1] == self.handle.file.connection_id:  # its source alone revives it
            for n, (field, value) in enumerate(self.revive, start=len(self.columns)):
                if stored[n] != value:
                    kind = ColumnType.BOOLEAN if isinstance(field, models.BooleanField) else ColumnType.STRING
                    entry["changes"].append(
                        {"field": field.name, "old": self._text(stored[n], kind), "new": self._text(value, kind)}
                    )
        return entry

    def _stored(self, values: list) -> tuple | None:
        """Return the stored record of a row's key (its columns', the revived fields' values, its source), or None."""
        filters = {}
        for i in self.handle.pipeline.key_idx:
            c = self.present[i]
            filters[_lookup(c)] = values[i]
        lookups = [_lookup(c) for c in self.columns] + [f.name for f, _ in self.revive] + ["connection_id"]
        return self.handle.compiled.model.objects.filter(**filters).values_list(*lookups).first()

    def _text(self, value, kind: str) -> str:
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC)  # stored values come back in UTC: show both sides alike
        return visible_text(format_value(value, kind=kind, **self.styles))

    def rows(self) -> list[dict]:
        """Return the preview rows, each with its action now that the file has been through the engine."""
        problems: dict[int, list[RowError]] = {}
        numbers = [e["row"] for e in self.entries]
        for error in RowError.objects.filter(file_id=self.handle.file.pk, row__in=numbers).order_by("pk"):
            problems.setdefault(error.row, []).append(error)
        rows = []
        for entry in self.entries:
            row = {"row": entry["row"], "key": entry["key"]}
            errors = problems.get(entry["row"])
            if errors:
                if len(errors) == 1:
                    message = errors[0].message
                else:
                    message = "; ".join(f"{e.column}: {e.message}" if e.column else e.message for e in errors)
                row.update(action="error", changes=[], message=message)
            elif not entry["stored"]:
                row.update(action="create", changes=entry["changes"])
            else:
                row.update(action="update" if entry["changes"] else "unchanged", changes=entry["changes"])
            rows.append(row)
        return rows


def _lookup(c: Column) -> str:
    """Return the ORM path from a record of the entity to a column's value as the file writes it."""
    if c.parent:
        return f"{c.parent}__{c.field_name}"
    if c.ref_model is not None:
        return f"{c.field_name}__{c.ref_key}"
    return c.field_name
