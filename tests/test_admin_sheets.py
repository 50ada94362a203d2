"""Sheets on the entity pages: django-import-export's upload, preview and confirm run the record pipeline's rules,
and its exports are formatted as the descriptors write them, with formulas neutralised."""

import csv
import html
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import NoReverseMatch
from import_export.admin import ImportMixin

from impex.builtin import column_names
from impex.formats.writers import neutralise_cell
from impex.models import DataDescriptor
from orders.models import Order, OrderLine, Shipment
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
)
from tests.admin_helpers import add_rows, admin_url, table_snapshot

WITH_IMPORT = sorted(
    m._meta.label_lower
    for m, model_admin in admin.site._registry.items()
    if m._meta.app_label in ("syncapp", "orders") and isinstance(model_admin, ImportMixin)
)
DESCRIPTOR_OF = {
    Customer: "KS_CUSTOMERS",
    ProductVariant: "KS_PRODUCTS",
    StockLevel: "KS_INVENTORY",
    Price: "KS_PRICES",
    Order: "KS_ORDERS",
    OrderLine: "KS_ORDER_LINES",
    Shipment: "KS_SHIPMENTS",
    SpecialOrder: "SPECIAL-ORDERS",
    SpecialOrderLineItem: "SPECIAL-ORDER-LINE-ITEMS",
    SpecialOrderEvent: "SPECIAL-ORDER-EVENTS",
}
CSV_FORMAT, TSV_FORMAT = "0", "1"


def sheet(text, name="sheet.csv"):
    """An uploaded sheet."""
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def preview(client, model, text, *, name="sheet.csv", fmt=CSV_FORMAT):
    """Upload a sheet on model's import page: the dry run that shows what the import would do."""
    upload = sheet(text, name)
    return client.post(admin_url(model, "import"), {"import_file": upload, "format": fmt, "resource": "0"})


def confirm(client, model, page):
    """Confirm the import a preview offered."""
    return client.post(admin_url(model, "process_import"), page.context["confirm_form"].initial)


def refused(page):
    """The refused rows a preview lists: row number -> {column: [messages]} ("__all__" for the whole row)."""
    return {row.number: row.error_dict for row in page.context["result"].invalid_rows}


def totals(page):
    """A preview's counts."""
    t = page.context["result"].totals
    return {"new": t["new"], "updated": t["update"], "unchanged": t["skip"], "refused": t["invalid"]}


def page_text(page):
    """A page's HTML unescaped, with its whitespace runs as single spaces."""
    return " ".join(html.unescape(page.text).split())


def file_errors(page):
    """The errors the import form shows for the uploaded file."""
    return [str(e) for e in page.context["form"].errors.get("import_file", [])]


def export(client, model, fmt=CSV_FORMAT):
    """Download every record of model through its admin export; return the response text."""
    form = client.get(admin_url(model, "export")).context["form"]
    fields = {name: "on" for name, field in form.fields.items() if isinstance(field, forms.BooleanField)}
    response = client.post(admin_url(model, "export"), {"format": fmt, "resource": "0", **fields})
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def exported_rows(client, model):
    """Download model's records as CSV through the admin export and return them as dicts."""
    return list(csv.DictReader(io.StringIO(export(client, model))))


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Hash the test users' passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shirt(db):
    """A product with one variant, SHIRT-M."""
    product = Product.objects.create(product_id="P1", title="Shirt")
    return ProductVariant.objects.create(variant_id="V1", product=product, sku="SHIRT-M")


# The import page


def test_every_entity_with_a_descriptor_imports_and_products_and_price_lists_only_export(admin_client):
    imported = {apps.get_model(label) for label in WITH_IMPORT}

    assert imported == set(DESCRIPTOR_OF)
    for model in (Product, PriceList):
        changelist = admin_client.get(admin_url(model, "changelist"))
        assert "import_link" not in changelist.text
        assert "export_link" in changelist.text
        with pytest.raises(NoReverseMatch):
            admin_url(model, "import")


