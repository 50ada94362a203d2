"""Write a file's refused rows back in the file's own layout, with an `errors` column, for the sender to fix."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

from django.utils import timezone

from impex import naming
from impex.choices import ColumnType, Convention, FileStatus
from impex.exceptions import FileNameError, ImpexError
from impex.formats.readers import iter_raw_records
from impex.formats.writers import encoded_pieces, file_pieces, neutralise_cell
from impex.models import ConnectionState, ImportFile, RowError
from impex.services.descriptors import ERRORS_COLUMN
from impex.services.imports import layout_of
from impex.storage import file_exists, local_copy, resolve_path

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
        # Not behind the newest file of its TYPE applied since (SPEC section 4), even one stamped in the future.
        applied = ConnectionState.objects.filter(connection=conn).values_list("last_applied_timestamps", flat=True)
        newest = (applied.first() or {}).get(code) if conn else None
        if newest:
            stamp = max(stamp, datetime.strptime(newest, "%Y%m%d%H%M") + timedelta(minutes=1))
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


def rejected_rows_download(*, import_file: ImportFile) -> Iterator[bytes]:
    """Return the file's refused rows as a stream of bytes, each row with its messages in an `errors` column.

    The rows are read from the kept copy of the file, in its own format, delimiter and encoding, so that the
    sender can fix them and send the file again as it is (the `errors` column is read past on import). Text
    cells that a spreadsheet would run as formulas are neutralised: the file is downloaded in a browser.
    Raises NoRejectedRows at once, before any byte, when there is nothing to give back.
    """
    if not rejected_rows_available(import_file):
        raise NoRejectedRows(f"{import_file.name} has no refused rows to download.")
    if not file_exists(*resolve_path(import_file.path)):
        raise FileNotFoundError(import_file.path)
    layout = layout_of(import_file.descriptor)
    return encoded_pieces(
        _rejected_pieces(import_file, layout=layout), encoding=layout.python_encoding.replace("-sig", "")
    )


def _rejected_pieces(import_file: ImportFile, *, layout) -> Iterator[str]:
    """Yield the text of the rejected-rows file, reading the kept copy and the row errors side by side."""
    numeric = {c.name for c in import_file.descriptor.columns.all() if c.type in _NUMERIC}
    errors = (
        RowError.objects.filter(file=import_file, row__isnull=False)
        .order_by("row", "id")
        .values_list("row", "column", "message")
    )
    header = list(import_file.header) or list(layout.columns)
    columns = header if ERRORS_COLUMN in header else [*header, ERRORS_COLUMN]
    with local_copy(*resolve_path(import_file.path)) as path:
        refused = _refused(
            iter_raw_records(path, layout=layout), groupby(errors.iterator(chunk_size=2000), key=lambda e: e[0])
        )
        if layout.format == "xml":
            rows = (
                [values.get(c, "") if c != ERRORS_COLUMN else message for c in columns] for values, message in refused
            )
        else:
            rows = _with_errors(refused, header=header, numeric=numeric)
        neutralise = layout.format == "xml"  # CSV rows are neutralised cell by cell above (they may be ragged)
        yield from file_pieces(
            layout=layout, columns=columns, rows=rows, escape_formulae=neutralise, numeric_columns=numeric, ragged=True
        )


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


def _with_errors(refused, *, header: list[str], numeric: set[str]) -> Iterator[list[str]]:
    """Yield each refused CSV or TSV row, neutralised, with its messages in the errors cell; a row with the wrong
    number of cells keeps them as sent, the messages after them."""
    errors_at = header.index(ERRORS_COLUMN) if ERRORS_COLUMN in header else None
    is_numeric = [name in numeric for name in header]
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
        yield cells
