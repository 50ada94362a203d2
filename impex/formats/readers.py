"""Stream CSV, TSV and XML data files: validate a whole file first, then yield its records."""

import codecs
import csv
import io
import os
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ErrorString as expat_error_string

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser

from impex.exceptions import ConfigurationError, FileRejected

FORMATS = ("csv", "tsv", "xml")
MAX_CELL_CHARS = 10 * 1024 * 1024
MAX_LINE_CHARS = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024

# The limit is process-wide; raising it once lets big cells through while a runaway quoted cell still stops.
csv.field_size_limit(MAX_CELL_CHARS)


@dataclass(frozen=True)
class Layout:
    """How a data file is laid out (from its data descriptor)."""

    format: str
    delimiter: str = ","
    encoding: str = "utf-8"
    has_header: bool = True
    columns: tuple[str, ...] = ()
    xml_root: str = "records"
    xml_record: str = "record"

    def __post_init__(self) -> None:
        """Refuse a layout that cannot read any file."""
        if self.format not in FORMATS:
            raise ConfigurationError(f'unknown file format "{self.format}": expected one of {", ".join(FORMATS)}')
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigurationError(f'unknown encoding "{self.encoding}"') from None
        if self.format == "csv" and len(self.delimiter) != 1:
            raise ConfigurationError(f"the delimiter must be one character, not {self.delimiter!r}")

    @property
    def csv_delimiter(self) -> str:
        """Return the cell delimiter of a CSV or TSV file."""
        return "\t" if self.format == "tsv" else self.delimiter

    @property
    def is_utf8(self) -> bool:
        """Tell whether the layout's encoding is UTF-8."""
        return codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")

    @property
    def python_encoding(self) -> str:
        """Return the codec to decode with (UTF-8 accepts and strips a byte order mark)."""
        return "utf-8-sig" if self.is_utf8 else self.encoding

    @property
    def encoding_label(self) -> str:
        """Return the encoding's name as shown to users."""
        return "UTF-8" if self.is_utf8 else self.encoding


@dataclass
class ScanResult:
    """What scan found in a valid file."""

    header: list[str]
    record_count: int
    # With chunk_rows: the byte offset where record 0, chunk_rows, 2 * chunk_rows... start (CSV and TSV in
    # UTF-8); empty when the format cannot be entered in the middle (XML) or none were asked for.
    offsets: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Record:
    """One data record, or the structural error that makes it unreadable."""

    index: int
    row: int
    values: dict[str, str] | None
    error: str | None
    # A CSV or TSV record refused for its width keeps its cells: a FULL file still reads its key from them.
    cells: list[str] | None = None


def scan(
    path: str | Path,
    *,
    layout: Layout,
    max_bytes: int | None = None,
    on_header: Callable[[list[str]], None] | None = None,
    visit: Callable[[int, list[str] | dict[str, str]], None] | None = None,
    chunk_rows: int | None = None,
) -> ScanResult:
    """Read the whole file once and raise FileRejected for anything that refuses it whole.

    on_header sees a CSV or TSV file's header before any row (it may refuse the file); visit sees every
    well-formed record: its index and its cells (a list in header order, or a dict of an XML record).
    """
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise FileRejected(f"the file is {size:,} bytes, more than the limit of {max_bytes:,} bytes")
    if layout.format == "xml":
        return _scan_xml(path, layout=layout, visit=visit)
    return _scan_csv(path, layout=layout, on_header=on_header, visit=visit, chunk_rows=chunk_rows)


def iter_records(
    path: str | Path,
    *,
    layout: Layout,
    header: list[str],
    start: int = 0,
    stop: int | None = None,
    as_list: bool = False,
    start_byte: int | None = None,
) -> Iterator[Record]:
    """Yield the records with index in [start, stop) of a file that scan() accepted.

    With as_list, values is a list of cells in the order of header (a missing XML element is "")
    instead of a dict: the import engine reads cells by position. start_byte (an offset scan() gave
    for record start) reads from there instead of from the top.
    """
    if layout.format == "xml":
        records = _XmlReader(path, layout=layout).records()
        with closing(records):
            for index, (values, error) in enumerate(records):
                if stop is not None and index >= stop:
                    return
                if index >= start:
                    if as_list and not error:
                        values = [values.get(name, "") for name in header]
                    yield Record(index=index, row=index + 1, values=None if error else values, error=error)
        return
    first_row = 2 if layout.has_header else 1
    width = len(header)
    if start_byte is not None and layout.is_utf8:
        rows = _csv_records_from(path, layout=layout, start_byte=start_byte)
        index = start - 1
    else:
        rows = _csv_records_checked(path, layout=layout)
        index = -1
    with closing(rows):
        for cells in rows:
            index += 1
            if stop is not None and index >= stop:
                return
            if index < start:
                continue
            if len(cells) == width:
                yield Record(
                    index, index + first_row, cells if as_list else dict(zip(header, cells, strict=True)), None
                )
            else:
                error = f"row has {len(cells)} cells, the header has {width}"
                yield Record(index, index + first_row, None, error, cells)