@pytest.mark.parametrize("model", list(DESCRIPTOR_OF), ids=lambda m: m._meta.model_name)
def test_the_import_page_lists_the_descriptor_columns_and_points_big_files_to_impex_import(admin_client, model):
    response = admin_client.get(admin_url(model, "import"))

    assert response.status_code == 200
    ((_, columns),) = response.context["fields_list"]
    assert columns == list(column_names(DESCRIPTOR_OF[model]))
    assert "impex_import" in response.text
    assert [label for value, label in response.context["form"].fields["format"].choices if value] == ["csv", "tsv"]


def test_a_sheet_over_the_size_limit_is_refused_before_reading(admin_client, db):
    page = preview(admin_client, Customer, "customer_id,email\n" + "C1,a@example.com\n" * 400_000)

    assert page.status_code == 200
    assert "impex_import" in file_errors(page)[0]
    assert "confirm_form" not in page.context
    assert not Customer.objects.exists()


# A bad row is refused alone; the preview lists it and still offers the good rows


def test_customers_sheet_with_a_bad_row_previews_it_and_imports_the_good_rows(admin_client, admin_user, db):
    text = (
        "customer_id,email,first_name,discount_percentage,parent_customer_id,active\n"
        "C2,bob@example.com,Bob,,C1,false\n"
        'C3,cy@example.com,Cy,"12,5",,Y\n'
        "C1,ann@example.com,Ann,5.5,,Y\n"
    )

    page = preview(admin_client, Customer, text, name="customers.csv")

    assert page.status_code == 200
    assert refused(page) == {3: {"discount_percentage": ["'12,5' is not a decimal number (use a dot for decimals)"]}}
    assert totals(page) == {"new": 2, "updated": 0, "unchanged": 0, "refused": 1}
    assert "confirm_form" in page.context
    assert "1 row will be refused" in page_text(page)
    assert "'12,5' is not a decimal number" in page_text(page)
    assert not Customer.objects.exists()
    assert not LogEntry.objects.exists()

    done = confirm(admin_client, Customer, page)

    assert done.status_code == 302
    bob, ann = Customer.objects.get(customer_id="C2"), Customer.objects.get(customer_id="C1")
    assert list(Customer.objects.values_list("customer_id", flat=True)) == ["C1", "C2"]
    assert (ann.email, ann.discount_percentage, ann.active, ann.parent) == (
        "ann@example.com",
        Decimal("5.5"),
        True,
        None,
    )
    assert (bob.parent, bob.active, bob.connection) == (ann, False, None)
    (message,) = [str(m) for m in get_messages(done.wsgi_request)]
    assert message == "Import finished (customers): 2 new, 0 updated, 0 unchanged, 1 refused."
    (entry,) = LogEntry.objects.all()
    assert (entry.user, entry.object_repr, entry.content_type.model) == (admin_user, "customers.csv", "customer")
    assert entry.get_change_message() == "Imported the sheet customers.csv: 2 new, 0 updated, 0 unchanged, 1 refused."


def test_prices_sheet_refuses_an_unknown_sku_and_creates_its_price_lists(admin_client, shirt):
    text = "price_list,sku,currency,price,min_quantity\nRETAIL,SHIRT-M,EUR,17.50,\nRETAIL,NOPE,EUR,9,\n"

    page = preview(admin_client, Price, text)

    assert refused(page) == {3: {"sku": ["unknown product variant 'NOPE'"]}}
    assert "confirm_form" in page.context
    assert not PriceList.objects.exists()

    confirm(admin_client, Price, page)

    price = Price.objects.get()
    assert (price.price_list.code, price.variant, price.min_quantity, price.price) == (
        "RETAIL",
        shirt,
        1,
        Decimal("17.50"),
    )
    assert list(PriceList.objects.values_list("code", flat=True)) == ["RETAIL"]


