"""Import one file: check it whole and find repeated keys, cut it into chunks any worker applies, finish it once."""

import functools
import itertools
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Sum, prefetch_related_objects
from django.utils import timezone

from impex import events, naming
from impex.choices import CHUNK_TRANSITIONS, ChunkStatus, FileFormat, FileKind, FileStatus, Mode, WebhookEvent
from impex.entities import natural_key_of
from impex.events import file_importing
from impex.exceptions import ConfigurationError, FileRejected, ImpexError
from impex.exceptions import RowError as RowProblem
from impex.formats.readers import Layout, Record, iter_records, scan
from impex.models import (
    Connection,
    ConnectionState,
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportChunk,
    ImportedFileName,
    ImportFile,
    RowError,
)
from impex.registry import sync_logs
from impex.services.columns import CompiledDescriptor, compile_descriptor
from impex.services.lifecycle import file_transition
from impex.services.pipeline import KEY_SEP, BatchResult, RecordPipeline, Totals, sync_log_record
from impex.services.queue import (
    WorkQueue,
    queue_claim,
    queue_done_at_once,
    queue_finish,
    queue_hold,
    queue_release,
)
from impex.services.sql import (
    WriteBatch,
    db_param,
    distinct,
    fields_read,
    guard_statements,
    is_postgres,
    qn,
    relax_commit,
    writes_into,
)
from impex.services.webhooks import RECORD_EVENTS, subscriptions_enabled, webhook_emit, webhook_records_changed
from impex.storage import local_copy, resolve_path

log = logging.getLogger(__name__)
# A FULL file in one of these has done its part of a full sync (a duplicate was applied before).
FULL_SYNC_DONE = (FileStatus.IMPORTED, FileStatus.DUPLICATE)

_tables = itertools.count(1)
# What a chunk counts, and its file sums.
CHUNK_COUNTS = ("rows_done", "created", "updated", "unchanged", "failed")
# A big file's chunks: leased work that the job's workers claim one at a time (impex.services.queue).
CHUNKS = WorkQueue(ImportChunk, moves=CHUNK_TRANSITIONS, pending=ChunkStatus.PENDING, running=ChunkStatus.RUNNING)


def bspk_timestamp_of(import_file: ImportFile) -> str | None:
    """Return the YYYYMMDDHHMM of a file ordered by a BSPK timestamp, or None (Kore, patterns, no connection)."""
    conn = import_file.connection
    if conn is None or conn.convention != naming.BSPK or import_file.sequence is not None:
        return None
    if not import_file.order_key or import_file.descriptor_id is None:
        return None
    return import_file.order_key


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


def reject_reason(exc: Exception, *, name: str = "") -> str:
    """Return the message of a refusal for people, led by the file's name."""
    message = str(exc) if isinstance(exc, ImpexError) else f"unexpected error: {exc.__class__.__name__}: {exc}"
    return message if not name or message.startswith(name) else f"{name}: {message}"


class _KeyReader:
    """Read a record's key from its raw cells with the key columns' converters, as the pipeline keys it."""

    def __init__(self, compiled: CompiledDescriptor):
        self.columns = compiled.key_columns

    def _key(self, cells) -> str | None:
        try:
            values = [c.convert(cell) for c, cell in zip(self.columns, cells, strict=True)]
        except RowProblem:
            return None
        return KEY_SEP.join("" if v is None else str(v) for v in values)

    def _positions(self, header: list[str]) -> list[int | None]:
        """Return where each key column sits in rows laid out by header (None: not sent)."""
        return [header.index(c.name) if c.name in header else None for c in self.columns]

    def for_header(self, header: list[str]):
        """Return the key function of rows laid out by header (None for a row of the wrong width)."""
        positions = self._positions(header)
        width = len(header)
        if len(self.columns) == 1 and positions[0] is not None:
            # The usual case (one key column, e.g. customer_id): no list, no join.
            convert, position = self.columns[0].convert, positions[0]

            def single(cells: list[str]) -> str | None:
                if len(cells) != width:
                    return None
                try:
                    value = convert(cells[position])
                except RowProblem:
                    return None
                return "" if value is None else str(value)

            return single

        def key(cells: list[str]) -> str | None:
            if len(cells) != width:
                return None
            return self._key(["" if p is None else cells[p] for p in positions])

        return key

    def for_wrong_width(self, header: list[str]):
        """Return the key function of rows of the wrong width: the key cells at their header positions, if the row
        reaches them. Such a row is refused, but a FULL file keeps the record it names rather than retire it."""
        positions = self._positions(header)
        width = len(header)

        def key(cells: list[str]) -> str | None:
            if len(cells) == width or any(p is not None and p >= len(cells) for p in positions):
                return None
            return self._key(["" if p is None else cells[p] for p in positions])

        return key

    def for_xml(self, values: dict[str, str]) -> str | None:
        """Return the key of an XML record."""
        return self._key([values.get(c.name, "") for c in self.columns])