def iter_raw_records(path: str | Path, *, layout: Layout) -> Iterator[tuple[int, list[str] | dict[str, str]]]:
    """Yield each data record of a file scan() accepted as it was sent: its row and its cells, whatever their count.

    CSV and TSV records are lists of cells (a record with too many or too few cells stays so); XML ones dicts.
    """
    if layout.format == "xml":
        records = _XmlReader(path, layout=layout).records()
        with closing(records):
            for index, (values, _error) in enumerate(records):
                yield index + 1, values or {}
        return
    first_row = 2 if layout.has_header else 1
    rows = _csv_records_checked(path, layout=layout)
    with closing(rows):
        for index, cells in enumerate(rows):
            yield index + first_row, cells


def sniff_header(path: str | Path, *, layout: Layout) -> list[str]:
    """Return the column names of the file's first record without reading the rest."""
    if layout.format == "xml":
        reader = _XmlReader(path, layout=layout)
        records = reader.records()
        with closing(records):
            try:
                first = next(records, None)
            except (ParseError, DefusedXmlException) as exc:
                raise _xml_rejection(exc, reader=reader) from None
        return [] if first is None else list(first[0])
    if not layout.has_header:
        return list(layout.columns)
    rows = _csv_rows(path, layout=layout)
    with closing(rows):
        try:
            return _header(rows)
        except UnicodeDecodeError:
            raise _encoding_rejection(path, layout=layout) from None


def _scan_csv(
    path: str | Path,
    *,
    layout: Layout,
    on_header: Callable[[list[str]], None] | None = None,
    visit: Callable[[int, list[str]], None] | None = None,
    chunk_rows: int | None = None,
) -> ScanResult:
    """Validate a CSV or TSV file and count its records (noting where chunks start, if asked)."""
    track = bool(chunk_rows) and layout.is_utf8
    lines = _LineCounter(path, layout=layout) if track else None
    rows = _csv_rows(path, layout=layout, lines=lines)
    offsets: list[int] = []
    count = 0
    with closing(rows):
        try:
            header = _header(rows) if layout.has_header else list(layout.columns)
            if on_header is not None:
                on_header(header)
            if visit is None and not track:
                count = sum(1 for _ in rows)
            else:
                at = lines.position if track else 0
                for cells in rows:
                    if track and count % chunk_rows == 0:
                        offsets.append(at)
                    if visit is not None:
                        visit(count, cells)
                    count += 1
                    if track:
                        at = lines.position
        except UnicodeDecodeError:
            raise _encoding_rejection(path, layout=layout) from None
    if not layout.has_header and count == 0:
        raise FileRejected("the file is empty: at least one record is expected")
    return ScanResult(header=header, record_count=count, offsets=offsets)


def _header(rows: Iterator[list[str]]) -> list[str]:
    """Return the validated header row of a CSV or TSV file."""
    cells = next(rows, None)
    if cells is None:
        raise FileRejected("the file is empty: a header row is expected")
    header = [cell.strip() for cell in cells]
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            raise FileRejected(f"column {position} of the header has no name")
        if name in seen:
            raise FileRejected(f'the header has the column "{name}" twice (columns {seen[name]} and {position})')
        seen[name] = position
    return header


def _csv_rows(path: str | Path, *, layout: Layout, lines: "_LineCounter | None" = None) -> Iterator[list[str]]:
    """Yield the cells of each non-blank row, raising FileRejected for broken quoting or oversized cells."""
    if not layout.has_header and not layout.columns:
        raise ConfigurationError("a layout without a header row needs its column names")
    with open(path, encoding=layout.python_encoding, errors="strict", newline="") as text:
        source = lines.count(_bounded_lines(text)) if lines is not None else _bounded_lines(text)
        reader = csv.reader(source, delimiter=layout.csv_delimiter, strict=True)
        number = 0
        first_line = 1
        try:
            for cells in reader:
                if cells:
                    number += 1
                    yield cells
                first_line = reader.line_num + 1
        except csv.Error as exc:
            raise _csv_rejection(exc, row=number + 1, line=first_line) from None