def test_order_lines_sheet_refuses_a_line_of_an_unknown_order(admin_client, shirt):
    customer = Customer.objects.create(customer_id="C1", email="c1@example.com")
    order_date = datetime(2026, 11, 1, tzinfo=UTC)
    Order.objects.create(order_id="O1", customer=customer, order_date=order_date, currency="EUR", total=Decimal("35"))
    text = "order_id,line_no,sku,quantity,unit_price\nO1,1,SHIRT-M,2,17.50\nO9,1,SHIRT-M,1,17.50\nO1,2,SHIRT-M,x,1\n"

    page = preview(admin_client, OrderLine, text)

    assert refused(page) == {
        3: {"order_id": ["unknown order 'O9'"]},
        4: {"quantity": ["'x' is not a whole number"]},
    }
    confirm(admin_client, OrderLine, page)
    assert list(OrderLine.objects.values_list("order__order_id", "line_no", "quantity")) == [("O1", 1, 2)]


def test_special_orders_sheet_refuses_a_bad_choice_and_a_bad_date(admin_client, db):
    text = (
        "special_order_id,store_id,client_id,order_type,status,total_amount,created_at,promised_date\n"
        "SO1,S1,CL1,REPAIR,OPEN,120.00,2026-11-01T09:30:00+01:00,2026-11-20\n"
        "SO2,S1,CL2,REPAIR,LOST,10,2026-11-01T10:00:00Z,\n"
        "SO3,S1,CL3,CUSTOM,OPEN,10,yesterday,2026-02-30\n"
    )

    page = preview(admin_client, SpecialOrder, text)

    assert refused(page) == {
        3: {"status": ["unknown choice 'LOST' (expected one of OPEN, IN_PROGRESS, READY, COMPLETED, CANCELLED)"]},
        4: {
            "created_at": ["'yesterday' is not a date-time (ISO 8601, e.g. 2026-11-01T09:30:00+01:00)"],
            "promised_date": ["'2026-02-30' is not a date (YYYY-MM-DD)"],
        },
    }
    assert "2 rows will be refused" in page_text(page)
    confirm(admin_client, SpecialOrder, page)
    (order,) = SpecialOrder.objects.all()
    assert order.special_order_id == "SO1"
    assert order.ordered_at == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert (order.total_amount, order.promised_date) == (Decimal("120.00"), date(2026, 11, 20))


def test_a_row_with_too_many_cells_and_a_repeated_key_are_refused_alone(admin_client, db):
    text = "customer_id,email\nC1,a@example.com\nC2,b@example.com,extra\nC1,again@example.com\nC3,c@example.com\n"

    page = preview(admin_client, Customer, text)

    assert refused(page) == {
        3: {NON_FIELD_ERRORS: ["row has 3 cells, the header has 2"]},
        4: {"customer_id": ["duplicate key C1 (first at row 2)"]},
    }
    confirm(admin_client, Customer, page)
    assert list(Customer.objects.values_list("customer_id", "email")) == [
        ("C1", "a@example.com"),
        ("C3", "c@example.com"),
    ]


def test_a_sheet_whose_rows_are_all_refused_offers_no_confirmation(admin_client, db):
    page = preview(admin_client, Customer, "customer_id,email\nC1,\n")

    assert refused(page) == {2: {"email": ["a value is required"]}}
    assert "confirm_form" not in page.context
    assert "form" in page.context


def test_the_preview_lists_the_first_200_refused_rows_and_counts_them_all(admin_client, db):
    text = "customer_id,email\nC0,c0@example.com\n" + "".join(f"C{i},\n" for i in range(1, 251))

    page = preview(admin_client, Customer, text)

    assert totals(page)["refused"] == 250
    assert "250 rows will be refused" in page_text(page)
    assert "The first 200 of 250 are listed." in page_text(page)
    assert page_text(page).count("a value is required") == 200