class _KeyLedger:
    """The keys of a file's records as it is scanned: which records repeat an earlier key, and (FULL) the keys.

    Up to SPILL keys stay in memory; past that they go to a temporary table, so memory stays flat
    whatever the file's size and the database sorts them out.
    """

    SPILL = 50_000

    def __init__(self):
        self.buffer: list[tuple[int, int, str]] = []
        self.table = ""
        # Keys of rows refused for their width (a FULL file's ledger keeps them; they repeat nothing): as many as
        # a file imported whole can have, the only one that writes its ledger from here.
        self.loose: list[str] = []

    def add(self, index: int, row: int, key: str) -> None:
        self.buffer.append((index, row, key))
        if len(self.buffer) >= self.SPILL:
            self._spill()

    def _spill(self) -> None:
        with connection.cursor() as cursor:
            if not self.table:
                self.table = f"impex_keys_{next(_tables)}"
                cursor.execute(f"CREATE TEMPORARY TABLE {self.table} (idx bigint, row bigint, key text)")
            if is_postgres():
                with cursor.cursor.copy(f"COPY {self.table} (idx, row, key) FROM STDIN") as copy:
                    for item in self.buffer:
                        copy.write_row(item)
            else:
                cursor.executemany(f"INSERT INTO {self.table} (idx, row, key) VALUES (%s, %s, %s)", self.buffer)
        self.buffer = []

    def repeated(self) -> tuple[dict[int, int], dict[str, int]]:
        """Return the records that repeat an earlier key (index -> the first one's row) and each key's first row.

        Only for keys kept in memory (not spilled).
        """
        first: dict[str, int] = {}
        duplicates: dict[int, int] = {}
        for index, row, key in self.buffer:
            if key in first:
                duplicates[index] = first[key]
            else:
                first[key] = row
        return duplicates, first

    def save(self, *, file_id: int, full: bool, duplicates: bool = True) -> int:
        """Write the file's repeated records (and, full, the keys of a FULL file imported whole, which are all in
        memory); return how many keys it has.

        duplicates=False leaves the repeated records out (a file imported in one transaction keeps them in memory).
        """
        if not self.table:
            repeated, first = self.repeated()
            if duplicates:
                FileDuplicate.objects.bulk_create(
                    [FileDuplicate(file_id=file_id, index=i, first_row=r) for i, r in repeated.items()],
                    batch_size=1000,
                )
            if full:
                keys = dict.fromkeys(k[:400] for k in [*first, *self.loose])
                FileKey.objects.bulk_create([FileKey(file_id=file_id, key=k) for k in keys], batch_size=5000)
            return len(first)
        assert not full, "a file whose keys were spilled is chunked: its chunks write its keys"
        self._spill()
        with connection.cursor() as cursor:
            cursor.execute(
                'INSERT INTO impex_fileduplicate (file_id, "index", first_row) '
                "SELECT %s, idx, first_row FROM (SELECT idx, row_number() OVER w AS n, first_value(row) OVER w "
                f"AS first_row FROM {self.table} WINDOW w AS (PARTITION BY key ORDER BY idx)) x WHERE n > 1",
                [file_id],
            )
        return 0

    def drop(self) -> None:
        if self.table:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            self.table = ""
        self.buffer = []


_LOCK_FIELDS = [ImportFile._meta.get_field("status"), ImportFile._meta.get_field("started_at")]
_LOCK_SQL = f'SELECT "status", "started_at" FROM "{ImportFile._meta.db_table}" WHERE "id" = %s'


class JobShared:
    """What the files of one job read once and share: compiled descriptors, pipelines and their staging tables,
    the enabled webhook subscriptions.

    Read when the first file needs them: a descriptor changed while the job runs applies from the next job on.
    What other sessions change while the job runs is read again once FRESH_SECONDS old, not for each file:
    that there are no webhook subscriptions, and whether the sync logs have open errors (a file that believes
    they have none resolves any all the same, in its last round trip).
    """

    FRESH_SECONDS = 2.0

    def __init__(self):
        self._compiled: dict[tuple, tuple[CompiledDescriptor, Layout]] = {}
        self._pipelines: dict[tuple, RecordPipeline] = {}
        # What other sessions change, with when it was read: {key: (time.monotonic(), value)}.
        self._subscriptions: dict[None, tuple[float, list]] = {}
        self._open_errors: dict[tuple, tuple[float, bool]] = {}
        self._sync_logs: dict[tuple, tuple[float, int | None]] = {}

    def compiled(self, descriptor, *, tz: str) -> tuple[CompiledDescriptor, Layout]:
        """Return a descriptor compiled for a time zone, and its reader layout (its columns read once)."""
        key = (descriptor.pk, tz)
        if key not in self._compiled:
            prefetch_related_objects([descriptor], "columns")
            self._compiled[key] = (compile_descriptor(descriptor, tz=tz), layout_of(descriptor))
        return self._compiled[key]

    def pipeline(self, key: tuple, make) -> RecordPipeline:
        """Return the pipeline of files laid out alike (descriptor, header, connection, mode), made once."""
        if key not in self._pipelines:
            self._pipelines[key] = make()
        return self._pipelines[key]

    def _fresh(self, store: dict, key, read, *, keep=lambda value: True):
        """Return what read() gave for key up to FRESH_SECONDS ago, or read it now (each time while keep(value) is
        false)."""
        now = time.monotonic()
        seen = store.get(key)
        if seen is None or not keep(seen[1]) or now - seen[0] > self.FRESH_SECONDS:
            seen = store[key] = (now, read())
        return seen[1]

    @property
    def subscriptions(self) -> list:
        """Return the enabled webhook subscriptions: none, as read up to FRESH_SECONDS ago, or else read now.

        Only "there are none" is kept: deliveries are written for the subscriptions read in the file's own
        transaction, so a subscription deleted or switched off meanwhile gets none (a subscription made meanwhile
        has the events of files from FRESH_SECONDS on).
        """
        return self._fresh(self._subscriptions, None, subscriptions_enabled, keep=lambda found: not found)

    def open_sync_errors(self, *, connection, entity: str) -> bool:
        """Tell whether the connection's sync log of an entity has open errors (read again once FRESH_SECONDS old)."""
        read = functools.partial(sync_logs().has_errors, connection=connection, entity=entity)
        return self._fresh(self._open_errors, (connection.pk, entity), read)

    def sync_log_id(self, *, connection, entity: str) -> int | None:
        """Return the id of the connection's sync log of an entity (read again while there is none, or once
        FRESH_SECONDS old: the API may drop a log and make it anew)."""
        read = functools.partial(sync_logs().id, connection=connection, entity=entity)
        return self._fresh(self._sync_logs, (connection.pk, entity), read, keep=lambda pk: pk is not None)

    def open_sync_errors_forget(self, *, connection, entity: str) -> None:
        """Read the log's open errors again for the next file."""
        self._open_errors.pop((connection.pk, entity), None)
        transaction.on_commit(lambda: self._open_errors.pop((connection.pk, entity), None))

    def open_sync_errors_now(self, *, connection, entity: str, value: bool) -> None:
        """Keep what a file's batch found of the log's open errors (it opened or resolved some), once it commits."""
        key = (connection.pk, entity)
        self._open_errors.pop(key, None)  # a rollback would undo what the batch did: read it again then
        transaction.on_commit(lambda: self._open_errors.__setitem__(key, (time.monotonic(), value)))

    def close(self) -> None:
        """Drop the pipelines' staging tables (best effort: they are temporary, and go with the session anyway)."""
        pipelines, self._pipelines = list(self._pipelines.values()), {}
        for pipeline in pipelines:
            try:
                pipeline.drop()
            except DatabaseError:
                log.warning("could not drop a staging table", exc_info=True)
                return


