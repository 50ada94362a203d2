"""The admin as integration admins use it: every page loads, audit records stay read-only."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django import forms as django_forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from config.adminkit import INLINE_ROW_LIMIT
from impex.models import (
    Connection,
    DataDescriptor,
    DataGroup,
    ExportRun,
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
from impex.services.tokens import api_token_issue
from orders.models import Exporter, FeedEvent, Order, OrderExportRun, OrderLine, Shipment, TransitionFlag
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

REGISTERED = sorted(m._meta.label_lower for m in admin.site._registry)
OUR_APPS = ("impex", "syncapp", "orders")
# Working tables of the import engine, and columns (edited inline on their descriptor): no admin of their own.
# Engine internals: keys and held-back rows of files in progress, which job holds a connection; an inbox file's
# steps are shown on its page.
NOT_REGISTERED = {
    "impex.filekey",
    "impex.fileduplicate",
    "impex.deferredrow",
    "impex.descriptorcolumn",
    "impex.connectionstate",
    "impex.exportstate",
    "impex.exportrunevent",
    "impex.inboxevent",
    # The cluster's bookkeeping of its passes (impex.services.passes): nothing a person reads or acts on.
    "impex.workpass",
    # The scan loop's lease (impex.services.scan_loop): the connection pages say whether it runs.
    "impex.scanloop",
    # The clusters' heartbeats (impex.brokers): /healthz and /metrics report them.
    "impex.clusterbeat",
    # A delivery's attempts are shown on its page.
    "impex.webhookattempt",
    # An order's timeline rows and flags are shown on its page.
    "orders.orderevent",
    "orders.orderflag",
    # What a file's chunks did to an order, kept until the file finishes (like FileKey): the timeline shows it.
    "orders.orderfilenote",
}


def admin_url(model, view, *args):
    """Reverse an admin URL of model ("changelist", "add", "change", "import", "export", ...)."""
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sample(bspk_connection, kore_connection):
    """One record of every model, linked as an import would link them."""
    now = timezone.now()
    parent = Customer.objects.create(customer_id="C0", email="parent@example.com", connection=kore_connection)
    customer = Customer.objects.create(
        customer_id="C1",
        email="ann@example.com",
        first_name="Ann",
        last_name="Lee",
        company_name="Lee Ltd",
        parent=parent,
        connection=kore_connection,
    )
    product = Product.objects.create(product_id="P1", title="Shirt", connection=kore_connection)
    variant = ProductVariant.objects.create(variant_id="V1", product=product, sku="SHIRT-M", rrp=Decimal("19.99"))
    StockLevel.objects.create(variant=variant, location="main", quantity=5)
    price_list = PriceList.objects.create(code="RETAIL")
    Price.objects.create(price_list=price_list, variant=variant, currency="EUR", price=Decimal("17.50"))
    special = SpecialOrder.objects.create(
        special_order_id="SO1",
        store_id="S1",
        client_id="CL1",
        order_type="REPAIR",
        status="OPEN",
        ordered_at=now,
        connection=bspk_connection,
    )
    SpecialOrderLineItem.objects.create(line_item_id="LI1", special_order=special, product_name="Ring", quantity=1)
    SpecialOrderEvent.objects.create(event_id="E1", special_order=special, event_type="CREATED", event_at=now)
    order = Order.objects.create(order_id="O1", customer=customer, order_date=now, currency="EUR", total=Decimal("35"))
    OrderLine.objects.create(order=order, line_no=1, variant=variant, quantity=2, unit_price=Decimal("17.50"))
    Shipment.objects.create(shipment_id="SH1", order=order, carrier="DHL", shipped_at=now)
    exporter = Exporter.objects.create(code="erp-file", flag="erp", kind="file", next_flag="notify")
    TransitionFlag.objects.create(transition="confirm", flag="erp")
    OrderExportRun.objects.create(order=order, exporter=exporter, exporter_code="erp-file", flag="erp", status="done")
    FeedEvent.objects.create(source="api", event_id="EV1", shipment_id="SH1", order_ref="O1", shipped_at=now)
    api_token_issue(connection=kore_connection, by="ana")
    log = SyncLog.objects.create(connection=kore_connection, entity="customer", last_partial_sync=now)
    SyncError.objects.create(log=log, external_id="C9", message="email is required")
    hook = WebhookSubscription.objects.create(code="crm", url="http://127.0.0.1:9/", events=["file.imported"])
    delivery = WebhookDelivery.objects.create(subscription=hook, event="file.imported", payload={"n": 1})
    WebhookAttempt.objects.create(delivery=delivery, number=1, http_status=500, response="oops")
    RecordEvent.objects.create(
        connection=kore_connection, entity="customer", descriptor_code="KS_CUSTOMERS", record_key="C1", payload={}
    )
    Problem.objects.create(connection=kore_connection, kind="inbox", key="scan:kore-erp", message="unreadable")
    job = ImportJob.objects.create(
        status="completed",
        connection=kore_connection,
        group=DataGroup.objects.get(code="kore-inbound"),
        started_at=now - timedelta(seconds=90),
        finished_at=now,
        rows_total=4,
        rows_done=2,
    )
    ImportEvent.objects.create(job=job, kind="started", message="started by worker-1")
    ImportEvent.objects.create(job=job, kind="completed", message="completed")
    file = ImportFile.objects.create(
        job=job,
        connection=kore_connection,
        name="DT_0000001_INT1_KS_CUSTOMERS.NET",
        descriptor=DataDescriptor.objects.get(code="KS_CUSTOMERS"),
        status="imported",
        mode="NET",
        rows_total=4,
        rows_done=2,
        created=3,
        failed=1,
    )
    ImportChunk.objects.create(file=file, index=0, first_record=0, record_count=4, status="done")
    RowError.objects.create(file=file, row=3, column="email", value="", message="email is required")
    ImportedFileName.objects.create(connection=kore_connection, name=file.name, content_hash="ab" * 32, file=file)
    export = DataGroup.objects.create(code="customers-out", name="Customers out", direction="export")
    full_sync = FullSync.objects.create(connection=kore_connection, entity="customer", created_by="ana")
    full_sync.groups.add(export)
    run = ExportRun.objects.create(
        group=export, trigger="full_sync", status="completed", started_at=now, rows=3, full_sync=full_sync
    )
    run.events.create(status="completed", message="completed: 3 rows written")
    SentFile.objects.create(
        run=run, group=export, name="customers-out_1.tsv", location="outbox", path="outbox/customers-out_1.tsv"
    )
    inbox_file = InboxFile.objects.create(
        connection=kore_connection, name=file.name, size=120, status="taken", job=job, import_file=file
    )
    InboxEvent.objects.create(inbox_file=inbox_file, status="seen", message="seen (120 bytes)", worker="worker-1")
    return {"customer": customer, "job": job, "file": file, "log": log, "order": order, "special": special}


def test_every_model_of_the_project_is_registered():
    models = {m._meta.label_lower for app in OUR_APPS for m in apps.get_app_config(app).get_models()}
    assert models - set(REGISTERED) == NOT_REGISTERED


@pytest.mark.parametrize("label", REGISTERED)
def test_changelist_loads(admin_client, sample, label):
    model = apps.get_model(label)
    response = admin_client.get(admin_url(model, "changelist"))
    assert response.status_code == 200


# Who may add what by hand in the admin (SPEC 2, 7, 9, 13 and the product's rules), written down here rather than read
# from the admin: configuration is what people set up by hand, everything else comes in by other ways or is what
# the hub records as it works.
ADDABLE = {
    # Django's own users and groups: who may do what (SPEC 13).
    "auth.group",
    "auth.user",
    # Configuration: connections, import and export groups and their descriptors (SPEC 2), webhook subscriptions,
    # order exporters and the export flags each transition sets (SPEC 7).
    "impex.connection",
    "impex.datadescriptor",
    "impex.datagroup",
    "impex.webhooksubscription",
    "orders.exporter",
    "orders.transitionflag",
    # django-q2's schedules (superusers only, as all of django-q2's pages).
    "django_q.schedule",
}
# SPEC 13: django-q2's own pages (schedules, tasks) are for superusers only, whatever permissions others hold.
SUPERUSERS_ONLY_APPS = {"django_q"}
# No add page for anyone (403), whatever permissions they hold:
# - synced records (customers, products, variants, prices, price lists, stock, special orders and their lines and
#   events, orders, their lines and shipments): the reference systems are the source of truth; records come in by
#   import, the HTTP API or django-import-export's import on the entity's page (SPEC 5, 10, 13);
# - import jobs: a job starts with "Upload and import" (SPEC 13, run_import), a scan or a command, never as an empty
#   form; and what the hub records as it works: files, chunks, events, row errors, the ledger of imported names,
#   inbox files, problems, sync logs and errors, record events, export runs, sent files, webhook deliveries, order
#   export runs and feed events (SPEC 8, 12);
# - API tokens: issued by `impex_connection CODE --new-token`, printed once and stored only as a hash (SPEC 9);
# - django-axes' login records and django-q2's tasks and queue: written by those libraries.


def test_every_addable_model_is_registered():
    assert ADDABLE <= set(REGISTERED)


@pytest.fixture
def every_permission(django_user_model):
    """A staff user, not a superuser, holding every permission there is."""
    user = django_user_model.objects.create_user("staff-all", is_staff=True)
    user.user_permissions.add(*Permission.objects.all())
    return user


@pytest.mark.parametrize("who", ["superuser", "staff holding every permission"])
@pytest.mark.parametrize("label", REGISTERED)
def test_add_pages_are_served_to_those_who_may_add(client, admin_user, every_permission, who, label):
    model = apps.get_model(label)
    superuser = who == "superuser"
    may_open = superuser or model._meta.app_label not in SUPERUSERS_ONLY_APPS
    may_add = may_open and label in ADDABLE
    client.force_login(admin_user if superuser else every_permission)

    add = client.get(admin_url(model, "add"))
    changelist = client.get(admin_url(model, "changelist"))

    assert add.status_code == (200 if may_add else 403)
    if may_add:
        assert re.search(rf'<form [^>]*method="post" id="{model._meta.model_name}_form"', add.text)
    assert changelist.status_code == (200 if may_open else 403)
    if may_open:
        assert (f'href="{admin_url(model, "add")}"' in changelist.text) == may_add


@pytest.mark.parametrize("label", [label for label in REGISTERED if label.split(".")[0] in OUR_APPS])
def test_change_page_loads(admin_client, sample, label):
    model = apps.get_model(label)
    obj = model.objects.order_by("pk").first()
    response = admin_client.get(admin_url(model, "change", obj.pk))
    assert response.status_code == 200


def test_changelist_search_finds_by_external_id_and_email(admin_client, sample):
    url = admin_url(Customer, "changelist")

    by_id = admin_client.get(url, {"q": "C1"})
    by_email = admin_client.get(url, {"q": "parent@example"})

    assert [c.customer_id for c in by_id.context["cl"].result_list] == ["C1"]
    assert [c.customer_id for c in by_email.context["cl"].result_list] == ["C0"]


def test_connection_change_page(admin_client, kore_connection):
    response = admin_client.get(admin_url(Connection, "change", kore_connection.pk))

    assert response.status_code == 200
    assert "INT1" in response.text
    assert "import jobs" in response.text


def test_connection_needs_the_name_part_of_its_convention(admin_client):
    response = admin_client.post(
        admin_url(Connection, "add"),
        {
            "code": "pos",
            "convention": "bspk",
            "timezone": "Mars/Olympus",
            "interval_minutes": 5,
            "sequence_wait_alert_minutes": 60,
            "active": "on",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "company_name" in errors
    assert "timezone" in errors
    assert not Connection.objects.filter(code="pos").exists()


def test_builtin_descriptor_shows_its_columns_in_order(admin_client):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")

    response = admin_client.get(admin_url(DataDescriptor, "change", descriptor.pk))

    assert response.status_code == 200
    forms = response.context["inline_admin_formsets"][0].formset.forms
    assert len(forms) == 12
    assert [f.instance.name for f in forms][:2] == ["customer_id", "email"]
    assert [f.instance.position for f in forms] == sorted(f.instance.position for f in forms)


def test_builtin_descriptor_cannot_be_deleted_nor_renamed(admin_client):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")

    page = admin_client.get(admin_url(DataDescriptor, "change", descriptor.pk))
    formset = page.context["inline_admin_formsets"][0].formset
    data = post_data(page.context["adminform"].form, formset.management_form, *formset.forms)
    data.update({"code": "RENAMED", "_save": "Save"})

    response = admin_client.post(admin_url(DataDescriptor, "change", descriptor.pk), data)

    assert admin_client.get(admin_url(DataDescriptor, "delete", descriptor.pk)).status_code == 403
    assert response.status_code == 200
    assert "cannot change" in str(response.context["adminform"].form.errors["code"])
    assert DataDescriptor.objects.filter(code="KS_CUSTOMERS").exists()
    assert not DataDescriptor.objects.filter(code="RENAMED").exists()


def post_data(*forms_):
    """The POST data a browser would send for unchanged forms (booleans as checkboxes)."""
    data = {}
    for form in forms_:
        for bound in form:
            value = bound.value()
            if isinstance(bound.field, django_forms.BooleanField):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = value
    return data


def test_save_as_new_copies_a_builtin_descriptor_with_its_columns(admin_client):
    builtin = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    page = admin_client.get(admin_url(DataDescriptor, "change", builtin.pk))
    formset = page.context["inline_admin_formsets"][0].formset
    data = post_data(page.context["adminform"].form, formset.management_form, *formset.forms)
    data.update({"code": "MY_CUSTOMERS", "delimiter": ";", "_saveasnew": "Save as new"})

    response = admin_client.post(admin_url(DataDescriptor, "change", builtin.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    copy = DataDescriptor.objects.get(code="MY_CUSTOMERS")
    assert (copy.builtin, copy.delimiter, copy.entity) == (False, ";", "customer")
    assert list(copy.columns.values_list("name", flat=True)) == list(builtin.columns.values_list("name", flat=True))
    assert builtin.columns.count() == 12


def test_export_group_needs_exactly_one_descriptor(admin_client):
    ids = list(DataDescriptor.objects.filter(code__in=["KS_ORDERS", "KS_CUSTOMERS"]).values_list("pk", flat=True))

    response = admin_client.post(
        admin_url(DataGroup, "add"), {"code": "out", "name": "Out", "direction": "export", "descriptors": ids}
    )

    assert response.status_code == 200
    assert "descriptors" in response.context["adminform"].form.errors


def test_import_job_change_page_shows_progress_duration_and_files(admin_client, sample):
    response = admin_client.get(admin_url(ImportJob, "change", sample["job"].pk))

    assert response.status_code == 200
    assert 'id="job-rows-done">2 of 4<' in response.text
    assert 'id="job-files-done">1 of 1 done<' in response.text
    assert "1:30" in response.text
    assert "DT_0000001_INT1_KS_CUSTOMERS.NET" in response.text
    assert "1 row error<" in response.text
    assert not response.context["has_change_permission"]


def test_import_jobs_cannot_be_added_or_changed(admin_client, sample):
    job = sample["job"]

    assert admin_client.get(admin_url(ImportJob, "add")).status_code == 403
    admin_client.post(admin_url(ImportJob, "change", job.pk), {"status": "failed"})

    job.refresh_from_db()
    assert job.status == "completed"


def test_deleting_a_job_confirms_with_counts_and_takes_its_files_and_errors(admin_client, sample):
    job = sample["job"]
    url = admin_url(ImportJob, "delete", job.pk)

    confirm = admin_client.get(url)
    done = admin_client.post(url, {"post": "yes"})

    assert confirm.status_code == 200
    assert {"1 import job", "1 import file", "1 import chunk", "1 row error"} <= set(confirm.context["deleted_objects"])
    assert done.status_code == 302
    assert not ImportJob.objects.filter(pk=job.pk).exists()
    assert not RowError.objects.filter(file__job_id=job.pk).exists()
    assert ImportedFileName.objects.get().file is None


def test_import_file_shows_only_the_first_row_errors(admin_client, sample):
    file = sample["file"]
    RowError.objects.bulk_create(
        RowError(file=file, row=i, column="email", message="bad") for i in range(10, 10 + INLINE_ROW_LIMIT + 50)
    )

    response = admin_client.get(admin_url(ImportFile, "change", file.pk))

    assert response.status_code == 200
    error_formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.model is RowError)
    assert len(error_formset.formset.forms) == INLINE_ROW_LIMIT
    assert f"all {INLINE_ROW_LIMIT + 51} row errors" in response.text


def test_row_errors_filter_by_job_and_file(admin_client, sample):
    other_job = ImportJob.objects.create()
    other_file = ImportFile.objects.create(job=other_job, name="other.csv")
    RowError.objects.create(file=other_file, row=1, message="other")
    url = admin_url(RowError, "changelist")

    by_job = admin_client.get(url, {"job": sample["job"].pk})
    by_file = admin_client.get(url, {"file__id__exact": other_file.pk})

    assert [e.message for e in by_job.context["cl"].result_list] == ["email is required"]
    assert [e.message for e in by_file.context["cl"].result_list] == ["other"]


def test_sync_log_shows_its_open_errors(admin_client, sample):
    response = admin_client.get(admin_url(SyncLog, "changelist"))

    assert [log.open_error_count for log in response.context["cl"].result_list] == [1]
    assert "C9" in admin_client.get(admin_url(SyncLog, "change", sample["log"].pk)).text


def test_an_order_and_its_state_are_read_only(admin_client, sample):
    response = admin_client.get(admin_url(Order, "change", sample["order"].pk))

    assert response.context["adminform"].form.fields == {}
    assert "state" in response.context["adminform"].readonly_fields
    assert "the reference systems are the source of truth" in response.text


def test_anonymous_and_non_staff_users_are_sent_to_login(client, django_user_model):
    url = admin_url(Customer, "changelist")
    anonymous = client.get(url)
    client.force_login(django_user_model.objects.create_user("shopper", password="x"))

    non_staff = client.get(url)

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous.url
    assert non_staff.status_code == 302 and "/admin/login/" in non_staff.url


def test_staff_without_permission_is_forbidden(client, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(staff)

    assert client.get(admin_url(Customer, "changelist")).status_code == 403
    assert client.get(admin_url(ImportJob, "changelist")).status_code == 403


def test_staff_with_view_permission_reads_jobs_but_cannot_delete_them(client, django_user_model, sample):
    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_importjob", "delete_importjob"]))
    client.force_login(staff)

    assert client.get(admin_url(ImportJob, "change", sample["job"].pk)).status_code == 200
    assert client.get(admin_url(ImportJob, "delete", sample["job"].pk)).status_code == 403


def test_a_job_page_counts_row_errors_apart_from_rejected_files(admin_client, kore_connection, tmp_path):
    from impex.tests.helpers import customer_row, run_import, write_kore

    rows = [customer_row("C1"), customer_row("C2", email=""), customer_row("C3", active="maybe")]
    bad = tmp_path / "ERP_0000009_INT1_KS_NOTHING.NET"
    bad.write_text("customer_id\temail\nC9\tc9@example.com\n", encoding="utf-8")
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows), bad)
    job = ImportJob.objects.get()

    page = admin_client.get(admin_url(ImportJob, "change", job.pk))

    assert page.status_code == 200
    assert "2 row errors and 1 rejected file" in page.text
    assert "ERP_0000009_INT1_KS_NOTHING.NET: rejected" in page.text  # the log, one event a line
