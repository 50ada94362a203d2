"""Helpers for admin tests: URLs, form data, staff users, table snapshots, and rows of every listed model."""

from decimal import Decimal

from django import forms
from django.apps import apps
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from impex.models import (
    ApiToken,
    Connection,
    DataDescriptor,
    DataGroup,
    DescriptorColumn,
    ExportRun,
    ExportRunEvent,
    FullSync,
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    InboxEvent,
    InboxFile,
    Problem,
    RowError,
    SentFile,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from orders.models import (
    Exporter,
    FeedEvent,
    Order,
    OrderEvent,
    OrderExportRun,
    OrderFlag,
    OrderLine,
    Shipment,
    TransitionFlag,
)
from orders.services import orders_confirm_ready
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    RecordEvent,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
    SyncError,
    SyncLog,
)

OUR_APPS = ("impex", "syncapp", "orders")


def admin_url(model, view, *args):
    """Reverse an admin URL of model ("changelist", "add", "change", "import", "export", ...)."""
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def post_data(*forms_):
    """The POST data a browser would send for unchanged forms (booleans as checkboxes, split date and time)."""
    data = {}
    for form in forms_:
        for bound in form:
            value = bound.value()
            if isinstance(bound.field, forms.BooleanField):
                if value:
                    data[bound.html_name] = "on"
            elif isinstance(bound.field.widget, forms.MultiWidget):
                for index, part in enumerate(bound.field.widget.decompress(value)):
                    data[f"{bound.html_name}_{index}"] = part
            elif value is not None:
                data[bound.html_name] = value
    return data


