"""The file exporter: writes the order and its lines with export descriptors to the outbox, each file whole."""

import re

from impex.exceptions import ConfigurationError
from impex.formats.writers import write_pieces
from impex.models import DataDescriptor, location_errors
from impex.services.exports import EXTENSIONS, export_pieces, export_rows_by
from impex.services.jobs import connection_folder
from impex.storage import folder_at, replace_text, temporary_folder
from orders.choices import ExporterKind as Kind
from orders.exceptions import ExporterFailed
from orders.exporters.base import ExporterKind, Outcome, run_each
from orders.models import Order, OrderLine

HEADER_DESCRIPTOR = "KS_ORDERS"
LINES_DESCRIPTOR = "KS_ORDER_LINES"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def order_file_names(*, exporter, order, ext: str, resend: bool = False) -> tuple[str, str]:
    """Return the names of an order's header and lines files: erp_O-1.csv for the chain's send of an order as first
    made, erp_O-1_v2_cancelled.csv for a re-send or an amended order (its version and state), so that a re-send never
    overwrites what was sent before. The same on every retry of a delivery, so a retry overwrites."""
    stem = f"{exporter.code}_{_UNSAFE.sub('_', order.order_id)[:150]}"
    if resend or order.version > 1:
        stem = f"{stem}_v{order.version}_{order.state}"
    return f"{stem}.{ext}", f"{stem}_lines.{ext}"


def order_destination(*, exporter, order):
    """Return the folder an exporter writes an order to: its destination, the order's connection's outbox, or ours."""
    if exporter.destination:
        return folder_at(exporter.destination, default="orders/outbox")
    if order.connection_id and order.connection is not None:
        return connection_folder(order.connection, "outbox")
    return folder_at("", default="orders/outbox")


def order_destination_shown(*, exporter, order) -> str:
    """Say where an exporter writes an order, for messages (or why it cannot)."""
    try:
        return order_destination(exporter=exporter, order=order).location
    except ConfigurationError as exc:
        return f"(a destination that cannot be used: {exc})"


def _raise(error: Exception):
    raise error


class _Folders:
    """The folders an exporter writes a batch's orders to, each looked up (and confined) once for the batch."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.found: dict = {}

    def of(self, order):
        """Return the order's folder; ExporterFailed if the hub may not use it (impex.locations): nothing written."""
        key = None if self.exporter.destination else order.connection_id
        if key not in self.found:
            try:
                self.found[key] = order_destination(exporter=self.exporter, order=order)
            except ConfigurationError as exc:
                self.found[key] = exc
        folder = self.found[key]
        if isinstance(folder, ConfigurationError):
            raise ExporterFailed(f"the destination cannot be used: {folder}", retry=False) from folder
        return folder


class FileExporter(ExporterKind):
    name = Kind.FILE

    def problems(self, exporter) -> list[tuple[str, str]]:
        found = []
        if exporter.descriptor_id and exporter.descriptor.entity != "order":
            found.append(("descriptor", f"{exporter.descriptor.code} is not a layout of orders"))
        if exporter.destination:
            found += [("destination", message) for message in location_errors(exporter.destination, what="destination")]
        return found

    def run(self, *, order, exporter, flag) -> Outcome:
        (result,) = self.run_many(items=[(order, flag)], exporter=exporter, lost=set())
        if isinstance(result, ExporterFailed):
            raise result
        return result

    def run_many(self, *, items: list, exporter, lost: set) -> list:
        """Write each order's lines and header files; their rows are read for the whole batch in two queries."""
        descriptors = DataDescriptor.objects.prefetch_related("columns")
        header = (
            descriptors.filter(pk=exporter.descriptor_id).first()
            if exporter.descriptor_id
            else descriptors.filter(code=HEADER_DESCRIPTOR).first()
        )
        lines = descriptors.filter(code=LINES_DESCRIPTOR).first()
        if header is None or lines is None:
            failed = ExporterFailed(
                f"the descriptors {HEADER_DESCRIPTOR} and {LINES_DESCRIPTOR} are missing", retry=False
            )
            return [None if flag.pk in lost else failed for _, flag in items]
        pks = [order.pk for order, _ in items]
        try:
            line_rows = export_rows_by(descriptor=lines, records=OrderLine.objects.filter(order__in=pks), by="order_id")
            header_rows = export_rows_by(descriptor=header, records=Order.objects.filter(pk__in=pks), by="pk")
        except Exception as exc:  # a value the layout cannot write (a column of the wrong type): each order alone
            if len(items) > 1:
                return [self.run_many(items=[item], exporter=exporter, lost=lost)[0] for item in items]
            (order, flag) = items[0]
            where = order_destination_shown(exporter=exporter, order=order)
            error = ExporterFailed(f"writing to {where}: {exc}")
            return [run_each(lambda: _raise(error), flag, lost)]
        ext = EXTENSIONS.get(header.format, "csv")
        folders = _Folders(exporter)
        with temporary_folder() as tmp:
            return [
                run_each(
                    lambda order=order, flag=flag: self._write(
                        order=order,
                        flag=flag,
                        exporter=exporter,
                        folder=folders.of(order),
                        tmp=tmp,
                        ext=ext,
                        parts=(
                            (lines, (line_rows[0], line_rows[1].get(order.pk, []))),
                            (header, (header_rows[0], header_rows[1].get(order.pk, []))),
                        ),
                    ),
                    flag,
                    lost,
                )
                for order, flag in items
            ]

    def _write(self, *, order, flag, exporter, folder, tmp, ext: str, parts) -> Outcome:
        (lines, line_rows), (header, header_rows) = parts
        header_name, lines_name = order_file_names(exporter=exporter, order=order, ext=ext, resend=flag.resend)
        try:
            for descriptor, name, rows in ((lines, lines_name, line_rows), (header, header_name, header_rows)):
                pieces = export_pieces(descriptor=descriptor, fmt=header.format, rows=rows)
                # A retry after a crash writes the same name again: the earlier copy is replaced, not doubled.
                # Lines first, header last: a reader that sees the order's header finds its lines there.
                replace_text(
                    folder.storage,
                    folder.name(name),
                    lambda stream, pieces=pieces: write_pieces(stream, pieces),
                    encoding=header.encoding or "utf-8",
                    scratch=tmp,
                )
        except ExporterFailed:
            raise
        except (OSError, ValueError) as exc:
            raise ExporterFailed(f"writing to {folder.location}: {exc}") from exc
        except Exception as exc:  # storage back-ends raise their own errors (boto, paramiko)
            raise ExporterFailed(f"writing to {folder.location}: {exc.__class__.__name__}: {exc}") from exc
        return Outcome(
            message=f"wrote {header_name} and {lines_name} to {folder.location}",
            location=folder.path(folder.name(header_name)),
        )