class _LineCounter:
    """Count the bytes of the lines a CSV reader has taken, so that scan() can say where records start.

    The csv module takes a line only when it needs one, so after it yields a record the count is where
    the next record starts.
    """

    def __init__(self, path: str | Path, *, layout: Layout):
        with open(path, "rb") as raw:
            self.position = len(codecs.BOM_UTF8) if raw.read(3) == codecs.BOM_UTF8 else 0

    def count(self, lines: Iterator[str]) -> Iterator[str]:
        """Pass the lines through, adding up their size in UTF-8."""
        for line in lines:
            self.position += len(line) if line.isascii() else len(line.encode("utf-8"))
            yield line


def _csv_records_from(path: str | Path, *, layout: Layout, start_byte: int) -> Iterator[list[str]]:
    """Yield the cells of each record of a file scan() accepted, from a record's start offset."""
    with open(path, "rb") as raw:
        raw.seek(start_byte)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
        for cells in csv.reader(text, delimiter=layout.csv_delimiter, strict=True):
            if cells:
                yield cells


def _csv_records_checked(path: str | Path, *, layout: Layout) -> Iterator[list[str]]:
    """Yield the cells of each data record of a file scan() accepted, on the fast path (no re-checks)."""
    with open(path, encoding=layout.python_encoding, errors="strict", newline="") as text:
        reader = csv.reader(text, delimiter=layout.csv_delimiter, strict=True)
        if layout.has_header:
            for cells in reader:
                if cells:
                    break
        for cells in reader:
            if cells:
                yield cells


def _bounded_lines(text: TextIO) -> Iterator[str]:
    """Yield physical lines, refusing one so long that reading it would exhaust memory."""
    readline = text.readline
    number = 0
    while line := readline(MAX_LINE_CHARS):
        number += 1
        if len(line) == MAX_LINE_CHARS and line[-1] not in "\r\n":
            raise FileRejected(f"line {number} is longer than {MAX_LINE_CHARS:,} characters")
        yield line


def _csv_rejection(exc: csv.Error, *, row: int, line: int) -> FileRejected:
    """Turn a csv module error into a message that says where the file breaks."""
    message = str(exc)
    where = f"row {row} (line {line})"
    if "unexpected end of data" in message:
        return FileRejected(f"unterminated quote in {where}: a quoted cell runs to the end of the file")
    if "field larger than field limit" in message:
        return FileRejected(f"a cell in {where} is longer than {MAX_CELL_CHARS:,} characters")
    return FileRejected(f"bad quoting in {where}: {message}")


def _encoding_rejection(path: str | Path, *, layout: Layout) -> FileRejected:
    """Say where the file stops being valid in the layout's encoding."""
    label = layout.encoding_label
    position = _decode_error_position(path, encoding=layout.python_encoding)
    if position is None:
        return FileRejected(f"not valid {label}: save the file as {label}")
    offset, line = position
    where = f"byte {offset:,}" if line is None else f"byte {offset:,} (line {line})"
    return FileRejected(f"not valid {label} at {where}: save the file as {label}")


