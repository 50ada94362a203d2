"""Cancellation and amendment of orders by KS_ORDERS and KS_ORDER_LINES rows (SPEC sections 6 and 7).

Each batch is checked before it is written (a change to a shipped order is a row error) and leaves a note of
what it changed per order; the file's finish reads the notes once, after every chunk, and amends, removes the
lines the file no longer holds and cancels, once per file and order. Rows outside a file (a sheet, a single
record) are finished with their batch.
"""

from collections import defaultdict
from decimal import Decimal

from impex.models import Connection
from orders import events
from orders.choices import OrderEventKind, OrderState, OrderStatus
from orders.exceptions import AMEND_REFUSED, CANCEL_REFUSED
from orders.models import Order, OrderFileNote, OrderLine
from orders.services import order_amend, order_cancel
from orders.state import AMENDABLE, HAS_SHIPPED

BATCH = 1000


class _Note:
    __slots__ = ("line_nos", "changes", "cancel")

    def __init__(self):
        self.line_nos: set[int] = set()
        self.changes: list[str] = []
        self.cancel = False


def _shown(value) -> str:
    """Show a stored or read value in a timeline message (decimals with at least two places)."""
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, Decimal):
        exact = value.normalize()
        return f"{value:.2f}" if exact == exact.quantize(Decimal("0.01")) else str(exact)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _data_columns(pipeline) -> list[tuple[int, object]]:
    """The row's columns that write a field of the record itself (not its key, not another record's)."""
    return [(i, c) for i, c in enumerate(pipeline.present) if not c.is_key and not c.parent]


def _differences(pipeline, g, stored, columns, *, prefix: str = "") -> list[tuple[str, str]]:
    """Name and describe the fields a row changes on a stored record ("total", "total 10.00 -> 12.00")."""
    changes = []
    for i, column in columns:
        if column.field_name == "status":
            continue
        old, new = getattr(stored, column.attname), g.values[i]
        if old == new or (old in (None, "") and new in (None, "")):
            continue
        if column.ref_model is not None:
            old = getattr(getattr(stored, column.field_name), column.ref_key, old)
            new = pipeline.pick(g.raw)[i]
        changes.append((column.name, f"{prefix}{column.name} {_shown(old)} -> {_shown(new)}"))
    return changes


def orders_before_write(pipeline, good: list, out) -> list:
    """Check KS_ORDERS rows: refuse changes and cancellations of shipped orders; note what the others do."""
    key = pipeline.key_idx[0]
    stored = {o.order_id: o for o in Order.objects.filter(order_id__in=[g.values[key] for g in good])}
    columns = _data_columns(pipeline)
    status = next((i for i, c in columns if c.field_name == "status"), None)
    notes: dict[str, _Note] = {}
    kept = []
    for g in good:
        order_id = g.values[key]
        order = stored.get(order_id)
        cancel = False
        if status is not None:
            if not g.values[status]:
                g.values[status] = OrderStatus.OPEN  # an empty cell says what an absent column does
            if order is not None and order.state == OrderState.CANCELLED:
                g.values[status] = OrderStatus.CANCELLED  # a cancelled order stays cancelled
            cancel = g.values[status] == OrderStatus.CANCELLED and (
                order is None or order.state != OrderState.CANCELLED
            )
        changes = _differences(pipeline, g, order, columns) if order is not None else []
        if order is not None and order.state in HAS_SHIPPED and (cancel or changes):
            if cancel:
                pipeline.refuse(out, g, "status", CANCEL_REFUSED.format(order_id))
            else:
                pipeline.refuse(out, g, changes[0][0], AMEND_REFUSED.format(order_id))
            continue
        kept.append(g)
        if changes or cancel:
            note = notes.setdefault(order_id, _Note())
            note.changes += [text for _, text in changes]
            note.cancel = note.cancel or cancel
    _keep(pipeline, notes)
    return kept


def lines_before_write(pipeline, good: list, out) -> list:
    """Check KS_ORDER_LINES rows: refuse changes to shipped orders; note each order's lines and what changed."""
    order_at, line_at = pipeline.key_idx
    orders = Order.objects.filter(pk__in={g.values[order_at] for g in good}).only("pk", "order_id", "state")
    by_pk = {o.pk: o for o in orders}
    stored = {
        (line.order_id, line.line_no): line
        for line in OrderLine.objects.filter(
            order_id__in=[pk for pk, o in by_pk.items() if o.state != OrderState.NEW]
        ).select_related("variant")
    }
    columns = _data_columns(pipeline)
    notes: dict[str, _Note] = {}
    kept = []
    for g in good:
        order = by_pk[g.values[order_at]]
        line_no = g.values[line_at]
        line = stored.get((order.pk, line_no))
        if order.state == OrderState.NEW:
            changes = []  # a new order's lines are its content, not an amendment
        elif line is None:
            changes = [(pipeline.present[line_at].name, f"line {line_no} added")]
        else:
            changes = _differences(pipeline, g, line, columns, prefix=f"line {line_no} ")
        if order.state in HAS_SHIPPED:
            if changes:
                pipeline.refuse(out, g, changes[0][0], AMEND_REFUSED.format(order.order_id))
                continue
        else:
            note = notes.setdefault(order.order_id, _Note())
            note.line_nos.add(line_no)
            note.changes += [text for _, text in changes]
        kept.append(g)
    _keep(pipeline, notes)
    return kept


