"""Admin pages that list rows run as many queries for thirty rows as for three (no query per row)."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from impex.models import (
    DataDescriptor,
    DescriptorColumn,
    ExportRun,
    ExportRunEvent,
    ImportChunk,
    ImportEvent,
    ImportFile,
    ImportJob,
    InboxEvent,
    InboxFile,
    RowError,
    SentFile,
    WebhookAttempt,
    WebhookDelivery,
)
from orders.models import Order, OrderLine, Shipment
from syncapp.models import (
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    SyncError,
    SyncLog,
)
from tests.admin_helpers import OUR_APPS, add_rows, admin_url

LISTED = sorted(m._meta.label_lower for m in admin.site._registry if m._meta.app_label in OUR_APPS)
FEW, MANY = 3, 30
# A superuser's orders list shows the orders awaiting approval by default: measure the whole list.
LIST_QUERIES = {"orders.order": "?approval=all"}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def count_queries(client, url):
    """Load url (once to warm caches, once measured) and return the number of queries of the measured load."""
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_every_listed_model_is_measured():
    assert set(LISTED) == {
        "impex.connection",
        "impex.datadescriptor",
        "impex.datagroup",
        "impex.exportrun",
        "impex.fullsync",
        "impex.importchunk",
        "impex.importedfilename",
        "impex.importevent",
        "impex.importfile",
        "impex.importjob",
        "impex.problem",
        "impex.apitoken",
        "impex.webhooksubscription",
        "impex.webhookdelivery",
        "syncapp.recordevent",
        "impex.inboxfile",
        "impex.rowerror",
        "impex.sentfile",
        "orders.exporter",
        "orders.feedevent",
        "orders.order",
        "orders.orderexportrun",
        "orders.orderline",
        "orders.shipment",
        "orders.transitionflag",
        "syncapp.customer",
        "syncapp.price",
        "syncapp.pricelist",
        "syncapp.product",
        "syncapp.productvariant",
        "syncapp.specialorder",
        "syncapp.specialorderevent",
        "syncapp.specialorderlineitem",
        "syncapp.stocklevel",
        "syncapp.syncerror",
        "syncapp.synclog",
    }


@pytest.mark.parametrize("label", LISTED)
def test_changelist_queries_do_not_grow_with_the_rows(admin_client, django_assert_max_num_queries, label):
    model = apps.get_model(label)
    url = admin_url(model, "changelist") + LIST_QUERIES.get(label, "")
    add_rows(FEW, "a")
    few = count_queries(admin_client, url)

    add_rows(MANY - FEW, "b")

    with django_assert_max_num_queries(few):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= MANY


def add_inline_rows(obj, count):
    """Add count rows to each inline of obj's change page."""
    start = {
        Product: lambda: obj.variants.count(),
        SpecialOrder: lambda: obj.line_items.count(),
        Order: lambda: obj.lines.count(),
        SyncLog: lambda: obj.errors.count(),
        DataDescriptor: lambda: obj.columns.count(),
        ImportJob: lambda: obj.files.count(),
        ImportFile: lambda: obj.errors.count(),
        ExportRun: lambda: obj.events.count(),
        InboxFile: lambda: obj.events.count(),
        WebhookDelivery: lambda: obj.attempt_log.count(),
    }[type(obj)]()
    numbers = range(start, start + count)
    now = timezone.now()
    if isinstance(obj, Product):
        ProductVariant.objects.bulk_create(
            ProductVariant(product=obj, variant_id=f"X{n}", sku=f"X{n}", connection=obj.connection) for n in numbers
        )
    elif isinstance(obj, SpecialOrder):
        SpecialOrderLineItem.objects.bulk_create(
            SpecialOrderLineItem(special_order=obj, line_item_id=f"X{n}", product_name="Ring", quantity=1)
            for n in numbers
        )
        SpecialOrderEvent.objects.bulk_create(
            SpecialOrderEvent(special_order=obj, event_id=f"X{n}", event_type="NOTE", event_at=now) for n in numbers
        )
    elif isinstance(obj, Order):
        variants = list(ProductVariant.objects.all())
        OrderLine.objects.bulk_create(
            OrderLine(order=obj, line_no=n + 2, variant=variants[n % len(variants)], quantity=1, unit_price=1)
            for n in numbers
        )
        Shipment.objects.bulk_create(Shipment(order=obj, shipment_id=f"X{n}", shipped_at=now) for n in numbers)
    elif isinstance(obj, SyncLog):
        SyncError.objects.bulk_create(SyncError(log=obj, external_id=f"X{n}", message="bad") for n in numbers)
    elif isinstance(obj, DataDescriptor):
        DescriptorColumn.objects.bulk_create(
            DescriptorColumn(descriptor=obj, position=n + 2, name=f"x{n}", field=f"x{n}") for n in numbers
        )
    elif isinstance(obj, ImportJob):
        descriptor = DataDescriptor.objects.first()
        files = ImportFile.objects.bulk_create(
            ImportFile(job=obj, connection=obj.connection, descriptor=descriptor, name=f"X{n}.NET") for n in numbers
        )
        ImportEvent.objects.bulk_create(
            ImportEvent(job=obj, file=f, kind="imported", message=f"{f.name}: imported", worker="w-1") for f in files
        )
    elif isinstance(obj, ExportRun):
        ExportRunEvent.objects.bulk_create(ExportRunEvent(run=obj, status="running", message="x") for n in numbers)
        SentFile.objects.bulk_create(
            SentFile(run=obj, group=obj.group, name=f"X{n}.csv", location="o", path=f"o/X{n}.csv", sha256="ab")
            for n in numbers
        )
    elif isinstance(obj, WebhookDelivery):
        WebhookAttempt.objects.bulk_create(
            WebhookAttempt(delivery=obj, number=n + 2, http_status=500, response="oops") for n in numbers
        )
    elif isinstance(obj, InboxFile):
        InboxEvent.objects.bulk_create(InboxEvent(inbox_file=obj, status="seen", message=f"look {n}") for n in numbers)
    else:
        RowError.objects.bulk_create(RowError(file=obj, row=n, message="bad") for n in numbers)
        ImportChunk.objects.bulk_create(
            ImportChunk(file=obj, index=n + 1, first_record=n + 1, record_count=1) for n in numbers
        )