def _decode_error_position(path: str | Path, *, encoding: str) -> tuple[int, int | None] | None:
    """Return the byte offset and line of the first byte that does not decode, or None if all do."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    counts_lines = "\n".encode(encoding).removeprefix(codecs.BOM_UTF8) == b"\n"
    fed = 0
    newlines = 0
    with open(path, "rb") as raw:
        while True:
            chunk = raw.read(CHUNK_BYTES)
            fed += len(chunk)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # The decoder's input is the file's tail (bytes held over from the last chunk, then this chunk).
                offset = fed - len(exc.object) + exc.start
                newlines += chunk[: max(0, offset - (fed - len(chunk)))].count(b"\n")
                return offset, (newlines + 1 if counts_lines else None)
            if not chunk:
                return None
            newlines += chunk.count(b"\n")


def _scan_xml(
    path: str | Path, *, layout: Layout, visit: Callable[[int, dict[str, str]], None] | None = None
) -> ScanResult:
    """Validate an XML file and count its records."""
    if os.path.getsize(path) == 0:
        raise FileRejected(f"the file is empty: an XML document with a <{layout.xml_root}> root is expected")
    reader = _XmlReader(path, layout=layout)
    records = reader.records()
    count = 0
    with closing(records):
        try:
            for values, error in records:
                if visit is not None and error is None:
                    visit(count, values)
                count += 1
        except (ParseError, DefusedXmlException) as exc:
            raise _xml_rejection(exc, reader=reader) from None
    return ScanResult(header=list(reader.columns), record_count=count)


def _xml_rejection(exc: ParseError | DefusedXmlException, *, reader: "_XmlReader") -> FileRejected:
    """Turn a parser error into a message a user can act on."""
    if isinstance(exc, DTDForbidden):
        return FileRejected(
            f"XML entity declarations are not allowed: remove the document type declaration <!DOCTYPE {exc.name}> "
            f"at {reader.where()} (DTDs, entities and external references are refused for safety)"
        )
    if isinstance(exc, DefusedXmlException):
        return FileRejected(f"XML entity declarations are not allowed: {exc} at {reader.where()}")
    if _decode_error_position(reader.path, encoding=reader.layout.python_encoding) is not None:
        return _encoding_rejection(reader.path, layout=reader.layout)
    line, column = exc.position
    return FileRejected(f"unreadable XML: {expat_error_string(exc.code)} (line {line}, column {column + 1})")


class _XmlReader:
    """Parse <root><record><column>text</column>...</record>...</root> as a stream, without building a tree."""

    def __init__(self, path: str | Path, *, layout: Layout) -> None:
        self.path = path
        self.layout = layout
        self.columns: dict[str, None] = {}
        self.depth = 0
        self.count = 0
        self.values: dict[str, str] = {}
        self.error: str | None = None
        self.column = ""
        self.text: list[str] = []
        self.text_size = 0
        self.done: list[tuple[dict[str, str], str | None]] = []
        # The document's declared encoding yields to the descriptor's, as for CSV.
        encoding = "utf-8" if layout.is_utf8 else layout.encoding
        self.parser = DefusedXMLParser(target=self, encoding=encoding, forbid_dtd=True)
        # Calling our handlers straight from expat skips ElementTree's per-element Python layer (half the parse
        # time); defusedxml's DTD, entity and external reference guards stay installed on the same expat parser.
        self.expat = self.parser.parser
        self.expat.StartElementHandler = self.start
        self.expat.EndElementHandler = self.end
        self.expat.CharacterDataHandler = self.data

    def records(self) -> Iterator[tuple[dict[str, str], str | None]]:
        """Yield each record's values and its error (None when it has none)."""
        with open(self.path, "rb") as raw:
            while chunk := raw.read(CHUNK_BYTES):
                self.parser.feed(chunk)
                yield from self.done
                self.done.clear()
            self.parser.close()
            yield from self.done
            self.done.clear()

    def where(self) -> str:
        """Return the parser's current position."""
        return f"line {self.expat.CurrentLineNumber}, column {self.expat.CurrentColumnNumber + 1}"

    def start(self, tag: str, attributes: list[str]) -> None:
        """Check where an element opens."""
        self.depth += 1
        if self.depth == 3:
            self.column = tag
            self.text = []
            self.text_size = 0
            self.columns.setdefault(tag, None)
        elif self.depth == 2:
            if tag != self.layout.xml_record:
                raise FileRejected(
                    f"<{self.layout.xml_root}> may only hold <{self.layout.xml_record}> elements, "
                    f"found <{tag}> ({self.where()})"
                )
            self.count += 1
            self.values = {}
            self.error = None
        elif self.depth == 1:
            if tag != self.layout.xml_root:
                raise FileRejected(f"the root element is <{tag}>, expected <{self.layout.xml_root}> ({self.where()})")
        else:
            raise FileRejected(
                f"record {self.count}: the element <{self.column}> holds the element <{tag}> ({self.where()}); "
                "a column element may only hold text"
            )

    def end(self, tag: str) -> None:
        """Finish a column or a record."""
        if self.depth == 3:
            if tag in self.values and self.error is None:
                self.error = f"the element <{tag}> appears more than once"
            self.values[tag] = "".join(self.text)
        elif self.depth == 2:
            self.done.append((self.values, self.error))
        self.depth -= 1

    def data(self, text: str) -> None:
        """Keep a column's text; refuse text anywhere else."""
        if self.depth == 3:
            self.text.append(text)
            self.text_size += len(text)
            if self.text_size > MAX_CELL_CHARS:
                raise FileRejected(
                    f"record {self.count}: the element <{self.column}> holds more than {MAX_CELL_CHARS:,} characters "
                    f"({self.where()})"
                )
        elif not text.isspace():
            raise FileRejected(f"text {text.strip()[:40]!r} outside a column element ({self.where()})")

    def close(self) -> None:
        """End the document (ElementTree's parser calls this)."""
