"""Give records back the source that created them where the import history tells it (SPEC section 5, issue 17).

Until issue 16 an update took the record's connection over, so a record may carry the last connection whose file
changed it instead of the one that created it; that connection's FULL files would retire it and its creator's
would not. What the hub still knows of a record's creation:
- a single-record update that created it (RecordEvent, result "created") or a delivery of the HTTP feed that
  created a shipment (FeedEvent, source "api", applied): exact;
- its created_at, which the upsert stamps while the file that created it runs: when the imported (not dry-run)
  files of the record's entity running at that instant all belong to one connection, that connection created it.
A record with a source is moved to that connection when the two differ, unless the history names it exactly or
its current source had a file of the entity of its own running at its created_at (whatever became of that file:
failed, killed, still running): the record may come from it, or from an HTTP event or a price list of that
connection the history does not show, so the current source is at least as plausible. Records created where several
connections' files ran at once, or before the hub's kept history (jobs deleted), or by an admin's sheet (no
source), keep the source they have: nothing tells their creator honestly. The records are read in batches of
primary keys and each batch's changes written with one UPDATE per connection; updated_at is left alone (the
record's data did not change). Reversing does nothing: the sources written are the truer ones.
"""

from bisect import bisect_right
from collections import Counter, defaultdict

from django.db import migrations
from django.db.models.functions import Coalesce

BATCH = 5000

# model label -> (the entities whose files may create its records, the natural key field)
CREATED_BY = {
    ("syncapp", "Customer"): (("customer",), "customer_id"),
    ("syncapp", "Product"): (("product_variant",), "product_id"),
    ("syncapp", "ProductVariant"): (("product_variant",), "variant_id"),
    ("syncapp", "StockLevel"): (("stock_level",), None),
    ("syncapp", "PriceList"): (("price", "product_variant"), "code"),
    ("syncapp", "Price"): (("price", "product_variant"), None),
    ("syncapp", "SpecialOrder"): (("special_order",), "special_order_id"),
    ("syncapp", "SpecialOrderLineItem"): (("special_order_line_item",), "line_item_id"),
    ("syncapp", "SpecialOrderEvent"): (("special_order_event",), "event_id"),
    ("orders", "Order"): (("order",), "order_id"),
    ("orders", "OrderLine"): (("order_line",), None),
    ("orders", "Shipment"): (("shipment",), "shipment_id"),
}
RECORD_EVENT_ENTITY = {("syncapp", "Customer"): "customer", ("syncapp", "ProductVariant"): "product_variant"}


def single_owner_spans(intervals):
    """Turn (start, end, connection) intervals into sorted spans during which exactly one connection imported."""
    opens, closes = defaultdict(list), defaultdict(list)
    for start, end, conn in intervals:
        opens[start].append(conn)
        closes[end].append(conn)
    edges = sorted(opens.keys() | closes.keys())
    active = Counter()
    spans = []
    for left, right in zip(edges, edges[1:], strict=False):
        active.update(opens[left])
        active.subtract(closes[left])
        active = +active  # drop the connections no longer importing
        if len(active) == 1:
            spans.append((left, right, next(iter(active))))
    return spans


def owner_at(spans, starts, instant):
    """Return the one connection importing at that instant, or None."""
    i = bisect_right(starts, instant) - 1
    if i >= 0 and instant <= spans[i][1]:
        return spans[i][2]
    return None


def running_spans(intervals):
    """Merge (start, end, connection) intervals into sorted, disjoint spans per connection: {connection: [(s, e)]}.
    An end of None (a file that never finished) runs on for ever."""
    spans = defaultdict(list)
    for start, end, conn in sorted(intervals, key=lambda i: (i[2], i[0])):
        own = spans[conn]
        if own and (own[-1][1] is None or start <= own[-1][1]):
            last = own[-1][1]
            own[-1] = (own[-1][0], None if last is None or end is None else max(last, end))
        else:
            own.append((start, end))
    return {conn: (own, [s for s, _ in own]) for conn, own in spans.items()}


def was_running(running, conn, instant):
    """Tell whether the connection had a file running at that instant."""
    if conn not in running:
        return False
    own, starts = running[conn]
    i = bisect_right(starts, instant) - 1
    return i >= 0 and (own[i][1] is None or instant <= own[i][1])


def exact_creators(apps, label):
    """Return natural key -> connection for records an HTTP update or feed delivery is known to have created."""
    found = {}
    if label in RECORD_EVENT_ENTITY:
        RecordEvent = apps.get_model("syncapp", "RecordEvent")
        events = (
            RecordEvent.objects.filter(entity=RECORD_EVENT_ENTITY[label], result="created")
            .order_by("-pk")
            .values_list("record_key", "connection_id")
        )
        found.update(events.iterator(chunk_size=BATCH))  # the earliest wins: it comes last
    if label == ("orders", "Shipment"):
        FeedEvent = apps.get_model("orders", "FeedEvent")
        events = (
            FeedEvent.objects.filter(source="api", status="applied", connection__isnull=False)
            .order_by("-pk")
            .values_list("shipment_id", "connection_id")
        )
        found.update(events.iterator(chunk_size=BATCH))
    return found


def restore_sources(apps, schema_editor):
    """Move each record whose creator the history tells to that connection, batch by batch."""
    ImportFile = apps.get_model("impex", "ImportFile")
    for label, (entities, key_field) in CREATED_BY.items():
        model = apps.get_model(*label)
        files = ImportFile.objects.filter(
            kind="data",
            status="imported",
            job__dry_run=False,
            connection__isnull=False,
            descriptor__entity__in=entities,
            started_at__isnull=False,
            finished_at__isnull=False,
        ).values_list("started_at", "finished_at", "connection_id")
        spans = single_owner_spans(list(files.iterator(chunk_size=BATCH)))
        starts = [s[0] for s in spans]
        any_files = ImportFile.objects.filter(
            kind="data",
            job__dry_run=False,
            connection__isnull=False,
            descriptor__entity__in=entities,
            started_at__isnull=False,
        ).values_list("started_at", Coalesce("finished_at", "job__finished_at"), "connection_id")
        running = running_spans(any_files.iterator(chunk_size=BATCH)) if spans else {}
        exact = exact_creators(apps, label)
        if not spans and not exact:
            continue
        fields = ["pk", "created_at", "connection_id"] + ([key_field] if key_field else [])
        last = 0
        while True:
            rows = list(
                model.objects.filter(pk__gt=last, connection_id__isnull=False)
                .order_by("pk")
                .values_list(*fields)[:BATCH]
            )
            if not rows:
                break
            last = rows[-1][0]
            moves = defaultdict(list)
            for row in rows:
                pk, created_at, current = row[:3]
                owner = exact.get(row[3]) if key_field else None
                if owner is None and spans and not was_running(running, current, created_at):
                    owner = owner_at(spans, starts, created_at)
                if owner is not None and owner != current:
                    moves[owner].append(pk)
            for owner, pks in moves.items():
                model.objects.filter(pk__in=pks).update(connection_id=owner)


class Migration(migrations.Migration):
    dependencies = [
        ("syncapp", "0002_record_events"),
        ("orders", "0007_order_version_cancel_permission"),
        ("impex", "0018_connection_state_last_applied_timestamps"),
    ]

    operations = [
        migrations.RunPython(restore_sources, migrations.RunPython.noop),
    ]
