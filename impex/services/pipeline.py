"""The record pipeline: records of one descriptor in; counts, keys, row problems and held-back rows out.

A file's chunks, an uploaded sheet and a single record sent over HTTP all go through it, so one rule
book applies: absent columns are left alone, equal rows are not written, a bad row is refused alone.
"""

import itertools
from dataclasses import dataclass, field
from operator import itemgetter

from django.db import connection
from django.utils import timezone

from impex.entities import natural_key_of
from impex.exceptions import FileRejected
from impex.exceptions import RowError as RowProblem
from impex.formats.readers import Record
from impex.registry import sync_logs
from impex.services.columns import Column, CompiledDescriptor, row_has_control_character, visible_text
from impex.services.sql import db_param, distinct, qn
from impex.services.upsert import UpsertPlan, plan_for, stage_for, upsert

KEY_SEP = "\x1f"


def external_id(parts) -> str:
    """Return how a record's key is shown to people (parts joined by '/')."""
    return "/".join(str(p) for p in parts)


@dataclass
class Totals:
    """Counts of applied records."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    failed: int = 0
    rows_done: int = 0

    FIELDS = ("created", "updated", "unchanged", "retired", "failed", "rows_done")

    def add(self, other: "Totals") -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Problem:
    """A refused row: where, which cell, and why."""

    row: int | None
    message: str
    column: str = ""
    value: str = ""
    external_id: str = ""


@dataclass
class BatchResult:
    """What applying a batch of records did."""

    totals: Totals = field(default_factory=Totals)
    problems: list[Problem] = field(default_factory=list)
    failed_ext: dict = field(default_factory=dict)  # external id -> (message, row), for the sync log
    applied_ext: list = field(default_factory=list)  # external ids applied cleanly (when asked for)
    applied_keys: list = field(default_factory=list)  # keys of the records written or found equal
    deferred: list = field(default_factory=list)  # Records held back: they name a record that comes later


@dataclass
class RecordReading:
    """How the pipeline reads one record, writing nothing: each column's value or error, and the row's problems."""

    row: int
    values: dict = field(default_factory=dict)  # column name -> converted value
    errors: dict = field(default_factory=dict)  # column name -> message
    problems: list[str] = field(default_factory=list)


class _Good:
    """A row that converted cleanly, on its way to the database."""

    __slots__ = ("row", "index", "key", "values", "raw")

    def __init__(self, row: int, index: int, key: str, values: list, raw: list):
        self.row = row
        self.index = index
        self.key = key
        self.values = values
        self.raw = raw

    @property
    def ext(self) -> str:
        return self.key.replace(KEY_SEP, "/")


def _getter(positions: list[int]):
    """Return a function that picks cells by position as a tuple (itemgetter, also for one position)."""
    if len(positions) == 1:
        (pos,) = positions
        return lambda cells: (cells[pos],)
    return itemgetter(*positions)


class RecordPipeline:
    """Apply records laid out by a header to one entity: convert, check, resolve references, upsert."""

    def __init__(
        self,
        *,
        compiled: CompiledDescriptor,
        header: list[str],
        connection_id: int | None,
        full: bool = False,
        in_file: bool = True,
        partial: bool = False,
    ):
        self.compiled = compiled
        # A single-record update may leave out required columns of a record that exists (absent: left alone).
        self.partial = partial
        self.header = list(header)
        self.connection_id = connection_id
        self.full = full
        # Outside a file (a single record, a sheet) repeated keys are caught batch by batch; in a file the
        # file's start has found them all (FileDuplicate), whatever worker applies which chunk.
        self.in_file = in_file
        # The ImportFile whose chunks this pipeline applies (None for a sheet or a single record).
        self.file = None
        self._parent_changed_keys: set[str] = set()
        self._check_header()
        self._plan()

    # -- set-up ---------------------------------------------------------------------------------

    def _check_header(self) -> None:
        """Refuse a header with unknown or missing required columns."""
        columns = self.compiled.columns
        code = self.compiled.descriptor.code
        unknown = [h for h in self.header if h not in columns and not self.compiled.reads_past(h)]
        if unknown:
            known = [*columns, *sorted(self.compiled.ignored)]
            raise FileRejected(
                f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
                f"(descriptor {code} has: {', '.join(known)})"
            )
        missing = [c.name for c in columns.values() if c.required and c.name not in self.header]
        if missing and not self.partial:
            raise FileRejected(
                f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}"
            )
        absent_keys = [c.name for c in self.compiled.key_columns if c.name not in self.header and c.default is None]
        if absent_keys:
            raise FileRejected(f"missing key column{'s' if len(absent_keys) > 1 else ''} {', '.join(absent_keys)}")

    def _plan(self) -> None:
        """Decide the staged columns: main table, parent table (products of variants) and self references."""
        compiled = self.compiled
        model = compiled.model
        present = [c for c in compiled.columns.values() if c.name in self.header]
        # Key columns with a default (min_quantity) are part of every key even when the file lacks them.
        present += [c for c in compiled.key_columns if c not in present]
        self.present: list[Column] = present
        self.key_idx = [present.index(c) for c in compiled.key_columns]
        self._plan_cells(present)
        self.refs = [
            (i, c)
            for i, c in enumerate(present)
            if c.ref_model is not None and not c.parent and c.ref_model is not model
        ]
        self.self_refs = [(i, c) for i, c in enumerate(present) if c.ref_model is model and not c.parent]
        self.parent_cols = [(i, c) for i, c in enumerate(present) if c.parent]
        self.parent_ref = None
        if self.parent_cols:
            parent_name = self.parent_cols[0][1].parent
            self.parent_ref = next(
                ((i, c) for i, c in enumerate(present) if c.field_name == parent_name and not c.parent), None
            )
            if self.parent_ref is None:
                raise FileRejected(f"columns of the {parent_name} need its key column in the file")
            parent_model = self.parent_ref[1].ref_model
            self.parent_plan = plan_for(
                parent_model,
                key_attnames=[natural_key_of(parent_model)],
                data_attnames=[c.model_field.attname for _, c in self.parent_cols],
                revive={},
            )
            self.parent_stage = stage_for(self.parent_plan)
        main_idx = [i for i, c in enumerate(present) if not c.parent]
        key_atts = [present[i].model_field.attname for i in self.key_idx]
        data_idx = [i for i in main_idx if i not in self.key_idx]
        revive = {}
        if self.full:
            revive = {model._meta.get_field(f).attname: v for f, v in compiled.spec.revive.items()}
        self.plan: UpsertPlan = plan_for(
            model,
            key_attnames=key_atts,
            data_attnames=[present[i].model_field.attname for i in data_idx],
            revive=revive,
        )
        self.stage_order = self.key_idx + data_idx
        # References to the entity's own records (a customer's parent) are staged as the external id they
        # name (_ref0...) and resolved in SQL, pass by pass (see _write_in_passes); _pass says which pass wrote
        # a row. Other references were resolved to primary keys already.
        extra = [("_pass", "integer")] + [(f"_ref{n}", "text") for n in range(len(self.self_refs))]
        self.stage_fields = [None, None] + [None] * len(extra) + [present[i].model_field for i in self.stage_order]
        self.stage = stage_for(self.plan, extra=extra)
        self.stage_pick = _getter(self.stage_order)

    def _plan_cells(self, present: list[Column]) -> None:
        """Work out where each column's cell is in a row, and which cells need no converter call."""
        self.width = len(self.header)
        positions = [self.header.index(c.name) if c.name in self.header else self.width for c in present]
        self.pick = _getter(positions)
        self.pick_keys = _getter([positions[i] for i in self.key_idx])
        self.key_convs = [present[i].convert for i in self.key_idx]
        self.all_convs = [c.convert for c in present]
        self.fast_convs = []
        chars, required, limits = [], [], []
        for pos, c in zip(positions, present, strict=True):
            plain = c.kind == "string" and not c.parent and c.model_field.null is False and c.default == ""
            if plain and pos < self.width:
                self.fast_convs.append(None)
                max_length = getattr(c.model_field, "max_length", None)
                if max_length:
                    chars.append(pos)
                    limits.append(max_length)
                if c.required:
                    required.append(pos)
            else:
                self.fast_convs.append(c.convert)
        self.pick_chars = _getter(chars) if chars else None
        self.char_limit = min(limits) if limits else 0
        self.pick_required = _getter(required) if required else None
        # On the fast path only these columns need their converter called.
        self.convert_at = [(i, f) for i, f in enumerate(self.fast_convs) if f is not None]

    @property
    def tables(self) -> list[str]:
        """Return the tables this pipeline writes."""
        tables = [self.plan.table]
        if self.parent_cols:
            tables.append(self.parent_plan.table)
        return tables

    def key_of(self, cells: list[str]) -> str | None:
        """Return the key of a record laid out by the header, or None if its key cells do not convert."""
        if len(cells) == self.width:
            cells = [*cells, ""]
        try:
            values = [convert(cell) for cell, convert in zip(self.pick_keys(cells), self.key_convs, strict=True)]
        except RowProblem:
            return None
        return KEY_SEP.join("" if v is None else str(v) for v in values)

    def drop(self) -> None:
        """Drop the staging tables (they are temporary anyway)."""
        self.stage.drop()
        if self.parent_cols:
            self.parent_stage.drop()

    # -- one batch ------------------------------------------------------------------------------

    def apply(
        self,
        records: list[Record],
        *,
        duplicates: dict[int, int] | None = None,
        final: bool = False,
        collect_applied: bool = False,
    ) -> BatchResult:
        """Convert, check and write a batch of records; return what it did.

        duplicates maps the index of a record that repeats an earlier record's key to that record's row.
        final: the last pass, when a reference to a record that never came is refused instead of held back.
        """
        out, good = self._convert(records, duplicates or {})
        if good and self.parent_cols:
            self._write_parents(good)
        for i, col in self.refs:
            good = self._resolve(good, i, col, out)
        spec = self.compiled.spec
        if good and spec.before_write is not None:
            good = spec.before_write(self, good, out)
        if good:
            self._write(good, out, final=final, collect_applied=collect_applied)
            if spec.after_write is not None:
                spec.after_write(self)
        return out

    def refuse(self, out: BatchResult, g: "_Good", column: str, message: str) -> None:
        """Refuse a checked row for a reason of the entity's own (before_write), naming the column."""
        col = self.compiled.columns[column]
        self._refuse(out, g, col, message, visible_text(str(self.pick(g.raw)[self.present.index(col)])))

    def read(self, records: list[Record]) -> list[RecordReading]:
        """Read records as apply() does, writing nothing: values, cell errors, repeated keys, unknown references."""
        readings = []
        seen: dict[str, int] = {}
        width = self.width
        for rec in records:
            reading = RecordReading(row=rec.row)
            readings.append(reading)
            if rec.error:
                reading.problems.append(rec.error)
                continue
            cells = [*rec.values, ""] if len(rec.values) == width else rec.values
            # As the file's start does, every record whose key reads is keyed, refused cells or not.
            key = self.key_of(cells[:width])
            if key is not None and key in seen:
                ext = key.replace(KEY_SEP, "/")
                reading.problems.append(f"duplicate key {ext} in this file (first at row {seen[key]})")
            elif key is not None:
                seen[key] = rec.row
            for column, raw in zip(self.present, self.pick(cells), strict=True):
                try:
                    reading.values[column.name] = column.convert(raw)
                except RowProblem as exc:
                    reading.errors.setdefault(column.name, exc.message)
        for _, column in self.refs:
            self._read_references(readings, column)
        return readings

    def _read_references(self, readings: list[RecordReading], column: Column) -> None:
        """Mark the cells of a reference column that name no stored record (one query, nothing written)."""
        named = {r.values.get(column.name) for r in readings if not r.errors and not r.problems}
        named.discard(None)
        if not named or column.field_name in self.compiled.spec.create_missing_refs:
            return
        model = column.ref_model
        found = set(model.objects.filter(**{f"{column.ref_key}__in": named}).values_list(column.ref_key, flat=True))
        for reading in readings:
            value = reading.values.get(column.name)
            if value is not None and value not in found and not reading.problems:
                reading.errors[column.name] = f"unknown {model._meta.verbose_name} '{value}'"

    @staticmethod
    def _problem(out: BatchResult, row, message, *, column="", value="", ext=""):
        out.problems.append(Problem(row=row, message=message, column=column, value=value[:2000], external_id=ext))

    def _convert(self, records: list[Record], duplicates: dict[int, int]) -> tuple[BatchResult, list[_Good]]:
        """Convert and check a batch of records without touching the database."""
        out = BatchResult()
        present = self.present
        key_idx = self.key_idx
        good: list[_Good] = []
        seen: dict[str, int] = {}
        convert_at = self.convert_at
        all_convs = self.all_convs
        pick = self.pick
        pick_chars = self.pick_chars
        char_limit = self.char_limit
        pick_required = self.pick_required
        width = self.width
        single_key = key_idx[0] if len(key_idx) == 1 else None
        out.totals.rows_done = len(records)
        for rec in records:
            if rec.error:
                out.totals.failed += 1
                self._problem(out, rec.row, rec.error)
                continue
            cells = rec.values
            if len(cells) == width:
                cells.append("")  # the cell of key columns the file lacks (their default applies)
            first_row = duplicates.get(rec.index) if duplicates else None
            if first_row is not None:
                ext = (self.key_of(cells[:width]) or "").replace(KEY_SEP, "/")
                out.totals.failed += 1
                message = f"duplicate key {ext} in this file (first at row {first_row})"
                self._problem(out, rec.row, message, column=present[key_idx[0]].name, value=ext, ext=ext)
                continue
            try:
                # Plain text cells within every text column's length, every required one filled and none
                # holding a control character, need no per-cell call; the other cells go through their
                # converters, which refuse bad values.
                if (
                    (pick_chars is not None and max(map(len, pick_chars(cells))) > char_limit)
                    or (pick_required is not None and "" in pick_required(cells))
                    or row_has_control_character(cells)
                ):
                    values = [convert(cell) for cell, convert in zip(pick(cells), all_convs, strict=True)]
                else:
                    values = list(pick(cells))
                    for i, convert in convert_at:
                        values[i] = convert(values[i])
            except RowProblem:
                self._refuse_cells(out, rec)
                continue
            if single_key is not None:
                key = str(values[single_key])
            else:
                key = KEY_SEP.join("" if values[i] is None else str(values[i]) for i in key_idx)
            if not self.in_file:
                if key in seen:
                    ext = key.replace(KEY_SEP, "/")
                    out.totals.failed += 1
                    message = f"duplicate key {ext} (first at row {seen[key]})"
                    self._problem(out, rec.row, message, column=present[key_idx[0]].name, value=ext, ext=ext)
                    continue
                seen[key] = rec.row
            good.append(_Good(rec.row, rec.index, key, values, cells))
        return out, good

    def _refuse_cells(self, out: BatchResult, rec: Record) -> None:
        """Record every bad cell of a refused row."""
        problems = []
        raw = self.pick(rec.values)
        seen = set()
        for cell, convert in zip(raw, self.all_convs, strict=True):
            try:
                convert(cell)
            except RowProblem as exc:
                # A key field filled from another column's cell (a customer keyed by e-mail) fails with it: once.
                if (exc.column, exc.message) not in seen:
                    seen.add((exc.column, exc.message))
                    problems.append(exc)
        ext = visible_text(external_id(raw[i] for i in self.key_idx))
        out.totals.failed += 1
        for p in problems:
            self._problem(out, rec.row, p.message, column=p.column, value=p.value, ext=ext)
        out.failed_ext[ext] = ("; ".join(f"{p.column}: {p.message}" for p in problems), rec.row)

    def _refuse(self, out: BatchResult, g: _Good, col: Column, message: str, value: str) -> None:
        out.totals.failed += 1
        self._problem(out, g.row, message, column=col.name, value=value, ext=g.ext)
        out.failed_ext[g.ext] = (f"{col.name}: {message}", g.row)

    def _resolve(self, good: list[_Good], i: int, col: Column, out: BatchResult) -> list[_Good]:
        """Replace the natural keys in column i by primary keys, refusing rows that name unknown records."""
        keys = {g.values[i] for g in good if g.values[i] is not None}
        if not keys:
            return good
        model = col.ref_model
        found = dict(model.objects.filter(**{f"{col.ref_key}__in": keys}).values_list(col.ref_key, "pk"))
        if col.field_name in self.compiled.spec.create_missing_refs:
            missing = keys - found.keys()
            if missing:
                model.objects.bulk_create(
                    [model(**{col.ref_key: k, "connection_id": self.connection_id}) for k in sorted(missing)],
                    ignore_conflicts=True,
                )
                found = dict(model.objects.filter(**{f"{col.ref_key}__in": keys}).values_list(col.ref_key, "pk"))
        kept = []
        label = model._meta.verbose_name
        for g in good:
            v = g.values[i]
            if v is None:
                kept.append(g)
                continue
            pk = found.get(v)
            if pk is None:
                self._refuse(out, g, col, f"unknown {label} '{v}'", v)
                continue
            g.values[i] = pk
            kept.append(g)
        # Keys built from references keep the natural key text (already in g.key).
        return kept

    def _write_parents(self, good: list[_Good]) -> None:
        """Upsert the parent records (products) named by the batch, last row winning."""
        i_key = self.parent_ref[0]
        rows = {}
        for g in good:
            k = g.values[i_key]
            if k is None:
                continue
            rows[k] = [g.values[i] for i, _ in self.parent_cols]
        fields = [None, None] + [f for f in self.parent_plan.key_fields + self.parent_plan.data_fields]
        with connection.cursor() as cursor:
            self.parent_stage.load(
                cursor,
                ((n, k, k, *vals) for n, (k, vals) in enumerate(rows.items())),
                fields=fields,
            )
            result = upsert(
                cursor,
                plan=self.parent_plan,
                stage=self.parent_stage,
                connection_id=self.connection_id,
                want_pks=True,
            )
        # Rows whose parent changed (a new product title) count as updated even if the variant did not change.
        changed_parents = set()
        if result.changed_pks:
            parent_model = self.parent_plan.model
            changed_parents = set(
                parent_model.objects.filter(pk__in=result.changed_pks).values_list(
                    natural_key_of(parent_model), flat=True
                )
            )
        self._parent_changed_keys = {g.key for g in good if g.values[i_key] in changed_parents}

    def _write(self, good: list[_Good], out: BatchResult, *, final: bool, collect_applied: bool) -> None:
        """Stage the batch and merge it into the table."""
        pick = self.stage_pick
        if self.self_refs:
            refs = [i for i, _ in self.self_refs]
            rows = []
            for g in good:
                values = g.values.copy()
                for i in refs:
                    values[i] = None  # the link is resolved in SQL from the staged external id
                rows.append((g.row, g.key, None, *[g.values[i] for i in refs], *pick(values)))
        else:
            rows = [(g.row, g.key, None, *pick(g.values)) for g in good]
        stage = self.stage
        with connection.cursor() as cursor:
            # A few rows go in with the upsert that reads them, in one round trip (no self references: the upsert
            # is the next statement on the stage).
            stage.load(cursor, rows, fields=self.stage_fields, defer=not self.self_refs)
            parent_changed = [g.key for g in good if g.key in self._parent_changed_keys]
            if self.self_refs:
                created, updated, left = self._write_in_passes(cursor, good, final=final)
            else:
                result = upsert(
                    cursor, plan=self.plan, stage=stage, connection_id=self.connection_id, want_pks=bool(parent_changed)
                )
                created, updated, left = result.created, result.changed, {}
                if parent_changed:
                    extra = self._pks_of_staged(cursor, keys=parent_changed)
                    updated = len(result.changed_pks | (extra - result.created_pks))
        for g, problem in left.values():
            if problem is None:
                out.totals.rows_done -= 1
                out.deferred.append(Record(index=g.index, row=g.row, values=g.raw[: self.width], error=None))
            else:
                col, value = problem
                self._refuse(out, g, col, f"unknown {self.compiled.model._meta.verbose_name} '{value}'", value)
        written = [g for g in good if g.row not in left] if left else good
        out.totals.created += created
        out.totals.updated += updated
        out.totals.unchanged += len(written) - created - updated
        out.applied_keys.extend(g.key for g in written)
        if collect_applied:
            out.applied_ext.extend(g.ext for g in written)

    def _write_in_passes(self, cursor, good: list[_Good], *, final: bool) -> tuple[int, int, dict]:
        """Merge a staged batch whose rows name records of their own table (a customer's parent).

        Each pass points rows at the stored records they name, then merges the rows whose every reference
        is found: records the file has already written, this batch's earlier passes included. So a row is
        written once, with its parent, and an unchanged one not at all. Rows naming a record that is nowhere
        yet are held back (left), to be tried again when the file ends; on that last try, rows that name
        each other in a circle are written first and linked after, and the rest are refused.
        Return created, updated, and the rows left: row -> (row, None to hold back or (column, value) refused).
        """
        model = self.compiled.model
        stage = qn(self.stage.name)
        table = qn(model._meta.db_table)
        pk = qn(model._meta.pk.column)
        links = [
            (n, qn(col.model_field.column), qn(model._meta.get_field(col.ref_key).column), col)
            for n, (_, col) in enumerate(self.self_refs)
        ]
        any_ref = " OR ".join(f"_ref{n} IS NOT NULL" for n, _, _, _ in links)
        ready = " AND ".join(f"(_ref{n} IS NULL OR {fk} IS NOT NULL)" for n, fk, _, _ in links)
        created = updated = 0
        for number in itertools.count(1):
            # Only rows with a reference are looked at: the others go in with the first pass as they are.
            for n, fk, nat, _ in links:
                cursor.execute(
                    f"UPDATE {stage} SET {fk} = (SELECT p.{pk} FROM {table} p WHERE p.{nat} = {stage}._ref{n}) "
                    f"WHERE _pass IS NULL AND _ref{n} IS NOT NULL AND {fk} IS NULL"
                )
            cursor.execute(f"UPDATE {stage} SET _pass = %s WHERE _pass IS NULL AND ({any_ref}) AND {ready}", [number])
            marked = cursor.rowcount
            if marked or number == 1:
                no_ref = any_ref.replace("_ref", "s._ref")
                result = upsert(
                    cursor,
                    plan=self.plan,
                    stage=self.stage,
                    connection_id=self.connection_id,
                    where=f"(s._pass = 1 OR NOT ({no_ref}))" if number == 1 else f"s._pass = {number}",
                )
                created += result.created
                updated += result.changed
                continue  # rows naming the ones just written may be ready now
            cursor.execute(f"SELECT _row FROM {stage} WHERE _pass IS NULL AND ({any_ref})")
            waiting = {r[0] for r in cursor.fetchall()}
            if not waiting:
                return created, updated, {}
            by_row = {g.row: g for g in good}
            if not final:
                return created, updated, {row: (by_row[row], None) for row in waiting}
            circle = self._write_circles(cursor, number, links)
            if circle is None:
                return created, updated, {row: (by_row[row], self._missing(by_row[row])) for row in waiting}
            created += circle[0]
            updated += circle[1]

    def _write_circles(self, cursor, number: int, links) -> tuple[int, int] | None:
        """Write held-back rows that name rows of the batch (a circle) without the link, then link them."""
        model = self.compiled.model
        stage = qn(self.stage.name)
        table = qn(model._meta.db_table)
        pk = qn(model._meta.pk.column)
        in_batch = " AND ".join(
            f"(_ref{n} IS NULL OR {fk} IS NOT NULL OR _ref{n} IN (SELECT _key FROM {stage}))" for n, fk, _, _ in links
        )
        any_ref = " OR ".join(f"_ref{n} IS NOT NULL" for n, _, _, _ in links)
        cursor.execute(f"UPDATE {stage} SET _pass = %s WHERE _pass IS NULL AND ({any_ref}) AND {in_batch}", [number])
        if not cursor.rowcount:
            return None
        result = upsert(
            cursor,
            plan=self.plan,
            stage=self.stage,
            connection_id=self.connection_id,
            want_pks=True,
            where=f"s._pass = {number}",
        )
        touched: set = set()
        now = db_param(model._meta.get_field("updated_at"), timezone.now())
        keys = [f.column for f in self.plan.key_fields]
        on = " AND ".join(f"{table}.{qn(k)} = x.{qn(k)}" for k in keys)
        key_select = ", ".join(f"s.{qn(k)} AS {qn(k)}" for k in keys)
        for n, fk, nat, _ in links:
            cursor.execute(
                f"UPDATE {table} SET {fk} = x.pid, updated_at = %s "
                f"FROM (SELECT {key_select}, p.{pk} AS pid FROM {stage} s "
                f"JOIN {table} p ON p.{nat} = s._ref{n} WHERE s._pass = %s) x "
                f"WHERE {on} AND {distinct(f'{table}.{fk}', 'x.pid')} RETURNING {table}.{pk}",
                [now, number],
            )
            touched |= {r[0] for r in cursor.fetchall()}
        return result.created, len(result.changed_pks | (touched - result.created_pks))

    def _missing(self, g: _Good) -> tuple[Column, str]:
        """Return the first reference of a refused row that names a record found nowhere."""
        model = self.compiled.model
        for i, col in self.self_refs:
            value = g.values[i]
            if value is not None and not model.objects.filter(**{col.ref_key: value}).exists():
                return col, value
        i, col = self.self_refs[0]
        return col, g.values[i]

    def _pks_of_staged(self, cursor, *, keys: list[str]) -> set:
        """Return the primary keys of the stored records of some staged rows."""
        table = qn(self.plan.table)
        pk = qn(self.plan.model._meta.pk.column)
        on = " AND ".join(f"t.{qn(f.column)} = s.{qn(f.column)}" for f in self.plan.key_fields)
        found = set()
        for start in range(0, len(keys), 900):
            part = keys[start : start + 900]
            cursor.execute(
                f"SELECT t.{pk} FROM {qn(self.stage.name)} s JOIN {table} t ON {on} "
                f"WHERE s._key IN ({', '.join(['%s'] * len(part))})",
                part,
            )
            found |= {r[0] for r in cursor.fetchall()}
        return found


def sync_log_record(
    result: BatchResult,
    *,
    connection,
    entity: str,
    open_errors: bool,
    file_name: str = "",
    job_id=None,
    record_event_id=None,
) -> bool:
    """Add a batch's refused records to the sync log and resolve those now applied; say if errors stay open."""
    logs = sync_logs()
    if result.failed_ext:
        logs.add_errors(
            connection=connection,
            entity=entity,
            errors=result.failed_ext,
            file_name=file_name,
            job_id=job_id,
            record_event_id=record_event_id,
        )
        open_errors = True
    if open_errors and result.applied_ext:
        logs.resolve(connection=connection, entity=entity, external_ids=result.applied_ext)
        open_errors = logs.has_errors(connection=connection, entity=entity)
    return open_errors
