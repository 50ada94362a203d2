"""Export an entity with a descriptor: exactly the columns the descriptor reads, so the file imports back."""

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import chain
from pathlib import Path

from django.db.models import QuerySet
from django.utils import timezone

from impex.choices import ColumnType, FileFormat
from impex.entities import entity_spec, natural_key_of
from impex.exceptions import ConfigurationError
from impex.formats.writers import Unwritable, encoded_pieces, file_pieces, write_pieces
from impex.models import DataDescriptor, DataGroup
from impex.services.columns import character_name, format_value, value_styles, visible_text
from impex.services.imports import layout_of
from impex.storage import hub_storage, location_of, save_file, temporary_folder

EXTENSIONS = {FileFormat.CSV: "csv", FileFormat.TSV: "tsv", FileFormat.XML: "xml"}
CONTENT_TYPES = {
    FileFormat.CSV: "text/csv",
    FileFormat.TSV: "text/tab-separated-values",
    FileFormat.XML: "application/xml",
}
# Records are read this many at a time, and a download is handed on in pieces of about this many characters:
# an export of millions of records never holds more than a batch in memory.
READ_BATCH = 2000
DOWNLOAD_CHUNK_CHARS = 64 * 1024


@dataclass(frozen=True)
class LeftOut:
    """A record an export could not write: its key, the column at fault, the value (shown safely) and why."""

    row: str
    column: str
    value: str
    message: str


def export_descriptor_for(code: str) -> DataDescriptor:
    """Find the descriptor named by code: a descriptor code or an export group's code (its one descriptor)."""
    descriptor = DataDescriptor.objects.filter(code=code).first()
    if descriptor is not None:
        return descriptor
    group = DataGroup.objects.filter(code=code).first()
    if group is None:
        raise ConfigurationError(f"no descriptor or export group is called '{code}'")
    descriptors = list(group.descriptors.all()[:2])
    if len(descriptors) != 1:
        raise ConfigurationError(
            f"export group '{code}' must have exactly one descriptor (it has {group.descriptors.count()})"
        )
    return descriptors[0]


def column_lookup(model, column) -> str:
    """Return the ORM lookup path that reads a column's value."""
    if "." in column.field:
        parent, name = column.field.split(".", 1)
        return f"{parent}__{name}"
    if column.type == ColumnType.REFERENCE:
        related = model._meta.get_field(column.field).related_model
        return f"{column.field}__{natural_key_of(related)}"
    return column.field


def _row_former(descriptor: DataDescriptor):
    """Return the descriptor's model, header, the lookups its columns read, and what forms a row of their values."""
    model = entity_spec(descriptor.entity).model
    columns = list(descriptor.columns.all())
    # An ignored column is part of the layout but fills no field: it is written empty.
    read = [c for c in columns if not c.ignored]
    lookups = [column_lookup(model, c) for c in read]
    kinds = [c.type for c in read]
    slots = [i for i, c in enumerate(columns) if not c.ignored]
    width = len(columns)
    styles = value_styles(descriptor)

    def formatted(values):
        return [format_value(v, kind=k, **styles) for v, k in zip(values, kinds, strict=True)]

    def with_ignored(values):
        row = [""] * width
        for slot, text in zip(slots, formatted(values), strict=True):
            row[slot] = text
        return row

    return model, [c.name for c in columns], lookups, formatted if len(read) == width else with_ignored


def export_records(
    *, descriptor: DataDescriptor, since: datetime | None = None, records: QuerySet | None = None
) -> QuerySet:
    """Return the records an export writes, by key: the entity's (of records only, if given) changed since, if given."""
    qs = entity_spec(descriptor.entity).model.objects.order_by("pk")
    if records is not None:
        # By key, not the caller's queryset itself: its annotations and joins would change what values_list reads.
        qs = qs.filter(pk__in=records.values("pk"))
    if since is not None:
        qs = qs.filter(updated_at__gte=since)
    return qs


def export_rows(
    *, descriptor: DataDescriptor, since: datetime | None = None, records: QuerySet | None = None
) -> tuple[list[str], Iterator[list[str]]]:
    """Return the header and a stream of formatted rows of the descriptor's entity (of records only, if given)."""
    _, header, lookups, form = _row_former(descriptor)
    qs = export_records(descriptor=descriptor, since=since, records=records)

    def rows():
        for values in qs.values_list(*lookups).iterator(chunk_size=READ_BATCH):
            yield form(values)

    return header, rows()


def export_rows_by(*, descriptor: DataDescriptor, records: QuerySet, by: str) -> tuple[list[str], dict]:
    """Return the header and the formatted rows of records grouped by a field (e.g. by order), in one query."""
    model, header, lookups, form = _row_former(descriptor)
    grouped: dict = {}
    qs = model.objects.filter(pk__in=records.values("pk")).order_by(by, "pk")
    for values in qs.values_list(by, *lookups).iterator(chunk_size=READ_BATCH):
        grouped.setdefault(values[0], []).append(form(values[1:]))
    return header, grouped


