"""Import one file: validate it whole, then stream its rows in chunks of batches into the entity tables."""

import logging
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from impex.choices import ChunkStatus, FileStatus, Mode
from impex.entities import NATURAL_KEYS
from impex.exceptions import ConfigurationError, FileRejected, ImpexError
from impex.exceptions import RowError as RowProblem
from impex.formats.readers import Layout, Record, iter_records, scan
from impex.models import DeferredRow, FileKey, ImportChunk, ImportedFileName, ImportFile, ImportJob, RowError
from impex.services.columns import (
    Column,
    CompiledDescriptor,
    compile_descriptor,
    row_has_control_character,
    visible_text,
)
from impex.services.sql import db_param, distinct, is_postgres, qn, relax_commit
from impex.services.upsert import UpsertPlan, plan_for, stage_for, upsert
from syncapp import services as sync

log = logging.getLogger(__name__)

KEY_SEP = "\x1f"
MAX_REPORTED_ERRORS = 1000


def layout_of(descriptor) -> Layout:
    """Return the reader layout of a descriptor."""
    return Layout(
        format=descriptor.format,
        delimiter=descriptor.delimiter_char,
        encoding=descriptor.encoding or "utf-8",
        has_header=descriptor.has_header,
        columns=tuple(c.name for c in descriptor.columns.all()),
        xml_root=descriptor.xml_root,
        xml_record=descriptor.xml_record,
    )


def external_id(parts) -> str:
    """Return how a record's key is shown to people (parts joined by '/')."""
    return "/".join(str(p) for p in parts)