def test_nul_and_control_characters_are_refused_rows(admin_client, db):
    text = "customer_id,email,first_name\nC1,a@example.com,Ann\nC2,b@example.com,B\x00ob\nC3,c@example.com,C\x01y\n"

    page = preview(admin_client, Customer, text)

    rows = refused(page)
    assert set(rows) == {3, 4}
    assert all(list(errors) == ["first_name"] for errors in rows.values())
    assert all("control character" in errors["first_name"][0] for errors in rows.values())
    confirm(admin_client, Customer, page)
    assert list(Customer.objects.values_list("customer_id", flat=True)) == ["C1"]


def test_a_datetime_beyond_year_9999_in_utc_is_a_refused_row(admin_client, db):
    text = (
        "special_order_id,store_id,client_id,order_type,status,created_at\n"
        "SO1,S1,CL1,REPAIR,OPEN,2026-11-01T09:30:00+01:00\n"
        "SO2,S1,CL1,REPAIR,OPEN,9999-12-31T23:59:59-05:00\n"
    )

    page = preview(admin_client, SpecialOrder, text)

    ((row, errors),) = refused(page).items()
    assert row == 3
    assert list(errors) == ["created_at"]
    assert "9999" in errors["created_at"][0]
    confirm(admin_client, SpecialOrder, page)
    assert list(SpecialOrder.objects.values_list("special_order_id", flat=True)) == ["SO1"]


# A sheet refused whole writes nothing


def test_an_unknown_column_refuses_the_sheet_and_writes_nothing(admin_client, db):
    Customer.objects.create(customer_id="C1", email="old@example.com")
    before = table_snapshot()

    page = preview(admin_client, Customer, "customer_id,email,shoe_size\nC1,new@example.com,42\nC2,b@example.com,40\n")

    assert page.status_code == 200
    (error,) = file_errors(page)
    assert error.startswith("unknown column 'shoe_size' (descriptor KS_CUSTOMERS has: customer_id, email,")
    assert "confirm_form" not in page.context and "result" not in page.context
    assert table_snapshot() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"customer_id,email,email\nC1,a@example.com,b@example.com\n", 'the header has the column "email" twice'),
        (b'customer_id,email\nC1,"a@example.com\nC2,b@example.com\n', "unterminated quote in row 2"),
        (b"customer_id,email,first_name\nC1,a@example.com,Jos\xe9\n", "not valid UTF-8"),
    ],
    ids=["repeated column", "unterminated quote", "not utf-8"],
)
def test_a_sheet_the_reader_refuses_is_a_clear_form_error(admin_client, db, content, message):
    upload = SimpleUploadedFile("customers.csv", content, content_type="text/csv")

    page = admin_client.post(admin_url(Customer, "import"), {"import_file": upload, "format": "0", "resource": "0"})

    (error,) = file_errors(page)
    assert message in error
    assert "confirm_form" not in page.context
    assert not Customer.objects.exists()


def test_the_preview_writes_nothing(admin_client, db):
    add_rows(2, "a")
    before = table_snapshot()
    text = (
        "customer_id,email,first_name\n"
        "Ca000,changed@example.com,Changed\nCa001,a001@example.com,\nNEW,n@example.com,N\n"
    )

    page = preview(admin_client, Customer, text)

    assert totals(page) == {"new": 1, "updated": 1, "unchanged": 1, "refused": 0}
    assert "confirm_form" in page.context
    assert "1 unchanged row will not be written" in page_text(page)
    assert table_snapshot() == before
    assert not LogEntry.objects.exists()


# The rules of a file