@dataclass
class _Scanned:
    """A file read whole by its start: its header, record count, chunks and keys."""

    header: list[str]
    count: int
    chunks: list[ImportChunk]
    keys: _KeyLedger

    def small(self) -> bool:
        """Tell whether the file goes in whole in one transaction: one chunk, its keys in memory."""
        return len(self.chunks) == 1 and not self.keys.table and self.count <= max(1, settings.IMPEX_CHUNK_ROWS)


class FileImport:
    """One worker's handle on one file: the runner starts it; any worker applies its chunks; one finishes it."""

    def __init__(
        self,
        import_file: ImportFile,
        *,
        worker: str = "",
        job_id: int | None = None,
        shared: JobShared | None = None,
    ):
        self.file = import_file
        self.worker = worker
        self.job_id = job_id or import_file.processed_by_id or import_file.job_id
        self.connection: Connection | None = import_file.connection
        self.descriptor = import_file.descriptor
        self.batch_size = max(1, settings.IMPEX_BATCH_SIZE)
        self.dry_run = False
        self.shared = shared
        self._batch_since = timezone.now()
        self._compiled: CompiledDescriptor | None = None
        self._layout: Layout | None = None
        self._pipeline: RecordPipeline | None = None
        self._reader = None
        self._key_of = None
        self._reader_pos = 0
        self._analyzed_rows = 0
        self._grown = 0
        self._open_sync_errors: bool | None = None
        self._local = ExitStack()
        self._path: Path | None = None
        # Rows held back by a file imported in one transaction: kept here instead of in DeferredRow.
        self._held: list[Record] | None = None
        self._writes: WriteBatch | None = None  # the last writes of a file imported in one transaction

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def compiled(self) -> CompiledDescriptor:
        if self._compiled is None:
            if self.descriptor is None:
                raise FileRejected("no descriptor matches this file")
            tz = self.connection.timezone if self.connection else "UTC"
            try:
                if self.shared is not None:
                    self._compiled, self._layout = self.shared.compiled(self.descriptor, tz=tz)
                else:
                    self._compiled = compile_descriptor(self.descriptor, tz=tz)
            except ConfigurationError as exc:
                raise FileRejected(f"descriptor {self.descriptor.code} cannot be used: {exc}") from exc
        return self._compiled

    @property
    def path(self) -> Path:
        """Return a local path to the file, downloading it once from remote storage (kept until close)."""
        if self._path is None:
            self._path = self._local.enter_context(local_copy(*resolve_path(self.file.path)))
        return self._path

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            if self.shared is not None and self.descriptor is not None:
                self.compiled  # noqa: B018  (reads the layout with the compiled descriptor)
            if self._layout is None:
                self._layout = layout_of(self.descriptor)
        return self._layout

    @property
    def full(self) -> bool:
        return self.file.mode == Mode.FULL

    def _make_pipeline(self, header: list[str]) -> RecordPipeline:
        def make() -> RecordPipeline:
            return RecordPipeline(
                compiled=self.compiled,
                header=header,
                connection_id=self.connection.pk if self.connection else None,
                full=self.full,
            )

        if self.shared is None:
            pipeline = make()
        else:
            tz = self.connection.timezone if self.connection else "UTC"
            key = (self.descriptor.pk, tz, tuple(header), self.connection.pk if self.connection else None, self.full)
            pipeline = self.shared.pipeline(key, make)
        pipeline.file = self.file
        return pipeline

    @property
    def pipeline(self) -> RecordPipeline:
        if self._pipeline is None:
            self._pipeline = self._make_pipeline(self.file.header)
        return self._pipeline

    @property
    def limited(self) -> bool:
        """Tell whether the descriptor rejects the file past a number of bad rows (then it is one chunk)."""
        d = self.descriptor
        return d.max_error_count is not None or d.max_error_ratio is not None

    @property
    def open_sync_errors(self) -> bool:
        if self._open_sync_errors is None:
            if not self.connection:
                self._open_sync_errors = False
            elif self.shared is not None and not self.dry_run:
                self._open_sync_errors = self.shared.open_sync_errors(
                    connection=self.connection, entity=self.descriptor.entity
                )
            else:
                self._open_sync_errors = sync_logs().has_errors(
                    connection=self.connection, entity=self.descriptor.entity
                )
        return self._open_sync_errors

    def close(self) -> None:
        """Drop this worker's staging tables (unless the job shares them) and its local copy of the file."""
        if self._pipeline is not None and self.shared is None:
            self._pipeline.drop()
        self._reader = None
        self._local.close()
        self._path = None

    # -- start (the job's runner) ---------------------------------------------------------------

    def scan(self, *, single_chunk: bool = False) -> _Scanned:
        """Read the whole file once: check it, find its keys (repeated ones, a FULL file's), cut it into chunks.

        Raise FileRejected if the file cannot go in; nothing is written.
        """
        f = self.file
        layout = self.layout
        compiled = self.compiled
        keys = _KeyLedger()
        reader = _KeyReader(compiled)
        first_row = 1 if layout.format == FileFormat.XML or not layout.has_header else 2
        key_of = reader.for_xml  # a CSV or TSV file's header says where the key cells are (on_header)
        loose_of = None  # (an XML record has no width)
        add = keys.add
        loose = keys.loose
        most = max(1, settings.IMPEX_CHUNK_ROWS)  # a file with more records is chunked: its chunks read these keys

        def on_header(header: list[str]) -> None:
            nonlocal key_of, loose_of
            self._pipeline = self._make_pipeline(header)
            key_of = reader.for_header(header)
            if self.full:
                loose_of = reader.for_wrong_width(header)

        def visit(index: int, values) -> None:
            key = key_of(values)
            if key is not None:
                add(index, index + first_row, key)
            elif loose_of is not None and len(loose) < most and (key := loose_of(values)) is not None:
                loose.append(key)

        one_chunk = single_chunk or self.limited
        chunk_rows = max(1, settings.IMPEX_CHUNK_ROWS)
        try:
            result = scan(
                self.path,
                layout=layout,
                max_bytes=settings.IMPEX_MAX_FILE_BYTES,
                on_header=on_header,
                visit=visit,
                chunk_rows=None if one_chunk else chunk_rows,
            )
            if self._pipeline is None:
                self._pipeline = self._make_pipeline(result.header)
        except BaseException:
            keys.drop()
            raise
        count = result.record_count
        starts = [0] if one_chunk or not count else list(range(0, count, chunk_rows))
        size = count if one_chunk else chunk_rows
        chunks = [
            ImportChunk(
                file=f,
                index=n,
                first_record=start,
                record_count=min(size, count - start),
                first_byte=result.offsets[n] if n < len(result.offsets) else None,
            )
            for n, start in enumerate(starts)
        ]
        return _Scanned(header=result.header, count=count, chunks=chunks, keys=keys)

    def start(self, *, single_chunk: bool = False, scanned: _Scanned | None = None) -> bool:
        """Check the whole file, find its repeated keys (and a FULL file's keys), cut it into chunks, mark it running.

        Raise FileRejected if the file cannot go in; nothing is written then. Return False if the file had
        moved on meanwhile. scanned: what scan() found, if the caller has read the file already.
        """
        scanned = scanned or self.scan(single_chunk=single_chunk)
        try:
            with transaction.atomic():
                guard_statements()
                if self._begin(scanned, whole=False) is None:
                    return False
        finally:
            scanned.keys.drop()
        return True

    def _begin(self, scanned: _Scanned, *, whole: bool) -> int | None:
        """Lock the file and mark it running with what its scan found (inside the caller's transaction).

        Return how many keys a FULL file has, or None if the file had moved on. whole: the file is imported in
        this same transaction, so its chunk and repeated records are not written for other workers.
        """
        f = self.file
        with connection.cursor() as cursor:  # (written by hand: a small file pays the ORM's cost of it per file)
            lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
            ((status, started_at),) = fields_read(cursor, _LOCK_SQL + lock, [f.pk], _LOCK_FIELDS)
        if status not in (FileStatus.QUEUED, FileStatus.WAITING):
            return None
        f.status = status
        if started_at is not None:
            # Started before and given back (queued or waiting again): drop what that start prepared.
            for model in (FileKey, FileDuplicate, DeferredRow, RowError, ImportChunk):
                model.objects.filter(file=f).delete()
        # A FULL file imported whole keeps its keys now; a chunked one's chunks write theirs as they apply (in
        # parallel, each in its own transaction), which keeps 500,000 key writes out of the start every worker awaits.
        distinct_keys = scanned.keys.save(file_id=f.pk, full=self.full and whole, duplicates=not whole)
        if not whole:
            ImportChunk.objects.bulk_create(scanned.chunks)
        if (
            self.full
            and self.connection
            and not self._full_sync_siblings().filter(status__in=(FileStatus.RUNNING, FileStatus.IMPORTED)).exists()
        ):
            # The first file of the full sync starts the log over; its job's other FULL files of the
            # entity (a full-data-set zip) add to it.
            sync_logs().start_full(connection=self.connection, entity=self.descriptor.entity)
        file_transition(
            f,
            new=FileStatus.RUNNING,
            job_id=self.job_id,
            worker=self.worker,
            write=not whole,  # a file imported whole is written once, imported
            header=scanned.header,
            rows_total=scanned.count,
            rows_done=0,
            created=0,
            updated=0,
            unchanged=0,
            retired=0,
            failed=0,
            started_at=timezone.now(),
        )
        file_importing(f, job_id=self.job_id, chunks=len(scanned.chunks), worker=self.worker)
        return distinct_keys

    def import_whole(self, scanned: _Scanned, *, before_commit=None) -> bool:
        """Import a small file in one transaction: mark it running, apply its records, finish it.

        For a file of one chunk (scanned.small()). A worker killed half-way, or a file refused on the way,
        leaves nothing: the file is as it was (queued or waiting). before_commit(writes) runs last in the
        transaction, given the WriteBatch of the file's last writes (the runner renews its lease there, so that a
        file commits only under the job's lease). Return False if the file had moved on meanwhile.
        """
        f = self.file
        before = (f.status, f.message)
        relax = not self.dry_run and not connection.in_atomic_block  # (never an enclosing transaction's commit)
        try:
            # The file's last writes (ledger, status, chunk, events, the job's lease) go in one round trip.
            with transaction.atomic(), WriteBatch() as writes, events.held(into=writes):
                self._writes = writes
                guard_statements()
                if relax:
                    relax_commit(writes)
                distinct_keys = self._begin(scanned, whole=True)
                if distinct_keys is None:
                    return False
                if self.full and distinct_keys >= settings.IMPEX_ANALYZE_MIN_ROWS:
                    # As start() does: the retirement's join with the keys just written needs their count
                    # (ANALYZE counts this transaction's own rows).
                    self._analyze(["impex_filekey"])
                (chunk,) = scanned.chunks
                duplicates, _ = scanned.keys.repeated()
                self._held = []
                totals = self._apply_records(self._records_of(chunk), duplicates=duplicates)
                now = timezone.now()
                done = {name: getattr(totals, name) for name in CHUNK_COUNTS}
                queue_done_at_once(
                    CHUNKS, chunk, worker=self.worker, status=ChunkStatus.DONE, claimed_at=now, finished_at=now, **done
                )
                writes.insert(ImportChunk, [chunk])
                self._finish_locked(done, writes=writes)
                if before_commit is not None:
                    before_commit(writes)
        except BaseException:
            f.status, f.message = before  # rolled back: the file is as it was
            f.__dict__.pop("_unwritten", None)
            raise
        finally:
            scanned.keys.drop()
            self._held, self._writes = None, None
        self._grown += totals.rows_done
        self._refresh_statistics()
        return True

    # -- chunks (any worker) --------------------------------------------------------------------

    def work(self, *, between=None) -> int:
        """Claim and apply free chunks of the file until none is left; return how many this worker applied."""
        applied = 0
        while (chunk_id := self.chunk_claim()) is not None:
            if self.chunk_apply(chunk_id):
                applied += 1
            if between is not None:
                between()
        return applied

    def chunk_claim(self) -> int | None:
        """Claim the first chunk nobody holds (or whose holder's lease ran out); return its id."""
        now = timezone.now()
        # The queue locks the chunk row only (of self), never its file's or job's (other workers update those).
        claimed = queue_claim(
            CHUNKS,
            ImportChunk.objects.filter(CHUNKS.claimable(now), file_id=self.file.pk),
            worker=self.worker,
            size=1,
            now=now,
            order_by=("index",),
            claimed_at=now,
            attempts=F("attempts") + 1,  # the workers that started it
        )
        return claimed[0] if claimed else None

    def chunk_apply(self, chunk_id: int) -> bool:
        """Apply a chunk this worker claimed, in one transaction that also marks it done; False if it was lost.

        If applying fails, the claim is given back at once, so whoever runs the job again need not wait
        for the lease to run out.
        """
        try:
            return self._chunk_apply(chunk_id)
        except BaseException:
            queue_release(CHUNKS, [chunk_id], worker=self.worker)
            raise

    def _chunk_apply(self, chunk_id: int) -> bool:
        f = self.file
        outermost = not connection.in_atomic_block  # (relaxed, an enclosing transaction would commit relaxed too)
        with transaction.atomic():
            if outermost:
                relax_commit()
            guard_statements()
            # Only the chunk row is locked (the queue locks of self: the model's default ordering would join and
            # lock its file and job for the whole chunk, and so make every other worker wait).
            if not queue_hold(CHUNKS, [chunk_id], worker=self.worker, renew=False):
                return False
            chunk = ImportChunk.objects.only("first_record", "record_count", "first_byte", "index").get(pk=chunk_id)
            end = chunk.first_record + chunk.record_count
            duplicates = dict(
                FileDuplicate.objects.filter(file_id=f.pk, index__gte=chunk.first_record, index__lt=end).values_list(
                    "index", "first_row"
                )
            )
            records = self._records_of(chunk)
            keys: dict[str, None] = {}
            if self.full:
                records = self._keeping_keys(records, keys)
            totals = self._apply_records(records, duplicates=duplicates)
            if keys:
                self._keys_save(keys)
            counts = {name: getattr(totals, name) for name in CHUNK_COUNTS}
            queue_finish(
                CHUNKS,
                [chunk.pk],
                worker=self.worker,
                status=ChunkStatus.DONE,
                count_attempt=False,  # counted by each claim
                keep_worker=True,
                finished_at=timezone.now(),
                **counts,
            )
            ImportFile.objects.filter(pk=f.pk).update(**{name: F(name) + value for name, value in counts.items()})
        self._grown += totals.rows_done
        self._refresh_statistics()
        return True

    def _keeping_keys(self, records, keys: dict[str, None]):
        """Pass the records through, noting the key of each (as the scan reads it: bad rows' keys too, so that a
        record whose row was refused is not retired)."""
        if self._key_of is None:
            reader = _KeyReader(self.compiled)
            self._key_of = reader.for_header(self.file.header), reader.for_wrong_width(self.file.header)
        key_of, loose_of = self._key_of
        for record in records:
            if record.values is not None:
                key = key_of(record.values)
            elif record.cells is not None:  # refused for its width: its record is kept all the same
                key = loose_of(record.cells)
            else:
                key = None
            if key is not None:
                keys[key[:400]] = None
            yield record

    def _keys_save(self, keys: dict[str, None]) -> None:
        """Add a chunk's keys to the FULL file's ledger (FileKey), in the chunk's transaction."""
        file_id = self.file.pk
        with connection.cursor() as cursor:
            if is_postgres():
                with cursor.cursor.copy("COPY impex_filekey (file_id, key) FROM STDIN") as copy:
                    for key in keys:
                        copy.write_row((file_id, key))
            else:
                cursor.executemany(
                    "INSERT INTO impex_filekey (file_id, key) VALUES (%s, %s)", [(file_id, k) for k in keys]
                )

    def _apply_records(self, records, *, duplicates: dict[int, int]) -> Totals:
        """Apply records batch by batch, recording each batch's outcome; return the totals."""
        pipeline = self.pipeline
        totals = Totals()
        while batch := list(islice(records, self.batch_size)):
            self._batch_since = timezone.now()
            # (A file whose last writes go in one batch resolves open errors there, whatever it believes of them.)
            collect = self.open_sync_errors or self._resolves_later
            result = pipeline.apply(batch, duplicates=duplicates, collect_applied=collect)
            self._record(result)
            totals.add(result.totals)
            self._check_limit(totals)
        return totals

    def chunks_left(self) -> int:
        """Count the file's chunks not done yet."""
        return ImportChunk.objects.filter(file_id=self.file.pk).exclude(status=ChunkStatus.DONE).count()

    def _records_of(self, chunk: ImportChunk):
        """Return the chunk's records: from its byte offset, or from a reader kept open across chunks."""
        stop = chunk.first_record + chunk.record_count
        header = self.file.header
        if chunk.first_byte is not None:
            return iter_records(
                self.path,
                layout=self.layout,
                header=header,
                start=chunk.first_record,
                stop=stop,
                as_list=True,
                start_byte=chunk.first_byte,
            )
        if self._reader is None or self._reader_pos > chunk.first_record:
            self._reader = iter_records(self.path, layout=self.layout, header=header, as_list=True)
            self._reader_pos = 0
        skip = chunk.first_record - self._reader_pos
        if skip:
            for _ in islice(self._reader, skip):
                pass
        self._reader_pos = stop
        return islice(self._reader, chunk.record_count)

    def _check_limit(self, totals: Totals) -> None:
        """Reject a file whose descriptor limits bad rows past the limit (such a file is one chunk)."""
        d = self.descriptor
        failed = totals.failed
        if d.max_error_count is not None and failed > d.max_error_count:
            raise FileRejected(f"{failed} bad rows, more than the limit of {d.max_error_count}: the file is rejected")
        record_count = self.file.rows_total
        if d.max_error_ratio is not None and record_count:
            if failed > float(d.max_error_ratio) * record_count:
                raise FileRejected(
                    f"{failed} bad rows of {record_count}, more than the limit of "
                    f"{float(d.max_error_ratio):.1%}: the file is rejected"
                )

    def _record(self, result: BatchResult) -> None:
        """Save a batch's row errors, held-back rows and sync-log changes (inside the chunk's transaction)."""
        f = self.file
        if result.problems:
            RowError.objects.bulk_create(
                [
                    RowError(
                        file=f, row=p.row, column=p.column, value=p.value, message=p.message, external_id=p.external_id
                    )
                    for p in result.problems
                ],
                batch_size=1000,
            )
        if result.deferred and self._held is not None:
            self._held.extend(result.deferred)
        elif result.deferred:
            DeferredRow.objects.bulk_create(
                [DeferredRow(file=f, row=r.row, index=r.index, values=r.values) for r in result.deferred],
                batch_size=1000,
            )
        if self._resolves_later and not self.open_sync_errors:
            log_id = self.shared.sync_log_id(connection=self.connection, entity=self.descriptor.entity)
            if result.applied_ext and log_id is not None:
                # The job believes the log has no open errors (read up to 2 s ago): an error opened since for one of
                # these records (a single-record update's) is resolved in the file's last round trip all the same.
                sync_logs().resolve_later(
                    writes=self._writes, log_id=log_id, external_ids=result.applied_ext, then=self._resolved_later
                )
        if self.connection is not None:
            self._open_sync_errors = sync_log_record(
                result,
                connection=self.connection,
                entity=self.descriptor.entity,
                file_name=f.name,
                job_id=self.job_id,
                open_errors=self.open_sync_errors,
            )
            if self.shared is not None and not self.dry_run:
                self.shared.open_sync_errors_now(
                    connection=self.connection, entity=self.descriptor.entity, value=self._open_sync_errors
                )
        if not self.dry_run and result.applied_keys and self.descriptor.entity in RECORD_EVENTS:
            # Outbound webhooks: one event per batch with the ids written, in the batch's transaction.
            webhook_records_changed(
                entity=self.descriptor.entity,
                model=self.compiled.model,
                key_field=self.compiled.key_columns[0].model_field.name,
                keys=[k.replace(KEY_SEP, "/") for k in result.applied_keys],
                since=self._batch_since,
                connection=self.connection,
                source={"source": "file", "file": f.name, "job": self.job_id},
                subscriptions=self._subscriptions,
            )

    @property
    def _resolves_later(self) -> bool:
        """Tell whether open sync errors are resolved in the file's last round trip (what the job believes of them
        may be up to 2 s old): a file of a job, imported in one transaction, from a connection."""
        return self._writes is not None and self.shared is not None and self.connection is not None

    def _resolved_later(self, count: int) -> None:
        if count and self.shared is not None:  # errors were open after all: the next file reads the log again
            self.shared.open_sync_errors_forget(connection=self.connection, entity=self.descriptor.entity)

    @property
    def _subscriptions(self) -> list | None:
        """Return the job's enabled webhook subscriptions, read once per job (None: look them up each time)."""
        return self.shared.subscriptions if self.shared is not None else None

    def _refresh_statistics(self) -> None:
        """ANALYZE the tables this file is growing once they have doubled (PostgreSQL).

        A bulk load into a table whose statistics say it is (nearly) empty makes the planner pick
        nested loops over whole tables for the joins with the staged batch: quadratic time. Doubling
        steps keep the cost to a few ANALYZE runs per file.
        """
        if not is_postgres() or self._grown < max(settings.IMPEX_ANALYZE_MIN_ROWS, 2 * self._analyzed_rows):
            return
        self._analyze(self.pipeline.tables)
        self._analyzed_rows = self._grown

    @staticmethod
    def _analyze(tables: list[str]) -> None:
        if not is_postgres():
            return
        # Row counts are what the planner lacks, not fine distributions: a small sample is enough.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_statistics_target TO 10")
            for table in tables:
                cursor.execute(f"ANALYZE {qn(table)}")

    # -- the end (whoever applied the last chunk, or the runner) --------------------------------

    def finish(self) -> bool:
        """Finish the file once, when every chunk is done: held-back rows, retirement, ledger, totals.

        The file's row lock makes it once: a second call (another worker, a redelivered task) finds the
        file imported and does nothing.
        """
        f = self.file
        if self.chunks_left():
            return False
        if self.full and f.rows_total >= settings.IMPEX_ANALYZE_MIN_ROWS:
            # The chunks wrote the keys since the last ANALYZE: the retirement's join needs their count (run before
            # the file's transaction, which would hold ANALYZE's lock on the ledger until it commits).
            self._analyze(["impex_filekey"])
        with transaction.atomic():
            guard_statements()
            locked = ImportFile.objects.select_for_update().get(pk=f.pk)
            if locked.status != FileStatus.RUNNING or self.chunks_left():
                return False
            f.status = locked.status
            sums = ImportChunk.objects.filter(file_id=f.pk).aggregate(**{name: Sum(name) for name in CHUNK_COUNTS})
            self._finish_locked({name: value or 0 for name, value in sums.items()})
        return True

    def _finish_locked(self, done: dict[str, int], *, writes: WriteBatch | None = None) -> None:
        """Finish the locked running file whose chunks did done (counts by name), inside the caller's transaction.

        writes: the caller's batch, where the writes whose outcome nothing here reads go (sent before it commits).
        """
        f = self.file
        extra = self._run_deferred()
        if self.full:
            extra.retired += self._retire()
        spec = self.compiled.spec
        if spec.file_finish is not None:
            spec.file_finish(f)
        if spec.after_file is not None:
            spec.after_file()
        counts = {name: value + getattr(extra, name) for name, value in done.items()}
        counts["retired"] = extra.retired
        now = timezone.now()
        if self.connection is not None:
            if not self.dry_run:
                # One statement: this name's ledger entry, new or (a file imported again after a purge) renewed.
                with writes_into(writes) as batch:
                    batch.insert(
                        ImportedFileName,
                        [
                            ImportedFileName(
                                connection=self.connection,
                                name=f.name,
                                content_hash=f.content_hash,
                                file=f,
                                imported_at=now,
                            )
                        ],
                        unique_fields=["connection", "name"],
                        update_fields=["content_hash", "file", "imported_at"],
                    )
            # A dry run advances its sandbox's copy (services/dryrun.py), so that its next file gets in.
            self._advance_sequence(writes)
            self._advance_timestamp()
            # A full sync is done when every FULL file of the entity in the job is imported, whoever did which;
            # the log's lock makes two workers finishing two of its files see each other's finish.
            # (A partial sync only stamps the log: its UPDATE is lock enough.)
            if self.full:
                sync_logs().lock(connection=self.connection, entity=self.descriptor.entity)
            full_done = self.full and not self._full_sync_siblings().exclude(status__in=FULL_SYNC_DONE).exists()
            if not self.full or full_done:
                sync_logs().finish(
                    connection=self.connection, entity=self.descriptor.entity, full=self.full, writes=writes
                )
        if self.full:
            FileKey.objects.filter(file_id=f.pk).delete()
        if self._held is None:  # a file imported in one transaction wrote no repeated records
            FileDuplicate.objects.filter(file_id=f.pk).delete()
        note = (
            f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged, "
            f"{counts['retired']} retired, {counts['failed']} failed"
        )
        message = ""
        if self.dry_run:
            note, message = f"dry run: would be {note}", "dry run: nothing was written"
        else:
            webhook_emit(
                WebhookEvent.FILE_IMPORTED,
                data={
                    "file": f.name,
                    "descriptor": self.descriptor.code,
                    "entity": self.descriptor.entity,
                    "job": self.job_id,
                    "mode": f.mode,
                    **counts,
                },
                connection=self.connection,
                subscriptions=self._subscriptions,
            )
        file_transition(
            f,
            new=FileStatus.IMPORTED,
            job_id=self.job_id,
            worker=self.worker,
            message=message,
            note=note,
            finished_at=now,
            writes=writes,
            **counts,
        )

    def _full_sync_siblings(self):
        """Return the other FULL files of this file's entity and connection in its job (one full sync)."""
        return (
            ImportFile.objects.filter(
                job_id=self.file.job_id,
                connection=self.connection,
                descriptor__entity=self.descriptor.entity,
                mode=Mode.FULL,
                kind=FileKind.DATA,
            )
            .exclude(pk=self.file.pk)
            .exclude(job__dry_run=True)
        )

    def _advance_sequence(self, writes: WriteBatch | None = None) -> None:
        """Record the file's Kore sequence as applied, and expect the next one (inside the finish).

        Two UPDATEs, in the caller's batch or in one round trip of their own.
        """
        seq = self.file.sequence
        if seq is None:
            return

        def moved_on(count: int) -> None:
            if count:
                return
            # Not behind, or (a connection never held) no state yet.
            state, _ = ConnectionState.objects.select_for_update().get_or_create(connection=self.connection)
            if state.last_applied_sequence is None or state.last_applied_sequence < seq:
                ConnectionState.objects.filter(pk=state.pk).update(last_applied_sequence=seq)

        # Written by hand: the ORM spends more building these than the database running them.
        with writes_into(writes) as batch:
            batch.raw(
                f"UPDATE {qn(ConnectionState._meta.db_table)} SET {qn('last_applied_sequence')} = %s "
                f"WHERE {qn('connection_id')} = %s "
                f"AND ({qn('last_applied_sequence')} IS NULL OR {qn('last_applied_sequence')} < %s)",
                [seq, self.connection.pk, seq],
                then=moved_on,
            )
            batch.raw(
                f"UPDATE {qn(Connection._meta.db_table)} SET {qn('next_expected_sequence')} = %s "
                f"WHERE {qn('id')} = %s "
                f"AND ({qn('next_expected_sequence')} IS NULL OR {qn('next_expected_sequence')} <= %s)",
                [seq + 1, self.connection.pk, seq],
            )

    def _advance_timestamp(self) -> None:
        """Record the file's BSPK timestamp as the newest applied of its TYPE (inside the finish)."""
        stamp = bspk_timestamp_of(self.file)
        if stamp is None:
            return
        state, _ = ConnectionState.objects.select_for_update().get_or_create(connection=self.connection)
        applied = dict(state.last_applied_timestamps or {})
        type_code = self.descriptor.code
        if applied.get(type_code, "") < stamp:
            applied[type_code] = stamp
            ConnectionState.objects.filter(pk=state.pk).update(last_applied_timestamps=applied)

    def _run_deferred(self) -> Totals:
        """Retry held-back rows until no more go in, then refuse the rest; return what they did."""
        totals = Totals()
        previous = None
        final = False
        while True:
            pending = self._take_held()
            if not pending:
                return totals
            if previous is not None and len(pending) >= previous:
                final = True
            previous = len(pending)
            for start in range(0, len(pending), self.batch_size):
                records = pending[start : start + self.batch_size]
                self._batch_since = timezone.now()
                result = self.pipeline.apply(records, final=final, collect_applied=self.open_sync_errors)
                self._record(result)
                totals.add(result.totals)
            if final:
                return totals

    def _take_held(self) -> list[Record]:
        """Take the rows held back so far, in file order (from memory, or from DeferredRow)."""
        if self._held is not None:
            held = sorted(self._held, key=lambda r: r.index)
            self._held = []
            return [Record(index=r.index, row=r.row, values=list(r.values), error=None) for r in held]
        rows = list(DeferredRow.objects.filter(file_id=self.file.pk).order_by("index"))
        if rows:
            DeferredRow.objects.filter(pk__in=[d.pk for d in rows]).delete()
        return [Record(index=d.index, row=d.row, values=list(d.values), error=None) for d in rows]

    def _retire(self) -> int:
        """Retire the connection's records of this entity that the FULL file did not have; return how many."""
        spec = self.compiled.spec
        model = self.compiled.model
        table = qn(model._meta.db_table)
        where, params = self._retire_where()
        with connection.cursor() as cursor:
            if spec.retire_delete:
                cursor.execute(f"DELETE FROM {table} WHERE {where}", params)
                return cursor.rowcount
            field = model._meta.get_field(spec.retire)
            value = db_param(field, spec.retire_value)
            now = db_param(model._meta.get_field("updated_at"), timezone.now())
            cursor.execute(
                f"UPDATE {table} SET {qn(field.column)} = %s, updated_at = %s "
                f"WHERE {distinct(qn(field.column), '%s')} AND {where}",
                [value, now, value, *params],
            )
            return cursor.rowcount

    def _retire_where(self) -> tuple[str, list]:
        """Build the SQL condition of the records a FULL file retires (those of the connection it lacks)."""
        spec = self.compiled.spec
        model = self.compiled.model
        table = qn(model._meta.db_table)
        key_expr, params = self._key_expression(model, table, spec.key_fields)
        key_expr = f"substr({key_expr}, 1, 400)"  # as the ledger keeps it (FileKey.key)
        if is_postgres():  # a hash anti-join over the file's keys
            kept = f"EXISTS (SELECT 1 FROM impex_filekey k WHERE k.file_id = %s AND k.key = {key_expr})"
            params = [self.file.pk, *params]
        else:  # SQLite builds an index of the file's keys once for IN, where a correlated EXISTS scans them per record
            # (coalesce: a record whose key is NULL is retired, as NOT EXISTS retires it on PostgreSQL)
            kept = f"coalesce(({key_expr}) IN (SELECT k.key FROM impex_filekey k WHERE k.file_id = %s), 0)"
            params = [*params, self.file.pk]
        where = f"connection_id = %s AND NOT {kept}"
        params = [self._conn_id, *params]
        if spec.retire_within:
            scope, scope_params = self._scope_sql(model, spec.retire_within)
            where = f"{scope} AND {where}"
            params = [*scope_params, *params]
        return where, params

    def retire_preview(self, *, limit: int) -> list[str]:
        """Return the first keys (by key) of the records the FULL file would retire, once it has started."""
        spec = self.compiled.spec
        model = self.compiled.model
        table = qn(model._meta.db_table)
        key_expr, key_params = self._key_expression(model, table, spec.key_fields)
        where, params = self._retire_where()
        if not spec.retire_delete:
            field = model._meta.get_field(spec.retire)
            value = db_param(field, spec.retire_value)
            where = f"{distinct(qn(field.column), '%s')} AND {where}"
            params = [value, *params]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {key_expr} AS k FROM {table} WHERE {where} ORDER BY k LIMIT {int(limit)}",
                [*key_params, *params],
            )
            return [r[0] for r in cursor.fetchall()]

    @property
    def _conn_id(self):
        return self.connection.pk if self.connection else None

    def _key_expression(self, model, table: str, names) -> tuple[str, list]:
        """Build the SQL that computes a stored record's file key (or its leading parts) as the file wrote it."""
        parts = []
        for name in names:
            f = model._meta.get_field(name)
            if f.is_relation:
                rel = f.related_model
                nat = rel._meta.get_field(natural_key_of(rel)).column
                parts.append(
                    f"(SELECT r.{qn(nat)} FROM {qn(rel._meta.db_table)} r "
                    f"WHERE r.{qn(rel._meta.pk.column)} = {table}.{qn(f.column)})"
                )
            elif f.get_internal_type() in ("IntegerField", "BigIntegerField", "PositiveIntegerField"):
                parts.append(f"CAST({table}.{qn(f.column)} AS TEXT)")
            else:
                parts.append(f"{table}.{qn(f.column)}")
        return " || %s || ".join(parts), [KEY_SEP] * (len(parts) - 1)

    def _scope_sql(self, model, names: tuple[str, ...]) -> tuple[str, list]:
        """Limit retirement to records whose leading key field (a reference) the file names in some key."""
        (name,) = names
        f = model._meta.get_field(name)
        rel = f.related_model
        nat = qn(rel._meta.get_field(natural_key_of(rel)).column)
        return (
            f"{qn(f.column)} IN (SELECT r.{qn(rel._meta.pk.column)} FROM {qn(rel._meta.db_table)} r "
            f"WHERE EXISTS (SELECT 1 FROM impex_filekey k WHERE k.file_id = %s "
            f"AND substr(k.key, 1, length(r.{nat}) + 1) = r.{nat} || %s))",
            [self.file.pk, KEY_SEP],
        )
