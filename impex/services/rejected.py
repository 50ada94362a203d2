"""Write a file's refused rows back in the file's own layout, with an `errors` column, for the sender to fix."""

import csv
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import groupby
from typing import IO
from zoneinfo import ZoneInfo

from django.utils import timezone

from impex import naming
from impex.choices import ColumnType, Convention, FileStatus
from impex.exceptions import FileNameError, ImpexError
from impex.formats.readers import iter_raw_records
from impex.formats.writers import neutralise_cell, write_rows
from impex.models import ConnectionState, ImportFile, RowError
from impex.services.descriptors import ERRORS_COLUMN
from impex.services.imports import layout_of
from impex.storage import hub_storage, local_copy

_NUMERIC = (ColumnType.INTEGER, ColumnType.DECIMAL)


class NoRejectedRows(ImpexError):
    """The file has no refused rows to give back, or its copy is no longer kept."""


def rejected_rows_available(import_file: ImportFile) -> bool:
    """Tell whether a rejected-rows file can be made for this file (it has refused rows and a kept copy)."""
    return bool(
        import_file.failed
        and import_file.path
        and import_file.descriptor_id
        and import_file.status in (FileStatus.IMPORTED, FileStatus.RUNNING)
    )


def rejected_rows_name(import_file: ImportFile, *, now: datetime | None = None) -> str:
    """Name the rejected-rows file so that it imports as a new file of its connection (NET for Kore)."""
    now = now or timezone.now()
    conn = import_file.connection
    code = import_file.descriptor.code
    try:
        parsed = naming.parse_file_name(
            import_file.name, convention=conn.convention if conn else "", known_types=[code]
        )
    except FileNameError:
        parsed = None
    if parsed is not None and parsed.convention == Convention.BSPK:
        zone = ZoneInfo(conn.timezone or "UTC") if conn else ZoneInfo("UTC")
        stamp = max(
            now.astimezone(zone).replace(tzinfo=None), parsed.made_at.replace(tzinfo=None) + timedelta(minutes=1)
        )
        return f"{code}_{parsed.version}_{parsed.company}_{stamp:%Y%m%d%H%M}.csv"
    if parsed is not None and parsed.convention == Convention.KORE:
        applied = (
            ConnectionState.objects.filter(connection=conn).values_list("last_applied_sequence", flat=True).first()
        )
        sequence = max(applied or 0, parsed.sequence or 0) + 1
        integration = parsed.integration or (conn.integration_id if conn else "")
        middle = f"_{integration}" if integration else ""
        # NET even when the file was FULL: a full refresh of its bad rows alone would retire everything else.
        return f"{parsed.source}_{sequence:07d}{middle}_{code}.NET"
    stem, dot, extension = import_file.name.rpartition(".")
    return f"{stem}-rejected-rows.{extension}" if dot else f"{import_file.name}-rejected-rows"


def rejected_rows_write(*, import_file: ImportFile) -> tuple[IO[bytes], int]:
    """Write the file's refused rows, each with its messages in an `errors` column, to a temporary file.

    The rows are read from the kept copy of the file, in its own format, delimiter and encoding, so that the
    sender can fix them and send the file again as it is (the `errors` column is read past on import). Text
    cells that a spreadsheet would run as formulas are neutralised: the file is downloaded in a browser.
    Returns the open temporary file (deleted when closed), positioned at its start, and the number of rows.
    """
    if not rejected_rows_available(import_file):
        raise NoRejectedRows(f"{import_file.name} has no refused rows to download.")
    descriptor = import_file.descriptor
    layout = layout_of(descriptor)
    numeric = {c.name for c in descriptor.columns.all() if c.type in _NUMERIC}
    errors = (
        RowError.objects.filter(file=import_file, row__isnull=False)
        .order_by("row", "id")
        .values_list("row", "column", "message")
    )
    by_row = groupby(errors.iterator(chunk_size=2000), key=lambda e: e[0])
    out = tempfile.TemporaryFile()
    with local_copy(hub_storage(), import_file.path) as path:
        header = list(import_file.header) or list(layout.columns)
        columns = header if ERRORS_COLUMN in header else [*header, ERRORS_COLUMN]
        refused = _refused(iter_raw_records(path, layout=layout), by_row)
        text = _TextOut(out, encoding=layout.python_encoding.replace("-sig", ""))
        if layout.format == "xml":
            rows = (
                [values.get(c, "") if c != ERRORS_COLUMN else message for c in columns] for values, message in refused
            )
            count = write_rows(
                text, layout=layout, columns=columns, rows=rows, escape_formulae=True, numeric_columns=numeric
            )
        else:
            count = _write_csv(text, layout=layout, header=header, columns=columns, refused=refused, numeric=numeric)
    out.seek(0)
    return out, count


def _refused(records: Iterator, by_row: Iterator) -> Iterator[tuple[list[str] | dict[str, str], str]]:
    """Pair each refused row of the file with its messages (both come in row order)."""
    records = iter(records)
    current = next(records, None)
    for row, group in by_row:
        message = "; ".join(f"{column}: {text}" if column else text for _row, column, text in group)
        while current is not None and current[0] < row:
            current = next(records, None)
        if current is not None and current[0] == row:
            yield current[1], message


def _write_csv(text, *, layout, header: list[str], columns: list[str], refused, numeric: set[str]) -> int:
    """Write a CSV or TSV file of the refused rows; a row with the wrong number of cells keeps them as sent."""
    writer = csv.writer(text, delimiter=layout.csv_delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    quoting = csv.writer(text, delimiter=layout.csv_delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n")
    if layout.has_header:
        writer.writerow(columns)
    errors_at = header.index(ERRORS_COLUMN) if ERRORS_COLUMN in header else None
    is_numeric = [name in numeric for name in header]
    count = 0
    for cells, message in refused:
        cells = [
            neutralise_cell(value, numeric=is_numeric[n] if n < len(is_numeric) else False)
            for n, value in enumerate(cells)
        ]
        message = neutralise_cell(message)
        if errors_at is not None and len(cells) == len(header):
            cells[errors_at] = message
        else:
            cells.append(message)
        (quoting if "\r" in "".join(cells) else writer).writerow(cells)
        count += 1
    return count


class _TextOut:
    """A text stream over a binary file, in the file's own encoding."""

    def __init__(self, raw: IO[bytes], *, encoding: str):
        self.raw = raw
        self.encoding = encoding

    def write(self, text: str) -> int:
        self.raw.write(text.encode(self.encoding, errors="replace"))
        return len(text)