def test_absent_columns_are_left_alone(admin_client, db):
    Customer.objects.create(
        customer_id="C1",
        email="ann@example.com",
        first_name="Ann",
        company_name="Lee Ltd",
        discount_percentage=Decimal("5"),
        payment_on_account=True,
        active=False,
    )
    SpecialOrder.objects.create(
        special_order_id="SO1",
        store_id="S1",
        client_id="CL1",
        order_type="REPAIR",
        status="OPEN",
        description="Resize the ring",
        ordered_at=datetime(2026, 11, 1, tzinfo=UTC),
    )

    customers = preview(admin_client, Customer, "customer_id,email,last_name\nC1,ann@example.com,Lee\n")
    confirm(admin_client, Customer, customers)
    specials = preview(
        admin_client,
        SpecialOrder,
        "special_order_id,store_id,client_id,order_type,status,created_at\n"
        "SO1,S1,CL1,REPAIR,READY,2026-11-01T00:00:00Z\n",
    )
    confirm(admin_client, SpecialOrder, specials)

    ann = Customer.objects.get()
    assert (ann.last_name, ann.first_name, ann.company_name) == ("Lee", "Ann", "Lee Ltd")
    assert (ann.discount_percentage, ann.payment_on_account, ann.active) == (Decimal("5"), True, False)
    special = SpecialOrder.objects.get()
    assert (special.status, special.description) == ("READY", "Resize the ring")


def test_an_empty_cell_of_a_present_column_clears_an_optional_field(admin_client, db):
    Customer.objects.create(customer_id="C1", email="a@example.com", first_name="Ann", discount_percentage=Decimal("5"))

    confirm(
        admin_client,
        Customer,
        preview(admin_client, Customer, "customer_id,email,first_name,discount_percentage\nC1,a@example.com,,\n"),
    )

    ann = Customer.objects.get()
    assert (ann.first_name, ann.discount_percentage) == ("", None)


def test_a_variant_sheet_creates_its_products_and_a_tsv_sheet_reads_the_same(admin_client, db):
    text = "product_id\ttitle\tvariant_id\tsku\trrp\nP1\tShirt\tV1\tSHIRT-M\t19.90\nP1\tShirt\tV2\tSHIRT-L\t\n"

    page = preview(admin_client, ProductVariant, text, name="products.tsv", fmt=TSV_FORMAT)
    confirm(admin_client, ProductVariant, page)

    assert totals(page) == {"new": 2, "updated": 0, "unchanged": 0, "refused": 0}
    product = Product.objects.get()
    assert (product.product_id, product.title) == ("P1", "Shirt")
    assert list(product.variants.order_by("sku").values_list("sku", "rrp")) == [
        ("SHIRT-L", None),
        ("SHIRT-M", Decimal("19.90")),
    ]


@pytest.mark.parametrize("model", list(DESCRIPTOR_OF), ids=lambda m: m._meta.model_name)
def test_an_exported_sheet_imports_back_unchanged_and_writes_nothing(admin_client, model):
    add_rows(3, "a")
    text = export(admin_client, model)
    stamps = list(model.objects.order_by("pk").values_list("pk", "updated_at"))
    before = table_snapshot()

    page = preview(admin_client, model, text, name="export.csv")
    done = confirm(admin_client, model, page)

    assert done.status_code == 302
    assert totals(page) == {"new": 0, "updated": 0, "unchanged": model.objects.count(), "refused": 0}
    assert list(model.objects.order_by("pk").values_list("pk", "updated_at")) == stamps
    after = table_snapshot()
    assert after == before


def test_an_exported_tsv_sheet_imports_back_unchanged(admin_client, db):
    add_rows(2, "a")

    page = preview(admin_client, Customer, export(admin_client, Customer, fmt=TSV_FORMAT), fmt=TSV_FORMAT)

    assert totals(page) == {"new": 0, "updated": 0, "unchanged": Customer.objects.count(), "refused": 0}


# Exports


