"""Paged extraction (SPEC section 10, GET /api/extract/{entity}/): records in the columns of their built-in
descriptor plus updated_at, oldest change first, by a cursor on (updated_at, id).

Why no record is skipped: a page ends at the last (updated_at, id) it returned and the next starts strictly
after it. A record not yet returned keeps an (updated_at, id) after the cursor, and a change only moves its
updated_at later, so it is still ahead; a record returned already may come again with its newer values.
"""

import base64
import binascii
import json
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from impex.choices import ColumnType
from impex.entities import entity_spec
from impex.models import DataDescriptor
from impex.services.exports import column_lookup

# The path's name -> the built-in descriptor whose columns a record is given in.
EXTRACT_DESCRIPTORS = {"customers": "KS_CUSTOMERS", "special-orders": "SPECIAL-ORDERS", "orders": "KS_ORDERS"}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


class BadCursor(ValueError):
    pass


def cursor_encode(updated_at: datetime, pk: int) -> str:
    raw = json.dumps([updated_at.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, pk = json.loads(raw)
        at = datetime.fromisoformat(stamp)
        if not isinstance(pk, int) or timezone.is_naive(at):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("the cursor is not one this API gave out; start again without it") from exc
    return at, pk


def _json_value(value, kind: str):
    if value is None:
        return None
    if kind == ColumnType.DECIMAL:
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if kind in (ColumnType.DATE, ColumnType.DATETIME):
        return value.isoformat()
    if kind in (ColumnType.BOOLEAN, ColumnType.INTEGER):
        return value
    return str(value)


def extract_page(*, name: str, updated_since: datetime | None, cursor: str | None, limit: int) -> dict:
    """Return one page: {"results": [...], "next_cursor": str or None}."""
    descriptor = DataDescriptor.objects.get(code=EXTRACT_DESCRIPTORS[name])
    model = entity_spec(descriptor.entity).model
    columns = [c for c in descriptor.columns.all() if not c.ignored]
    lookups = [column_lookup(model, c) for c in columns]
    qs = model.objects.all()
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    if cursor:
        at, pk = cursor_decode(cursor)
        qs = qs.filter(Q(updated_at__gt=at) | Q(updated_at=at, pk__gt=pk))
    rows = list(qs.order_by("updated_at", "pk").values_list("pk", "updated_at", *lookups)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    results = []
    for _pk, updated_at, *values in rows:
        record = {c.name: _json_value(v, c.type) for c, v in zip(columns, values, strict=True)}
        record["updated_at"] = updated_at.isoformat()
        results.append(record)
    next_cursor = cursor_encode(rows[-1][1], rows[-1][0]) if more else None
    return {"results": results, "next_cursor": next_cursor}