def staff_user(django_user_model, username, *perms):
    """Create a staff user holding exactly the given permissions ("app_label.codename")."""
    user = django_user_model.objects.create_user(username, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def table_snapshot():
    """Every row of every table of our apps, to show that a refused request changed nothing."""
    return {
        model._meta.label_lower: list(model.objects.order_by("pk").values())
        for app in OUR_APPS
        for model in apps.get_app_config(app).get_models()
    }


def add_rows(count, tag):
    """Add count rows of every model the admin lists, each with its foreign keys filled; tag keeps keys unique."""
    now = timezone.now()
    keys = [f"{tag}{i:03d}" for i in range(count)]
    conns = Connection.objects.bulk_create(
        Connection(code=f"conn-{k}", convention="kore", integration_id=f"I{k}") for k in keys
    )
    descriptors = DataDescriptor.objects.bulk_create(DataDescriptor(code=f"D_{k}", entity="customer") for k in keys)
    DescriptorColumn.objects.bulk_create(
        DescriptorColumn(descriptor=d, position=p, name=f"c{p}", field=f"f{p}") for d in descriptors for p in (0, 1)
    )
    groups = DataGroup.objects.bulk_create(
        DataGroup(code=f"group-{k}", name=f"Group {k}", connection=c) for k, c in zip(keys, conns, strict=True)
    )
    for group, descriptor in zip(groups, descriptors, strict=True):
        group.descriptors.add(descriptor)
    jobs = ImportJob.objects.bulk_create(
        ImportJob(status="completed", connection=c, group=g, started_at=now, finished_at=now)
        for c, g in zip(conns, groups, strict=True)
    )
    files = ImportFile.objects.bulk_create(
        ImportFile(job=j, connection=c, descriptor=d, name=f"ERP_{k}.NET", status="imported")
        for k, j, c, d in zip(keys, jobs, conns, descriptors, strict=True)
    )
    ImportChunk.objects.bulk_create(ImportChunk(file=f, index=0, first_record=0, record_count=1) for f in files)
    ImportEvent.objects.bulk_create(
        ImportEvent(job=f.job, file=f, kind="imported", message=f"{f.name}: imported", worker="w-1") for f in files
    )
    RowError.objects.bulk_create(RowError(file=f, row=1, column="email", message="bad") for f in files)
    inbox_files = InboxFile.objects.bulk_create(
        InboxFile(connection=f.connection, name=f.name, status="taken", job=f.job, import_file=f) for f in files
    )
    InboxEvent.objects.bulk_create(
        InboxEvent(inbox_file=i, status=status, message=status, worker="w-1")
        for i in inbox_files
        for status in ("seen", "claimed", "taken")
    )
    ImportedFileName.objects.bulk_create(
        ImportedFileName(connection=c, name=f.name, content_hash="ab" * 32, file=f)
        for c, f in zip(conns, files, strict=True)
    )
    full_syncs = FullSync.objects.bulk_create(
        FullSync(connection=c, entity="customer", created_by="ana", finished_at=now) for c in conns
    )
    FullSync.groups.through.objects.bulk_create(
        FullSync.groups.through(fullsync=f, datagroup=g) for f, g in zip(full_syncs, groups, strict=True)
    )
    runs = ExportRun.objects.bulk_create(
        ExportRun(
            group=g, trigger="full_sync", status="completed", started_at=now, finished_at=now, rows=1, full_sync=f
        )
        for g, f in zip(groups, full_syncs, strict=True)
    )
    ExportRunEvent.objects.bulk_create(ExportRunEvent(run=r, status="completed", message="completed") for r in runs)
    sent = SentFile.objects.bulk_create(
        SentFile(run=r, group=r.group, name=f"out_{k}.csv", location="outbox", path=f"outbox/out_{k}.csv", sha256="ab")
        for k, r in zip(keys, runs, strict=True)
    )
    ExportRun.objects.bulk_create(
        ExportRun(group=s.group, trigger="admin", status="completed", resend_of=s, created_by="ana") for s in sent
    )
    ApiToken.objects.bulk_create(
        ApiToken(connection=c, key_hash=f"{k:0>64}", prefix=f"ihub_{k}", created_by="ana")
        for k, c in zip(keys, conns, strict=True)
    )
    Problem.objects.bulk_create(
        Problem(connection=c, kind="import-job", key=f"job:{j.pk}", message="bad", url="/admin/")
        for c, j in zip(conns, jobs, strict=True)
    )
    logs = SyncLog.objects.bulk_create(SyncLog(connection=c, entity="customer", last_partial_sync=now) for c in conns)
    SyncError.objects.bulk_create(SyncError(log=log, external_id="C1", message="bad") for log in logs)
    parent = Customer.objects.create(customer_id=f"parent-{tag}", email="p@example.com")
    customers = Customer.objects.bulk_create(
        Customer(customer_id=f"C{k}", email=f"{k}@example.com", parent=parent, connection=c)
        for k, c in zip(keys, conns, strict=True)
    )
    products = Product.objects.bulk_create(
        Product(product_id=f"P{k}", title=k, connection=c) for k, c in zip(keys, conns, strict=True)
    )
    variants = ProductVariant.objects.bulk_create(
        ProductVariant(variant_id=f"V{k}", sku=f"SKU{k}", product=p, connection=c)
        for k, p, c in zip(keys, products, conns, strict=True)
    )
    StockLevel.objects.bulk_create(
        StockLevel(variant=v, location="main", quantity=1, connection=c) for v, c in zip(variants, conns, strict=True)
    )
    price_lists = PriceList.objects.bulk_create(
        PriceList(code=f"PL{k}", connection=c) for k, c in zip(keys, conns, strict=True)
    )
    Price.objects.bulk_create(
        Price(price_list=pl, variant=v, currency="EUR", price=Decimal("1"), connection=c)
        for pl, v, c in zip(price_lists, variants, conns, strict=True)
    )
    specials = SpecialOrder.objects.bulk_create(
        SpecialOrder(
            special_order_id=f"SO{k}",
            store_id="S1",
            client_id="CL1",
            order_type="REPAIR",
            status="OPEN",
            ordered_at=now,
            connection=c,
        )
        for k, c in zip(keys, conns, strict=True)
    )
    SpecialOrderLineItem.objects.bulk_create(
        SpecialOrderLineItem(line_item_id=f"LI{k}", special_order=s, product_name="Ring", quantity=1, connection=c)
        for k, s, c in zip(keys, specials, conns, strict=True)
    )
    SpecialOrderEvent.objects.bulk_create(
        SpecialOrderEvent(event_id=f"E{k}", special_order=s, event_type="CREATED", event_at=now, connection=c)
        for k, s, c in zip(keys, specials, conns, strict=True)
    )
    orders = Order.objects.bulk_create(
        Order(order_id=f"O{k}", customer=cu, order_date=now, currency="EUR", total=Decimal("2"), connection=c)
        for k, cu, c in zip(keys, customers, conns, strict=True)
    )
    OrderLine.objects.bulk_create(
        OrderLine(order=o, line_no=1, variant=v, quantity=1, unit_price=Decimal("2"), connection=c)
        for o, v, c in zip(orders, variants, conns, strict=True)
    )
    orders_confirm_ready(by="test")  # orders whose lines are in are confirmed, as when their files are imported
    Shipment.objects.bulk_create(
        Shipment(shipment_id=f"SH{k}", order=o, carrier="DHL", shipped_at=now, connection=c)
        for k, o, c in zip(keys, orders, conns, strict=True)
    )
    # The order domain's own rows: exporters on per-tag flags, a rule, flags in each status, timeline rows, runs.
    exporters = Exporter.objects.bulk_create(
        Exporter(code=f"exp-{k}", flag=f"f-{k}", kind="webhook", url="http://127.0.0.1:9/") for k in keys
    )
    TransitionFlag.objects.bulk_create(TransitionFlag(transition="confirm", flag=e.flag) for e in exporters)
    statuses = ("pending", "failed", "held", "running")
    OrderFlag.objects.bulk_create(
        OrderFlag(
            order=o, flag=e.flag, exporter=e, status=statuses[i % len(statuses)], attempts=i, last_error="HTTP 500"
        )
        for i, (o, e) in enumerate(zip(orders, exporters, strict=True))
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(order=o, kind="flag_set", flag=e.flag, by="import") for o, e in zip(orders, exporters, strict=True)
    )
    OrderExportRun.objects.bulk_create(
        OrderExportRun(order=o, exporter=e, exporter_code=e.code, flag=e.flag, status="failed", http_status=500)
        for o, e in zip(orders, exporters, strict=True)
    )
    FeedEvent.objects.bulk_create(
        FeedEvent(
            connection=c, source="api", event_id=f"EV{k}", shipment_id=f"SH{k}", order_ref=f"O{k}", shipped_at=now
        )
        for k, c in zip(keys, conns, strict=True)
    )
    # Outbound webhooks with a delivery and its attempt each; single-record updates.
    subs = WebhookSubscription.objects.bulk_create(
        WebhookSubscription(code=f"hook-{k}", url="http://127.0.0.1:9/", events=["file.imported"]) for k in keys
    )
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(subscription=s, event="file.imported", payload={"n": 1}, status="failed", attempts=1)
        for s in subs
    )
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(delivery=d, number=1, http_status=500, response="oops") for d in deliveries
    )
    RecordEvent.objects.bulk_create(
        RecordEvent(connection=c, entity="customer", descriptor_code="KS_CUSTOMERS", record_key=f"C{k}", payload={})
        for k, c in zip(keys, conns, strict=True)
    )