def _keep(pipeline, notes: dict[str, _Note]) -> None:
    """Keep a batch's notes: with its file until the file finishes, or with the pipeline until it has written."""
    if pipeline.file is not None:
        OrderFileNote.objects.bulk_create(
            [
                OrderFileNote(
                    file=pipeline.file,
                    order_ref=order_id,
                    line_nos=sorted(note.line_nos),
                    changes=note.changes,
                    cancel=note.cancel,
                )
                for order_id, note in notes.items()
            ],
            batch_size=1000,
        )
    else:
        pipeline.order_notes = notes


def orders_after_write(pipeline) -> None:
    """Finish a batch of rows outside a file at once (a sheet, a single record): amend and cancel its orders."""
    notes = getattr(pipeline, "order_notes", None)
    if pipeline.file is not None or not notes:
        return
    pipeline.order_notes = {}
    code = Connection.objects.filter(pk=pipeline.connection_id).values_list("code", flat=True).first()
    _finish(notes, by=f"update from {code}" if code else "sheet upload", replace_lines=False)


def file_finish(import_file) -> None:
    """Amend, remove the lines the file no longer holds and cancel: once per order of the file, as it finishes."""
    merged: dict[str, _Note] = defaultdict(_Note)
    kept = OrderFileNote.objects.filter(file=import_file)
    for note in kept.order_by("pk"):
        merged[note.order_ref].line_nos.update(note.line_nos)
        merged[note.order_ref].changes += note.changes
        merged[note.order_ref].cancel |= note.cancel
    kept.delete()
    if not merged:
        return
    connection = import_file.connection
    by = f"file {import_file.name}" + (f" of {connection.code}" if connection else "")
    lines_file = import_file.descriptor.entity == "order_line"
    # A row of the file that was refused (a typing error in a SKU) keeps the order's lines as they are. A row's
    # external id is its key cells joined by "/" (order_id, then line_no): an order id may hold "/" itself.
    refused = set()
    if lines_file:
        refused = {ext.rsplit("/", 1)[0].strip() for ext in import_file.errors.values_list("external_id", flat=True)}
    _finish(merged, by=by, replace_lines=lines_file, keep_lines_of=refused, job=import_file.job_id)


def _finish(
    notes: dict[str, _Note], *, by: str, replace_lines: bool, keep_lines_of=frozenset(), job: int | None = None
) -> None:
    """Apply the notes, a batch of orders at a time: lines removed in one statement, then each change recorded."""
    refs = sorted(notes)
    for start in range(0, len(refs), BATCH):
        orders = list(Order.objects.select_for_update().filter(order_id__in=refs[start : start + BATCH]).order_by("pk"))
        removed: dict[int, list[int]] = defaultdict(list)
        if replace_lines:
            held = {o.pk: notes[o.order_id].line_nos for o in orders}
            eligible = [o.pk for o in orders if o.order_id not in keep_lines_of and o.state not in HAS_SHIPPED]
            gone = []
            lines = OrderLine.objects.filter(order_id__in=eligible, shipped_at__isnull=True)
            for pk, order_pk, line_no in lines.values_list("pk", "order_id", "line_no").order_by("line_no"):
                if line_no not in held[order_pk]:
                    gone.append(pk)
                    removed[order_pk].append(line_no)
            OrderLine.objects.filter(pk__in=gone).delete()
        for order in orders:
            note = notes[order.order_id]
            changes = note.changes + [f"line {n} removed" for n in removed[order.pk]]
            if changes and order.state in AMENDABLE:
                order_amend(order=order, changes=changes, by=by, resend=not note.cancel, job=job)
            if note.cancel and order.state in HAS_SHIPPED:
                # It shipped after its row was checked (a carrier's event while the file went in): the cancel comes
                # too late, and the file's finish must still go through.
                events.note_event(
                    order=order, kind=OrderEventKind.NOTE, by=by, message=CANCEL_REFUSED.format(order.order_id)
                )
            elif note.cancel:
                order_cancel(order=order, reason="the platform cancelled it (status cancelled)", by=by)