@dataclass
class Totals:
    """Counts of one file, kept in memory while it runs and saved with every chunk."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    failed: int = 0
    rows_done: int = 0

    def add(self, other: "Totals") -> None:
        for name in ("created", "updated", "unchanged", "retired", "failed", "rows_done"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _Good:
    """A row that converted cleanly, on its way to the database."""

    __slots__ = ("row", "index", "key", "values", "raw", "later")

    def __init__(self, row: int, index: int, key: str, values: list, raw: dict):
        self.row = row
        self.index = index
        self.key = key
        self.values = values
        self.raw = raw
        self.later = {}  # self references to records that are new in the same batch

    @property
    def ext(self) -> str:
        return self.key.replace(KEY_SEP, "/")


@dataclass
class _Batch:
    totals: Totals = field(default_factory=Totals)
    errors: list = field(default_factory=list)  # RowError objects (unsaved)
    failed_ext: dict = field(default_factory=dict)  # external id -> (message, row)
    applied_ext: list = field(default_factory=list)
    failed_keys: list = field(default_factory=list)  # keys of refused rows that the file did send
    deferred: list = field(default_factory=list)  # DeferredRow objects (unsaved)


class FileImport:
    """Apply one ImportFile to the database: scan, check the header, write chunk by chunk, finish."""

    def __init__(self, import_file: ImportFile, *, dry_run: bool = False):
        self.file = import_file
        self.dry_run = dry_run
        self.connection = import_file.connection
        self.descriptor = import_file.descriptor
        self.totals = Totals()
        self.reported_errors: list[RowError] = []  # kept for dry runs, whose writes are rolled back
        self.batch_size = max(1, settings.IMPEX_BATCH_SIZE)
        self.finished = False
        self._parent_changed_keys: set[str] = set()
        self._reader = None
        self._reader_pos = 0
        self._analyzed_rows = 0

    # -- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Validate the whole file and work out what its columns write; raise FileRejected if it can't go in."""
        if self.descriptor is None:
            raise FileRejected("no descriptor matches this file")
        try:
            self.compiled: CompiledDescriptor = compile_descriptor(
                self.descriptor, tz=self.connection.timezone if self.connection else "UTC"
            )
        except ConfigurationError as exc:
            raise FileRejected(f"descriptor {self.descriptor.code} cannot be used: {exc}") from exc
        self.layout = layout_of(self.descriptor)
        result = scan(self.file.path, layout=self.layout, max_bytes=settings.IMPEX_MAX_FILE_BYTES)
        self.header = result.header
        self.record_count = result.record_count
        self._check_header()
        self._plan()

    def _check_header(self) -> None:
        columns = self.compiled.columns
        unknown = [h for h in self.header if h not in columns]
        if unknown:
            raise FileRejected(
                f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
                f"(descriptor {self.descriptor.code} has: {', '.join(columns)})"
            )
        missing = [c.name for c in columns.values() if c.required and c.name not in self.header]
        if missing:
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
                key_attnames=[NATURAL_KEYS[parent_model._meta.label]],
                data_attnames=[c.model_field.attname for _, c in self.parent_cols],
                revive={},
            )
            self.parent_stage = stage_for(self.parent_plan)
        main_idx = [i for i, c in enumerate(present) if not c.parent]
        key_atts = [present[i].model_field.attname for i in self.key_idx]
        data_idx = [i for i in main_idx if i not in self.key_idx]
        revive = {}
        if self.file.mode == Mode.FULL:
            revive = {model._meta.get_field(f).attname: v for f, v in compiled.spec.revive.items()}
        self.plan: UpsertPlan = plan_for(
            model,
            key_attnames=key_atts,
            data_attnames=[present[i].model_field.attname for i in data_idx],
            revive=revive,
        )
        self.stage_order = self.key_idx + data_idx
        self.stage_fields = (
            [None, None] + [None] * len(self.self_refs) + [present[i].model_field for i in self.stage_order]
        )
        # Stage FK columns as their target's key type; references were resolved to primary keys.
        self.stage = stage_for(self.plan, extra=[(f"_ref{n}", "text") for n in range(len(self.self_refs))])

    def _plan_cells(self, present: list[Column]) -> None:
        """Work out where each column's cell is in a row, and which cells need no converter call."""
        self.width = len(self.header)
        positions = [self.header.index(c.name) if c.name in self.header else self.width for c in present]
        self.pick = _getter(positions)
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

    # -- running --------------------------------------------------------------------------------

    def run(self) -> Totals:
        """Import the file; the caller has checked the ledger and the sequence. Raise FileRejected to refuse it."""
        self.prepare()
        f = self.file
        limited = bool(self.descriptor.max_error_count is not None or self.descriptor.max_error_ratio is not None)
        chunk_rows = self.record_count or 1 if limited or self.dry_run else max(1, settings.IMPEX_CHUNK_ROWS)
        with transaction.atomic():
            if not f.chunks.exists():
                starts = range(0, self.record_count, chunk_rows) if self.record_count else [0]
                chunks = [
                    ImportChunk(
                        file=f, index=n, first_record=start, record_count=min(chunk_rows, self.record_count - start)
                    )
                    for n, start in enumerate(starts)
                ]
                ImportChunk.objects.bulk_create(chunks)
                if f.mode == Mode.FULL and self.connection:
                    sync.sync_log_start_full(connection=self.connection, entity=self.descriptor.entity)
            ImportFile.objects.filter(pk=f.pk).update(
                rows_total=self.record_count, status=FileStatus.RUNNING, started_at=f.started_at or timezone.now()
            )
            job_progress_update(job_id=f.job_id)
        done = f.chunks.filter(status=ChunkStatus.DONE)
        for chunk in done:
            self.totals.add(Totals(chunk.created, chunk.updated, chunk.unchanged, 0, chunk.failed, chunk.record_count))
        self.open_sync_errors = bool(self.connection) and sync.sync_log_has_errors(
            connection=self.connection, entity=self.descriptor.entity
        )
        for chunk_id in list(f.chunks.exclude(status=ChunkStatus.DONE).values_list("pk", flat=True)):
            self._run_chunk(chunk_id)
            self._refresh_statistics()
        if f.chunks.exclude(status=ChunkStatus.DONE).exists():
            # Another worker holds a chunk: whoever applies the last chunk finishes the file.
            self.finished = False
            return self.totals
        self._finish()
        self.finished = True
        return self.totals

    def _run_chunk(self, chunk_id: int) -> None:
        with transaction.atomic():
            relax_commit()
            chunk = ImportChunk.objects.select_for_update(skip_locked=True).filter(pk=chunk_id).first()
            if chunk is None or chunk.status == ChunkStatus.DONE:
                return
            chunk_totals = Totals()
            records = self._records_of(chunk)
            while batch := list(islice(records, self.batch_size)):
                converted = self._convert(batch)
                result = self._write_batch(converted, final=False)
                self._record(result)
                chunk_totals.add(result.totals)
                self.totals.add(result.totals)
                self._check_limit()
            ImportChunk.objects.filter(pk=chunk.pk).update(
                status=ChunkStatus.DONE,
                created=chunk_totals.created,
                updated=chunk_totals.updated,
                unchanged=chunk_totals.unchanged,
                failed=chunk_totals.failed,
                finished_at=timezone.now(),
            )
            self._save_totals()

    def _refresh_statistics(self) -> None:
        """ANALYZE the tables this file is growing once they have doubled (PostgreSQL).

        A bulk load into a table whose statistics say it is (nearly) empty makes the planner pick
        nested loops over whole tables for the joins with the staged batch: quadratic time. Doubling
        steps keep the cost to a few ANALYZE runs per file.
        """
        if not is_postgres():
            return
        grown = self.totals.rows_done
        if grown < max(settings.IMPEX_ANALYZE_MIN_ROWS, 2 * self._analyzed_rows):
            return
        tables = [self.plan.table, "impex_filekey"]
        if self.parent_cols:
            tables.append(self.parent_plan.table)
        # Row counts are what the planner lacks, not fine distributions: a small sample is enough.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_statistics_target TO 10")
            for table in tables:
                cursor.execute(f"ANALYZE {qn(table)}")
        self._analyzed_rows = grown

    def _records_of(self, chunk: ImportChunk):
        """Return the chunk's records from one reader kept open across chunks (the file is parsed once)."""
        if self._reader is None or self._reader_pos > chunk.first_record:
            self._reader = iter_records(self.file.path, layout=self.layout, header=self.header, as_list=True)
            self._reader_pos = 0
        skip = chunk.first_record - self._reader_pos
        if skip:
            for _ in islice(self._reader, skip):
                pass
        self._reader_pos = chunk.first_record + chunk.record_count
        return islice(self._reader, chunk.record_count)

    def _check_limit(self) -> None:
        d = self.descriptor
        failed = self.totals.failed
        if d.max_error_count is not None and failed > d.max_error_count:
            raise FileRejected(f"{failed} bad rows, more than the limit of {d.max_error_count}: the file is rejected")
        if d.max_error_ratio is not None and self.record_count:
            limit = float(d.max_error_ratio) * self.record_count
            if failed > limit:
                raise FileRejected(
                    f"{failed} bad rows of {self.record_count}, more than the limit of "
                    f"{float(d.max_error_ratio):.1%}: the file is rejected"
                )

    def _save_totals(self) -> None:
        t = self.totals
        ImportFile.objects.filter(pk=self.file.pk).update(
            created=t.created,
            updated=t.updated,
            unchanged=t.unchanged,
            retired=t.retired,
            failed=t.failed,
            rows_done=t.rows_done,
        )
        job_progress_update(job_id=self.file.job_id)

    def _record(self, result: _Batch) -> None:
        """Save a batch's row errors, deferred rows and sync-log changes (inside the chunk's transaction)."""
        if result.errors:
            RowError.objects.bulk_create(result.errors, batch_size=1000)
            room = MAX_REPORTED_ERRORS - len(self.reported_errors)
            if room > 0:
                self.reported_errors.extend(result.errors[:room])
        if result.deferred:
            DeferredRow.objects.bulk_create(result.deferred, batch_size=1000)
        if result.failed_keys:
            FileKey.objects.bulk_create(
                [FileKey(file=self.file, key=k[:400]) for k in result.failed_keys], ignore_conflicts=True
            )
        if self.connection is None:
            return
        entity = self.descriptor.entity
        if result.failed_ext:
            sync.sync_log_add_errors(
                connection=self.connection, entity=entity, errors=result.failed_ext, file_name=self.file.name
            )
            self.open_sync_errors = True
        if self.open_sync_errors and result.applied_ext:
            sync.sync_log_resolve(connection=self.connection, entity=entity, external_ids=result.applied_ext)
            self.open_sync_errors = sync.sync_log_has_errors(connection=self.connection, entity=entity)

    # -- one batch ------------------------------------------------------------------------------

    def _error(self, out: _Batch, row, message, *, column="", value="", ext=""):
        out.errors.append(
            RowError(file=self.file, row=row, column=column, value=value[:2000], message=message, external_id=ext)
        )

    def _apply(self, records: list[Record], *, final: bool) -> _Batch:
        """Convert, check and write a batch of records; return what it did."""
        return self._write_batch(self._convert(records), final=final)

    def _convert(self, records: list[Record]) -> tuple[_Batch, list[_Good]]:
        """Convert and check a batch of records without touching the database (it may run in a thread)."""
        out = _Batch()
        present = self.present
        key_idx = self.key_idx
        good: list[_Good] = []
        seen: dict[str, int] = {}
        convs = self.fast_convs
        pick = self.pick
        pick_chars = self.pick_chars
        char_limit = self.char_limit
        pick_required = self.pick_required
        width = self.width
        single_key = key_idx[0] if len(key_idx) == 1 else None
        for rec in records:
            out.totals.rows_done += 1
            if rec.error:
                out.totals.failed += 1
                self._error(out, rec.row, rec.error)
                continue
            cells = rec.values
            if len(cells) == width:
                cells.append("")  # the cell of key columns the file lacks (their default applies)
            try:
                # Plain text cells within every text column's length, every required one filled and none
                # holding a control character, need no per-cell call; the other cells go through their
                # converters, which refuse bad values.
                if (
                    (pick_chars is not None and max(map(len, pick_chars(cells))) > char_limit)
                    or (pick_required is not None and "" in pick_required(cells))
                    or row_has_control_character(cells)
                ):
                    values = [convert(cell) for cell, convert in zip(pick(cells), self.all_convs, strict=True)]
                else:
                    values = [cell if f is None else f(cell) for cell, f in zip(pick(cells), convs, strict=True)]
            except RowProblem:
                self._refuse_cells(out, rec)
                continue
            if single_key is not None:
                key = str(values[single_key])
            else:
                key = KEY_SEP.join("" if values[i] is None else str(values[i]) for i in key_idx)
            if key in seen:
                ext = key.replace(KEY_SEP, "/")
                out.totals.failed += 1
                message = f"duplicate key {ext} in this file (first at row {seen[key]})"
                self._error(out, rec.row, message, column=present[key_idx[0]].name, value=ext, ext=ext)
                continue
            seen[key] = rec.row
            good.append(_Good(rec.row, rec.index, key, values, cells))
        return out, good

    def _write_batch(self, converted: tuple[_Batch, list[_Good]], *, final: bool) -> _Batch:
        """Resolve references and write a converted batch; return what it did."""
        out, good = converted
        if good and self.parent_cols:
            self._write_parents(good)
        for i, col in self.refs:
            good = self._resolve(good, i, col, out)
        if self.self_refs:
            good = self._check_self_refs(good, out, final=final)
        if good:
            self._write(good, out)
        return out

    def _refuse_cells(self, out: _Batch, rec: Record) -> None:
        """Record every bad cell of a refused row."""
        problems = []
        values = []
        raw = self.pick(rec.values)
        for cell, convert in zip(raw, self.all_convs, strict=True):
            try:
                values.append(convert(cell))
            except RowProblem as exc:
                problems.append(exc)
                values.append(problems)
        ext = visible_text(external_id(raw[i] for i in self.key_idx))
        key_values = [values[i] for i in self.key_idx]
        if not any(v is problems for v in key_values):
            # The record was sent, if badly: keep a FULL file from retiring it, and catch a later duplicate.
            out.failed_keys.append(KEY_SEP.join("" if v is None else str(v) for v in key_values))
        out.totals.failed += 1
        for p in problems:
            self._error(out, rec.row, p.message, column=p.column, value=p.value, ext=ext)
        out.failed_ext[ext] = ("; ".join(f"{p.column}: {p.message}" for p in problems), rec.row)

    def _resolve(self, good: list[_Good], i: int, col: Column, out: _Batch) -> list[_Good]:
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
                    [model(**{col.ref_key: k, "connection": self.connection}) for k in sorted(missing)],
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
                out.totals.failed += 1
                message = f"unknown {label} '{v}'"
                self._error(out, g.row, message, column=col.name, value=v, ext=g.ext)
                out.failed_ext[g.ext] = (f"{col.name}: {message}", g.row)
                out.failed_keys.append(g.key)
                continue
            g.values[i] = pk
            kept.append(g)
        # Keys built from references keep the natural key text (already in g.key).
        return kept

    def _check_self_refs(self, good: list[_Good], out: _Batch, *, final: bool) -> list[_Good]:
        """Resolve references to the entity's own records: stored ones now, ones new in this batch after the
        upsert, and hold back (or, on the last pass, refuse) rows whose record is neither."""
        model = self.compiled.model
        kept = []
        batch_keys = {g.key for g in good}
        for n, (i, col) in enumerate(self.self_refs):
            wanted = {g.values[i] for g in good if g.values[i] is not None}
            stored = dict(model.objects.filter(**{f"{col.ref_key}__in": wanted}).values_list(col.ref_key, "pk"))
            for g in good:
                v = g.values[i]
                if v is None:
                    g.later[n] = None
                elif v in stored:
                    g.values[i] = stored[v]
                    g.later[n] = None
                elif v in batch_keys:
                    g.values[i] = None
                    g.later[n] = v
                else:
                    g.values[i] = _Missing(v)
        # A row held back takes with it the rows of the batch that name it, and so on down the chain.
        held = {g.key for g in good if any(isinstance(g.values[i], _Missing) for i, _ in self.self_refs)}
        spreading = bool(held)
        while spreading:
            spreading = False
            for g in good:
                if g.key in held:
                    continue
                for n, (i, _) in enumerate(self.self_refs):
                    if g.later.get(n) in held:
                        g.values[i] = _Missing(g.later[n])
                        g.later[n] = None
                        held.add(g.key)
                        spreading = True
                        break
        for g in good:
            missing = [(i, col) for i, col in self.self_refs if isinstance(g.values[i], _Missing)]
            if not missing:
                kept.append(g)
                continue
            if final:
                i, col = missing[0]
                v = g.values[i].key
                out.totals.failed += 1
                message = f"unknown {model._meta.verbose_name} '{v}'"
                self._error(out, g.row, message, column=col.name, value=v, ext=g.ext)
                out.failed_ext[g.ext] = (f"{col.name}: {message}", g.row)
                out.failed_keys.append(g.key)
            else:
                out.totals.rows_done -= 1
                out.deferred.append(DeferredRow(file=self.file, row=g.row, index=g.index, values=g.raw))
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
                cursor, plan=self.parent_plan, stage=self.parent_stage, connection_id=self._conn_id, want_pks=True
            )
        # Rows whose parent changed (a new product title) count as updated even if the variant did not change.
        changed_parents = set()
        if result.changed_pks:
            nat = NATURAL_KEYS[self.parent_plan.model._meta.label]
            changed_parents = set(
                self.parent_plan.model.objects.filter(pk__in=result.changed_pks).values_list(nat, flat=True)
            )
        self._parent_changed_keys = {g.key for g in good if g.values[i_key] in changed_parents}

    @property
    def _conn_id(self):
        return self.connection.pk if self.connection else None

    def _write(self, good: list[_Good], out: _Batch) -> None:
        """Stage the batch, refuse keys an earlier batch of the file had, and merge the rest."""
        order = self.stage_order
        n_refs = range(len(self.self_refs))
        rows = [(g.row, g.key, *[g.later.get(n) for n in n_refs], *[g.values[i] for i in order]) for g in good]
        by_row = {g.row: g for g in good}
        stage = self.stage
        with connection.cursor() as cursor:
            stage.load(cursor, rows, fields=self.stage_fields)
            cursor.execute(
                f"SELECT s._row FROM {qn(stage.name)} s JOIN impex_filekey k ON k.file_id = %s AND k.key = s._key",
                [self.file.pk],
            )
            dups = [r[0] for r in cursor.fetchall()]
            if dups:
                cursor.execute(f"DELETE FROM {qn(stage.name)} WHERE _row IN ({', '.join(['%s'] * len(dups))})", dups)
                for row in dups:
                    g = by_row.pop(row)
                    out.totals.failed += 1
                    message = f"duplicate key {g.ext} in this file (an earlier row has it)"
                    self._error(out, row, message, column=self.present[self.key_idx[0]].name, value=g.ext, ext=g.ext)
            cursor.execute(
                f"INSERT INTO impex_filekey (file_id, key) SELECT %s, _key FROM {qn(stage.name)}", [self.file.pk]
            )
            parent_changed = [g.key for g in by_row.values() if g.key in self._parent_changed_keys]
            result = upsert(
                cursor,
                plan=self.plan,
                stage=stage,
                connection_id=self._conn_id,
                want_pks=bool(self.self_refs or parent_changed),
            )
            created = result.created
            updated = result.changed
            extra: set = set()
            if self.self_refs and any(g.later.get(n) for g in by_row.values() for n in n_refs):
                extra |= self._write_self_refs(cursor)
            if parent_changed:
                extra |= self._pks_of_staged(cursor, keys=parent_changed)
            if extra:
                updated = len(result.changed_pks | (extra - result.created_pks))
        staged = len(by_row)
        out.totals.created += created
        out.totals.updated += updated
        out.totals.unchanged += staged - created - updated
        if self.open_sync_errors:
            out.applied_ext.extend(g.ext for g in by_row.values())

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

    def _write_self_refs(self, cursor) -> set:
        """Point rows at records of their own table (customer parents) once the batch is in."""
        model = self.compiled.model
        table = qn(model._meta.db_table)
        pk = qn(model._meta.pk.column)
        keys = [f.column for f in self.plan.key_fields]
        touched: set = set()
        now = db_param(model._meta.get_field("updated_at"), timezone.now())
        for n, (_, col) in enumerate(self.self_refs):
            att = qn(col.model_field.column)
            nat = qn(model._meta.get_field(col.ref_key).column)
            key_select = ", ".join(f"s.{qn(k)} AS {qn(k)}" for k in keys)
            on = " AND ".join(f"{table}.{qn(k)} = x.{qn(k)}" for k in keys)
            cursor.execute(
                f"UPDATE {table} SET {att} = x.pid, updated_at = %s "
                f"FROM (SELECT {key_select}, p.{pk} AS pid FROM {qn(self.stage.name)} s "
                f"JOIN {table} p ON p.{nat} = s._ref{n} WHERE s._ref{n} IS NOT NULL) x "
                f"WHERE {on} AND {distinct(f'{table}.{att}', 'x.pid')} RETURNING {table}.{pk}",
                [now],
            )
            touched |= {r[0] for r in cursor.fetchall()}
        return touched

    # -- the end --------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Apply held-back rows, retire what a FULL file no longer has, and mark the file imported."""
        with transaction.atomic():
            self._run_deferred()
            if self.file.mode == Mode.FULL:
                self.totals.retired += self._retire()
            if self.descriptor.entity == "product_variant":
                self._derive_product_status()
            now = timezone.now()
            if not self.dry_run and self.connection:
                ImportedFileName.objects.update_or_create(
                    connection=self.connection,
                    name=self.file.name,
                    defaults={"content_hash": self.file.content_hash, "file": self.file, "imported_at": now},
                )
            if self.connection:
                sync.sync_log_finish(
                    connection=self.connection, entity=self.descriptor.entity, full=self.file.mode == Mode.FULL
                )
            self._save_totals()
            ImportFile.objects.filter(pk=self.file.pk).update(status=FileStatus.IMPORTED, finished_at=now)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM impex_filekey WHERE file_id = %s", [self.file.pk])
        self.stage.drop()
        if self.parent_cols:
            self.parent_stage.drop()

    def _run_deferred(self) -> None:
        """Retry held-back rows until no more go in, then refuse the rest."""
        previous = None
        final = False
        while True:
            pending = list(DeferredRow.objects.filter(file=self.file).order_by("index"))
            if not pending:
                return
            if previous is not None and len(pending) >= previous:
                final = True
            previous = len(pending)
            DeferredRow.objects.filter(pk__in=[d.pk for d in pending]).delete()
            for start in range(0, len(pending), self.batch_size):
                part = pending[start : start + self.batch_size]
                records = [Record(index=d.index, row=d.row, values=d.values, error=None) for d in part]
                result = self._apply(records, final=final)
                self._record(result)
                self.totals.add(result.totals)
            if final:
                return

    def _retire(self) -> int:
        """Retire the connection's records of this entity that the FULL file did not have; return how many."""
        spec = self.compiled.spec
        model = self.compiled.model
        table = qn(model._meta.db_table)
        key_expr, params = self._key_expression(model, table)
        exists = f"EXISTS (SELECT 1 FROM impex_filekey k WHERE k.file_id = %s AND k.key = {key_expr})"
        params = [self.file.pk, *params]
        with connection.cursor() as cursor:
            if spec.retire == "delete":
                lists = self._price_lists_sql()
                cursor.execute(
                    f"DELETE FROM {table} WHERE connection_id = %s AND {lists[0]} AND NOT {exists}",
                    [self._conn_id, *lists[1], *params],
                )
                return cursor.rowcount
            field = model._meta.get_field(spec.retire)
            value = db_param(field, spec.retire_value)
            now = db_param(model._meta.get_field("updated_at"), timezone.now())
            cursor.execute(
                f"UPDATE {table} SET {qn(field.column)} = %s, updated_at = %s "
                f"WHERE connection_id = %s AND {distinct(qn(field.column), '%s')} AND NOT {exists}",
                [value, now, self._conn_id, value, *params],
            )
            return cursor.rowcount

    def _key_expression(self, model, table: str) -> tuple[str, list]:
        """Build the SQL that computes a stored record's file key, matching the keys the file wrote."""
        parts = []
        for name in self.compiled.spec.key_fields:
            f = model._meta.get_field(name)
            if f.is_relation:
                rel = f.related_model
                nat = rel._meta.get_field(NATURAL_KEYS[rel._meta.label]).column
                parts.append(
                    f"(SELECT r.{qn(nat)} FROM {qn(rel._meta.db_table)} r "
                    f"WHERE r.{qn(rel._meta.pk.column)} = {table}.{qn(f.column)})"
                )
            elif f.get_internal_type() in ("IntegerField", "BigIntegerField", "PositiveIntegerField"):
                parts.append(f"CAST({table}.{qn(f.column)} AS TEXT)")
            else:
                parts.append(f"{table}.{qn(f.column)}")
        return " || %s || ".join(parts), [KEY_SEP] * (len(parts) - 1)

    def _price_lists_sql(self) -> tuple[str, list]:
        """Limit price removal to the price lists the file names."""
        return (
            "price_list_id IN (SELECT pl.id FROM syncapp_pricelist pl WHERE EXISTS (SELECT 1 FROM impex_filekey k "
            "WHERE k.file_id = %s AND substr(k.key, 1, length(pl.code) + 1) = pl.code || %s))",
            [self.file.pk, KEY_SEP],
        )

    def _derive_product_status(self) -> None:
        """A product is discontinued when all its variants are, and live again when one is live."""
        now = timezone.now()
        with connection.cursor() as cursor:
            for status, cond in (("discontinued", "NOT EXISTS"), ("live", "EXISTS")):
                cursor.execute(
                    f"UPDATE syncapp_product SET status = %s, updated_at = %s WHERE status <> %s "
                    f"AND EXISTS (SELECT 1 FROM syncapp_productvariant v WHERE v.product_id = syncapp_product.id) "
                    f"AND {cond} (SELECT 1 FROM syncapp_productvariant v "
                    f"WHERE v.product_id = syncapp_product.id AND v.status = 'live')",
                    [status, db_param(_updated_field(), now), status],
                )


def _getter(positions: list[int]):
    """Return a function that picks cells by position as a tuple (itemgetter, also for one position)."""
    if len(positions) == 1:
        (pos,) = positions
        return lambda cells: (cells[pos],)
    return itemgetter(*positions)


class _Missing:
    """A self reference not found yet (the row is held back)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


def _updated_field():
    from syncapp.models import Product

    return Product._meta.get_field("updated_at")


def job_progress_update(*, job_id: int) -> None:
    """Set a job's rows done and total from its files, so that the admin can show progress."""
    totals = ImportFile.objects.filter(job_id=job_id).aggregate(done=Sum("rows_done"), total=Sum("rows_total"))
    ImportJob.objects.filter(pk=job_id).update(rows_done=totals["done"] or 0, rows_total=totals["total"] or 0)


def reject_reason(exc: Exception) -> str:
    """Return the message of a refusal for people."""
    if isinstance(exc, ImpexError):
        return str(exc)
    return f"unexpected error: {exc.__class__.__name__}: {exc}"