def test_the_export_writes_the_descriptor_columns_in_its_value_formats(admin_client, db):
    parent = Customer.objects.create(customer_id="C0", email="p@example.com")
    Customer.objects.create(
        customer_id="C1",
        email="ann@example.com",
        discount_percentage=Decimal("12.500"),
        payment_on_account=False,
        parent=parent,
    )
    SpecialOrder.objects.create(
        special_order_id="SO1",
        store_id="S1",
        client_id="CL1",
        order_type="REPAIR",
        status="OPEN",
        total_amount=Decimal("120.00"),
        ordered_at=datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
        promised_date=date(2026, 11, 20),
    )

    customers = {row["customer_id"]: row for row in exported_rows(admin_client, Customer)}
    (special,) = exported_rows(admin_client, SpecialOrder)

    assert list(customers["C1"]) == list(column_names("KS_CUSTOMERS"))
    assert customers["C1"]["discount_percentage"] == "12.5"
    assert (customers["C1"]["payment_on_account"], customers["C1"]["active"]) == ("false", "true")
    assert (customers["C0"]["payment_on_account"], customers["C0"]["parent_customer_id"]) == ("", "")
    assert customers["C1"]["parent_customer_id"] == "C0"
    descriptor = DataDescriptor.objects.get(code="SPECIAL-ORDERS")
    assert list(special) == [c.name for c in descriptor.columns.order_by("position")]
    assert special["created_at"] == "2026-11-01T08:30:00+00:00"
    assert (special["promised_date"], special["total_amount"], special["deposit_amount"]) == ("2026-11-20", "120", "")


def test_the_export_neutralises_formulas_but_not_numbers_in_numeric_columns(admin_client, shirt):
    Customer.objects.create(
        customer_id="C1",
        email="@evil",
        first_name="=1+1",
        last_name="-Smith",
        company_name="+49 30 1234",
        group="\tgroup",
        accounting_id="-12",
        discount_percentage=Decimal("-12.5"),
    )
    StockLevel.objects.create(variant=shirt, location="=HYPERLINK(1)", quantity=-3)

    (row,) = exported_rows(admin_client, Customer)
    (stock,) = exported_rows(admin_client, StockLevel)

    assert (row["first_name"], row["email"], row["last_name"]) == ("'=1+1", "'@evil", "'-Smith")
    assert (row["company_name"], row["group"]) == ("'+49 30 1234", "'\tgroup")
    # A number in a text column is text to a spreadsheet's formula parser too; in a numeric column it stays.
    assert row["accounting_id"] == "'-12"
    assert row["discount_percentage"] == "-12.5"
    assert (stock["location"], stock["quantity"]) == ("'=HYPERLINK(1)", "-3")


def test_the_json_export_is_neutralised_too(admin_client, db):
    Customer.objects.create(customer_id="C1", email="=cmd", discount_percentage=Decimal("-1"))

    text = export(admin_client, Customer, fmt="2")

    assert '"email": "\'=cmd"' in text
    assert '"discount_percentage": "-1"' in text


@pytest.mark.parametrize(
    ("value", "numeric", "expected"),
    [
        ("=SUM(A1)", False, "'=SUM(A1)"),
        ("+491234", False, "'+491234"),
        ("+491234", True, "+491234"),
        ("-1e3", True, "-1e3"),
        ("-12.5", False, "'-12.5"),
        ("-", True, "'-"),
        ("@cmd", True, "'@cmd"),
        ("\tx", False, "'\tx"),
        ("\rx", False, "'\rx"),
        ("plain", False, "plain"),
        ("", True, ""),
    ],
)
def test_one_neutraliser_for_every_download(value, numeric, expected):
    assert neutralise_cell(value, numeric=numeric) == expected


def test_a_sheet_edit_keeps_the_record_of_its_connection_so_a_full_file_still_retires_it(
    admin_client, kore_connection, tmp_path
):
    from impex.tests.helpers import customer_row, run_import, write_kore

    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2")], mode="FULL"))

    confirm(admin_client, Customer, preview(admin_client, Customer, "customer_id,email\nC2,new@example.com\n"))

    c2 = Customer.objects.get(customer_id="C2")
    assert (c2.email, c2.connection) == ("new@example.com", kore_connection)
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1")], mode="FULL"))
    assert dict(Customer.objects.values_list("customer_id", "active")) == {"C1": True, "C2": False}