WITH_INLINES = sorted(label for label in LISTED if admin.site._registry[apps.get_model(label)].inlines)


def test_every_change_page_with_inlines_is_measured():
    assert WITH_INLINES == [
        "impex.datadescriptor",
        "impex.exportrun",
        "impex.importfile",
        "impex.importjob",
        "impex.inboxfile",
        "impex.webhookdelivery",
        "orders.order",
        "syncapp.product",
        "syncapp.specialorder",
    ]


@pytest.mark.parametrize("label", WITH_INLINES)
def test_change_page_queries_do_not_grow_with_inline_rows(admin_client, django_assert_max_num_queries, label):
    add_rows(1, "a")
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").last()
    url = admin_url(model, "change", obj.pk)
    add_inline_rows(obj, FEW)
    few = count_queries(admin_client, url)

    add_inline_rows(obj, MANY - FEW)

    with django_assert_max_num_queries(few):
        response = admin_client.get(url)
    assert response.status_code == 200
    shown = [len(inline.formset.forms) for inline in response.context["inline_admin_formsets"]]
    assert min(shown) >= MANY, shown


def test_the_sync_log_dashboard_queries_do_not_grow_with_its_errors(admin_client, django_assert_max_num_queries):
    add_rows(1, "a")
    log = SyncLog.objects.order_by("pk").last()
    url = admin_url(SyncLog, "change", log.pk)
    add_inline_rows(log, FEW)
    few = count_queries(admin_client, url)

    add_inline_rows(log, MANY - FEW)

    with django_assert_max_num_queries(few):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(response.context["errors_page"].object_list) == MANY + 1