def export_pieces(
    *,
    descriptor: DataDescriptor,
    fmt: str | None = None,
    since=None,
    records: QuerySet | None = None,
    escape_formulae: bool = False,
    left_out: list[LeftOut] | None = None,
    rows: tuple[list[str], Iterable[list[str]]] | None = None,
) -> Generator[str, None, int]:
    """Yield the export's text a row at a time; return the number of rows written.

    With left_out, records the format cannot carry (a control character in XML) are reported there and the
    rest is written; without it they raise ValueError. rows: the header and rows read already (export_rows_by).
    """
    layout = layout_of(descriptor)
    if fmt:
        layout = replace(
            layout,
            format=fmt,
            delimiter="\t" if fmt == FileFormat.TSV else (layout.delimiter if layout.delimiter != "\t" else ","),
        )
    header, rows = rows or export_rows(descriptor=descriptor, since=since, records=records)
    numeric = [c.name for c in descriptor.columns.all() if c.type in (ColumnType.INTEGER, ColumnType.DECIMAL)]
    report = None
    if left_out is not None:
        key_idx = [i for i, c in enumerate(descriptor.columns.all()) if c.is_key]

        def report(row: Unwritable) -> None:
            key = visible_text("/".join(row.cells[i] for i in key_idx))
            for column, char in row.faults:
                kind = "control character" if char < " " else "character"
                left_out.append(
                    LeftOut(
                        row=key,
                        column=column,
                        value=visible_text(row.cells[header.index(column)]),
                        message=f"the cell holds the {kind} {character_name(char)}, which XML 1.0 cannot carry: "
                        "the record is left out",
                    )
                )

    return (
        yield from file_pieces(
            layout=layout,
            columns=header,
            rows=rows,
            escape_formulae=escape_formulae,
            numeric_columns=numeric,
            left_out=report,
        )
    )


def export_to_stream(
    stream,
    *,
    descriptor: DataDescriptor,
    fmt: str | None = None,
    since=None,
    escape_formulae: bool = False,
    left_out: list[LeftOut] | None = None,
) -> int:
    """Write the export to a text stream; return the number of rows written.

    With left_out, records the format cannot carry (a control character in XML) are reported there and the
    rest is written; without it they raise ValueError.
    """
    pieces = export_pieces(
        descriptor=descriptor, fmt=fmt, since=since, escape_formulae=escape_formulae, left_out=left_out
    )
    return write_pieces(stream, pieces)


def export_download(
    *,
    descriptor: DataDescriptor,
    fmt: str | None = None,
    since=None,
    records: QuerySet | None = None,
    neutralise: bool = True,
) -> Iterator[bytes]:
    """Yield an export file's bytes in pieces, as it is made, for a download in the browser.

    Text cells a spreadsheet would run as formulas are neutralised (SPEC section 12) unless neutralise is off.
    An XML file leaves out the records it cannot carry and says how many in a closing comment.
    """
    fmt = fmt or descriptor.format
    left_out: list[LeftOut] = []

    def closing_comment():
        # Runs once the rows are written, when left_out holds every record the file could not carry.
        if left_out:
            count = len({e.row for e in left_out})
            yield (
                f"<!-- {count} record{'s' if count > 1 else ''} left out: a cell holds a character that XML 1.0 "
                "cannot carry; export as CSV or TSV to have them -->\n"
            )

    pieces = export_pieces(
        descriptor=descriptor, fmt=fmt, since=since, records=records, escape_formulae=neutralise, left_out=left_out
    )
    yield from encoded_pieces(
        chain(pieces, closing_comment()), encoding=descriptor.encoding or "utf-8", chunk_chars=DOWNLOAD_CHUNK_CHARS
    )


def export_name(*, code: str, fmt: str) -> str:
    """Name an export file after what makes it (a descriptor or an export group) and the time."""
    return f"{code}_{timezone.now():%Y%m%d%H%M%S}.{EXTENSIONS.get(fmt, 'csv')}"


def export_file_name(descriptor: DataDescriptor, *, fmt: str | None = None) -> str:
    """Name an export file after its descriptor and the time."""
    return export_name(code=descriptor.code, fmt=fmt or descriptor.format)


def export_to_path(
    *,
    descriptor: DataDescriptor,
    path: str | Path | None = None,
    fmt: str | None = None,
    since=None,
    left_out: list[LeftOut] | None = None,
) -> tuple[str, int]:
    """Write the export to a file (the hub's outbox by default); return where it is and the rows written.

    The outbox is in the hub's storage (IMPEX_STORAGE: a local folder, S3 or SFTP): the file is written
    locally first and handed over whole, so a reader never sees half of it.
    """
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "w", encoding=descriptor.encoding or "utf-8", newline="") as stream:
            count = export_to_stream(stream, descriptor=descriptor, fmt=fmt, since=since, left_out=left_out)
        tmp.replace(path)
        return str(path), count
    hub = hub_storage()
    with temporary_folder() as folder:
        local = folder / export_file_name(descriptor, fmt=fmt)
        with open(local, "w", encoding=descriptor.encoding or "utf-8", newline="") as stream:
            count = export_to_stream(stream, descriptor=descriptor, fmt=fmt, since=since, left_out=left_out)
        stored = save_file(hub, f"outbox/{local.name}", local)
    return location_of(hub, stored), count
