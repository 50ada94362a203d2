"""Write rows of formatted cells as CSV, TSV or XML, streaming."""

import codecs
import csv
import re
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from impex.formats.readers import Layout

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_XML_NAME = re.compile(r"[^\W\d][\w.\-]*")
# XML 1.0 cannot carry these characters at all, not even as character references.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


@dataclass(frozen=True)
class Unwritable:
    """A row the file's format cannot carry: its position among the rows, its cells, and each cell at fault."""

    number: int
    cells: Sequence[str]
    faults: list[tuple[str, str]]  # (column, the first character of its cell that cannot be written)


def neutralise_formula(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with a single quote."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def neutralise_cell(value: str, *, numeric: bool = False) -> str:
    """Neutralise a cell that a spreadsheet would run as a formula; a number in a numeric column stays as it is."""
    return value if numeric and _NUMBER.fullmatch(value) else neutralise_formula(value)


def write_rows(
    stream: TextIO,
    *,
    layout: Layout,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    escape_formulae: bool = False,
    numeric_columns: Collection[str] = (),
    left_out: Callable[[Unwritable], None] | None = None,
) -> int:
    """Write the header (if the layout has one) and the rows to stream; return the number of rows written.

    A row the format cannot carry is handed to left_out and not written; without left_out it raises ValueError.
    """
    pieces = file_pieces(
        layout=layout,
        columns=columns,
        rows=rows,
        escape_formulae=escape_formulae,
        numeric_columns=numeric_columns,
        left_out=left_out,
    )
    return write_pieces(stream, pieces)


def write_pieces(stream: TextIO, pieces: Generator[str, None, int]) -> int:
    """Write every piece of a file to stream; return what the pieces' generator returns (the rows written)."""
    write = stream.write
    while True:
        try:
            write(next(pieces))
        except StopIteration as done:
            return done.value


def file_pieces(
    *,
    layout: Layout,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    escape_formulae: bool = False,
    numeric_columns: Collection[str] = (),
    left_out: Callable[[Unwritable], None] | None = None,
    ragged: bool = False,
) -> Generator[str, None, int]:
    """Yield the file's text a row at a time (the header first); return the number of rows written.

    The same text as write_rows writes, for a caller that hands the file on while it is made (a download).
    ragged (CSV and TSV): a row with more or fewer cells than columns is written as it is instead of refused.
    """
    if escape_formulae:
        rows = _neutralised(rows, columns=columns, numeric_columns=numeric_columns)
    if layout.format == "xml":
        return (yield from _xml_pieces(layout=layout, columns=columns, rows=rows, left_out=left_out))
    return (yield from _csv_pieces(layout=layout, columns=columns, rows=rows, ragged=ragged))


def encoded_pieces(pieces: Iterable[str], *, encoding: str, chunk_chars: int = 64 * 1024) -> Iterator[bytes]:
    """Yield a file's text pieces as bytes in the given encoding, gathered into chunks of about chunk_chars."""
    encoder = codecs.getincrementalencoder(encoding)()
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= chunk_chars:
            yield encoder.encode("".join(buffer))
            buffer, size = [], 0
    yield encoder.encode("".join(buffer), final=True)


class _Echo:
    """A stream whose write returns the text, so that csv.writer's writerow hands back the line it made."""

    def write(self, text: str) -> str:
        return text


def _neutralised(
    rows: Iterable[Sequence[str]], *, columns: Sequence[str], numeric_columns: Collection[str]
) -> Iterable[list[str]]:
    """Yield rows whose text cells cannot run as formulas; numbers in numeric columns stay as they are."""
    numeric = [name in numeric_columns for name in columns]
    for row in rows:
        yield [neutralise_cell(value, numeric=is_numeric) for value, is_numeric in zip(row, numeric, strict=True)]


def _csv_pieces(
    *, layout: Layout, columns: Sequence[str], rows: Iterable[Sequence[str]], ragged: bool = False
) -> Generator[str, None, int]:
    """Yield a CSV or TSV file line by line; the text is meant for a stream opened with newline=""."""
    delimiter = layout.csv_delimiter
    echo = _Echo()
    line = csv.writer(echo, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow
    # QUOTE_MINIMAL leaves a lone "\r" unquoted, which a reader takes for a line break; quote such rows whole.
    quoted_line = csv.writer(echo, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow
    width = len(columns)
    if layout.has_header:
        yield line(columns)
    count = 0
    for row in rows:
        count += 1
        if len(row) != width and not ragged:
            raise ValueError(f"row {count} has {len(row)} cells for {width} columns")
        yield quoted_line(row) if "\r" in "".join(row) else line(row)
    return count


def _xml_pieces(
    *,
    layout: Layout,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    left_out: Callable[[Unwritable], None] | None,
) -> Generator[str, None, int]:
    """Yield <root><record><column>text</column>...</record>...</root> one record at a time."""
    for name in (layout.xml_root, layout.xml_record, *columns):
        if not _XML_NAME.fullmatch(name):
            raise ValueError(f"{name!r} cannot be an XML element name")
    encoding = "UTF-8" if layout.is_utf8 else layout.encoding
    yield f'<?xml version="1.0" encoding="{encoding}"?>\n<{layout.xml_root}>\n'
    opening = f"  <{layout.xml_record}>"
    closing = f"</{layout.xml_record}>\n"
    tags = [(f"<{name}>", f"</{name}>", f"<{name}/>") for name in columns]
    width = len(columns)
    number = written = 0
    for row in rows:
        number += 1
        if len(row) != width:
            raise ValueError(f"row {number} has {len(row)} cells for {width} columns")
        cells = "".join(
            f"{start}{value.translate(_XML_ESCAPES)}{end}" if value else empty
            for (start, end, empty), value in zip(tags, row, strict=True)
        )
        if _XML_FORBIDDEN.search(cells):
            faults = [
                (name, found.group())
                for name, value in zip(columns, row, strict=True)
                if (found := _XML_FORBIDDEN.search(value))
            ]
            if left_out is None:
                column, char = faults[0]
                raise ValueError(
                    f"row {number}, column {column}: the character U+{ord(char):04X} cannot be written in XML"
                )
            left_out(Unwritable(number=number, cells=row, faults=faults))
            continue
        yield f"{opening}{cells}{closing}"
        written += 1
    yield f"</{layout.xml_root}>\n"
    return written
