"""Behaviour of the import rules (SPEC sections 3, 5, 6, 8, 9, 12) through impex_import, on real files."""

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from impex.models import Connection, DataDescriptor, DescriptorColumn, ImportedFileName, ImportFile
from impex.tests.helpers import (
    bspk_name,
    counts,
    customer_row,
    file_named,
    kore_name,
    only_file,
    product_row,
    run_import,
    special_order_row,
    table_text,
    write_bspk,
    write_kore,
    write_raw,
)
from orders.models import Order
from syncapp.models import (
    Customer,
    Price,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
    SyncError,
    SyncLog,
)

NOTHING = {"created": 0, "updated": 0, "unchanged": 0, "retired": 0, "failed": 0}


def totals(**values) -> dict:
    """Return the five counts of a file, zero unless given."""
    return {**NOTHING, **values}


def customers() -> dict:
    """Return every customer as customer_id -> dict of its fields."""
    return {c["customer_id"]: c for c in Customer.objects.values()}


def active_of() -> dict:
    """Return customer_id -> active."""
    return dict(Customer.objects.values_list("customer_id", "active"))


def entity_counts() -> dict:
    """Return how many records each imported table holds."""
    return {
        model.__name__: model.objects.count()
        for model in (
            Customer,
            Product,
            ProductVariant,
            StockLevel,
            Price,
            SpecialOrder,
            SpecialOrderLineItem,
            SpecialOrderEvent,
            Order,
        )
    }


def folder_files(connection: Connection, kind: str, impex_root) -> set[str]:
    """Return the names of the files in a connection's archive or error folder."""
    folder = impex_root / connection.code / kind
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.fixture
def second_kore(db):
    """Another Kore connection, with integration id INT2."""
    return Connection.objects.create(code="kore-two", name="Kore two", convention="kore", integration_id="INT2")


@pytest.fixture
def catalogue(tmp_path, kore_connection):
    """Products P1 (SKU1, SKU2) and P2 (SKU3) imported with sequence 1."""
    path = write_kore(
        tmp_path,
        "KS_PRODUCTS",
        1,
        [product_row("P1", "V1", "SKU1"), product_row("P1", "V2", "SKU2"), product_row("P2", "V3", "SKU3")],
    )
    code, report = run_import(path)
    assert code == 0, report
    return kore_connection


@pytest.fixture
def xml_customers(db):
    """An admin-made copy of KS_CUSTOMERS that reads XML files named *_KS_CUSTOMERS_XML.*."""
    source = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    copy = DataDescriptor.objects.create(
        code="KS_CUSTOMERS_XML",
        name="Kore customers as XML",
        entity=source.entity,
        convention="kore",
        format="xml",
        file_pattern="*KS_CUSTOMERS_XML.*",
        precedence=source.precedence,
        boolean_style=source.boolean_style,
    )
    DescriptorColumn.objects.bulk_create(
        DescriptorColumn(
            descriptor=copy,
            position=c.position,
            name=c.name,
            field=c.field,
            type=c.type,
            required=c.required,
            is_key=c.is_key,
            choices=c.choices,
        )
        for c in source.columns.all()
    )
    return copy


# -- 1. Upsert by key ----------------------------------------------------------------------------


def test_rows_create_records_and_a_later_file_updates_them_by_key(tmp_path, kore_connection):
    first = write_kore(
        tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="Ann"), customer_row("C2", first_name="Bob")]
    )
    second = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        2,
        [
            customer_row("C1", first_name="Anne", email="Anne.NEW@Example.COM"),
            customer_row("C2", first_name="Bob"),
            customer_row("C3", first_name="Cy"),
        ],
    )

    first_code, first_report = run_import(first)
    second_code, second_report = run_import(second)

    assert (first_code, second_code) == (0, 0)
    assert counts(only_file(first_report)) == totals(created=2)
    assert only_file(second_report)["status"] == "imported"
    assert counts(only_file(second_report)) == totals(created=1, updated=1, unchanged=1)
    stored = customers()
    assert sorted(stored) == ["C1", "C2", "C3"]
    assert (stored["C1"]["first_name"], stored["C1"]["email"]) == ("Anne", "Anne.NEW@Example.COM")
    assert stored["C3"]["connection_id"] == kore_connection.pk


def test_bspk_rows_update_special_orders_with_the_values_sent(tmp_path, bspk_connection):
    first = write_bspk(
        tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1", total_amount="100.00", description="Resize")]
    )
    second = write_bspk(
        tmp_path,
        "SPECIAL-ORDERS",
        [special_order_row("SO-1", status="READY", total_amount="80.5", description="Resize and polish")],
        timestamp="202611011200",
    )
    run_import(first)

    code, report = run_import(second)

    assert code == 0
    assert counts(only_file(report)) == totals(updated=1)
    order = SpecialOrder.objects.get(special_order_id="SO-1")
    assert (order.status, order.total_amount, order.description) == ("READY", Decimal("80.5"), "Resize and polish")


# -- 2. Unchanged rows are not written -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["NET", "FULL"])
def test_the_same_customers_again_are_unchanged_and_not_written(tmp_path, kore_connection, mode):
    rows = [
        customer_row(
            "C1",
            first_name="Ann",
            discount_percentage="12.5",
            payment_on_account="true",
            parent_customer_id="C2",
            active="true",
        ),
        customer_row("C2", last_name="Baker", group="VIP", price_list="RETAIL"),
    ]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows, mode=mode))
    before = {c.customer_id: c.updated_at for c in Customer.objects.all()}

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, rows, mode=mode))

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=2)
    assert {c.customer_id: c.updated_at for c in Customer.objects.all()} == before


def test_the_same_products_again_leave_variants_and_products_unwritten(tmp_path, kore_connection):
    rows = [
        product_row("P1", "V1", "SKU1", slug="shirt", cart_image_url="https://img/1.jpg", rrp="19.99"),
        product_row("P1", "V2", "SKU2", options="Colour=Red;Size=M", weight_in_grams="250", position="2"),
        product_row("P2", "V3", "SKU3", restock_date="2026-12-01", status="live"),
    ]
    run_import(write_kore(tmp_path, "KS_PRODUCTS", 1, rows, mode="FULL"))
    variants_before = dict(ProductVariant.objects.values_list("variant_id", "updated_at"))
    products_before = dict(Product.objects.values_list("product_id", "updated_at"))

    code, report = run_import(write_kore(tmp_path, "KS_PRODUCTS", 2, rows, mode="FULL"))

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=3)
    assert dict(ProductVariant.objects.values_list("variant_id", "updated_at")) == variants_before
    assert dict(Product.objects.values_list("product_id", "updated_at")) == products_before


def test_the_same_stock_and_prices_again_are_unchanged(tmp_path, catalogue):
    stock = [{"sku": "SKU1", "location": "A", "quantity": "5"}, {"sku": "SKU2", "location": "A", "quantity": "0"}]
    prices = [
        {"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "10.00"},
        {"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "9.00", "min_quantity": "10"},
    ]
    run_import(write_kore(tmp_path, "KS_INVENTORY", 2, stock), write_kore(tmp_path, "KS_PRICES", 3, prices))
    stock_before = list(StockLevel.objects.values_list("pk", "updated_at"))
    prices_before = list(Price.objects.values_list("pk", "updated_at"))

    code, report = run_import(
        write_kore(tmp_path, "KS_INVENTORY", 4, stock), write_kore(tmp_path, "KS_PRICES", 5, prices)
    )

    assert code == 0
    assert [counts(f) for f in report["files"]] == [totals(unchanged=2), totals(unchanged=2)]
    assert list(StockLevel.objects.values_list("pk", "updated_at")) == stock_before
    assert list(Price.objects.values_list("pk", "updated_at")) == prices_before


# -- 3. Absent columns are left alone; empty cells clear ------------------------------------------


def test_a_file_without_a_column_leaves_that_field_alone(tmp_path, kore_connection):
    run_import(
        write_kore(
            tmp_path,
            "KS_PRODUCTS",
            1,
            [
                product_row(
                    "P1",
                    "V1",
                    "SKU1",
                    slug="shirt",
                    cart_image_url="https://img/1.jpg",
                    weight_in_grams="250",
                    rrp="19.99",
                )
            ],
        )
    )

    code, report = run_import(
        write_kore(tmp_path, "KS_PRODUCTS", 2, [{**product_row("P1", "V1", "SKU1"), "rrp": "24.99"}])
    )

    assert code == 0
    assert counts(only_file(report)) == totals(updated=1)
    variant = ProductVariant.objects.get(variant_id="V1")
    assert variant.cart_image_url == "https://img/1.jpg"
    assert variant.weight_in_grams == 250
    assert variant.rrp == Decimal("24.99")
    assert variant.product.slug == "shirt"


def test_an_empty_cell_in_a_present_column_clears_the_field(tmp_path, kore_connection):
    run_import(
        write_kore(
            tmp_path,
            "KS_PRODUCTS",
            1,
            [
                product_row(
                    "P1", "V1", "SKU1", cart_image_url="https://img/1.jpg", rrp="19.99", restock_date="2026-12-01"
                )
            ],
        ),
        write_kore(
            tmp_path,
            "KS_CUSTOMERS",
            2,
            [customer_row("C1", first_name="Ann", discount_percentage="5", payment_on_account="Y")],
        ),
    )

    code, report = run_import(
        write_kore(
            tmp_path,
            "KS_PRODUCTS",
            3,
            [product_row("P1", "V1", "SKU1", cart_image_url="https://img/1.jpg", rrp="", restock_date="")],
        ),
        write_kore(
            tmp_path,
            "KS_CUSTOMERS",
            4,
            [customer_row("C1", first_name="", discount_percentage="", payment_on_account="")],
        ),
    )

    assert code == 0
    assert [counts(f) for f in report["files"]] == [totals(updated=1), totals(updated=1)]
    variant = ProductVariant.objects.get(variant_id="V1")
    assert (variant.rrp, variant.restock_date, variant.cart_image_url) == (None, None, "https://img/1.jpg")
    customer = Customer.objects.get(customer_id="C1")
    assert (customer.first_name, customer.discount_percentage, customer.payment_on_account) == ("", None, None)


# -- 4. FULL mode retires, NET only upserts -------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [20_000, 1], ids=["whole", "chunked"])
def test_a_full_customers_file_retires_absent_customers_and_a_later_one_brings_them_back(
    tmp_path, kore_connection, settings, chunk_rows
):
    # Chunked: the file's keys are written by its chunks as they apply (FileKey), not at its start.
    settings.IMPEX_CHUNK_ROWS = chunk_rows
    everyone = [customer_row("C1"), customer_row("C2"), customer_row("C3")]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, everyone, mode="FULL"))

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, everyone[:2], mode="FULL"))

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=2, retired=1)
    assert active_of() == {"C1": True, "C2": True, "C3": False}

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, everyone, mode="FULL"))

    assert code == 0
    assert only_file(report)["retired"] == 0
    assert active_of() == {"C1": True, "C2": True, "C3": True}


def test_a_net_file_never_retires(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2")], mode="FULL"))

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1", first_name="Ann")]))

    assert code == 0
    assert counts(only_file(report)) == totals(updated=1)
    assert active_of() == {"C1": True, "C2": True}


@pytest.mark.parametrize("chunk_rows", [20_000, 1], ids=["whole", "chunked"])
def test_a_refused_row_of_a_full_file_does_not_retire_its_record(tmp_path, kore_connection, settings, chunk_rows):
    settings.IMPEX_CHUNK_ROWS = chunk_rows
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", first_name="Bob")]))

    code, report = run_import(
        write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1"), customer_row("C2", email="")], mode="FULL")
    )

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=1, failed=1)
    assert active_of() == {"C1": True, "C2": True}
    assert customers()["C2"]["first_name"] == "Bob"


@pytest.mark.parametrize("chunk_rows", [20_000, 1], ids=["whole", "chunked"])
def test_a_row_of_the_wrong_width_in_a_full_file_is_refused_and_its_record_not_retired(
    tmp_path, kore_connection, settings, chunk_rows
):
    settings.IMPEX_CHUNK_ROWS = chunk_rows
    people = [customer_row(f"C{n}", first_name=f"Name{n}") for n in range(1, 5)]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, people, mode="FULL"))
    path = write_kore(tmp_path, "KS_CUSTOMERS", 2, people[:3], mode="FULL")
    # C3's row gets a cell too many (its key cell stays where the header says), and C4 is left out.
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] += "\textra"
    assert lines[3].startswith("C3\t")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, report = run_import(path)

    assert counts(only_file(report)) == totals(unchanged=2, retired=1, failed=1)
    assert active_of() == {"C1": True, "C2": True, "C3": True, "C4": False}
    assert customers()["C3"]["first_name"] == "Name3"


@pytest.mark.parametrize("chunk_rows", [20_000, 1], ids=["whole", "chunked"])
def test_a_row_of_the_wrong_width_takes_no_key_from_a_later_good_row_of_the_same_record(
    tmp_path, kore_connection, settings, chunk_rows
):
    settings.IMPEX_CHUNK_ROWS = chunk_rows
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C1", first_name="Ann")])
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] += "\textra"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, report = run_import(path)

    assert counts(only_file(report)) == totals(created=1, failed=1)
    assert customers()["C1"]["first_name"] == "Ann"


def test_a_full_file_retires_only_records_of_its_own_connection(tmp_path, kore_connection, second_kore):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C10"), customer_row("C11")], integration="INT2"))
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2")], mode="FULL"))

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1")], mode="FULL"))

    assert code == 0
    assert only_file(report)["retired"] == 1
    assert active_of() == {"C1": True, "C2": False, "C10": True, "C11": True}
    assert set(Customer.objects.filter(connection=second_kore).values_list("customer_id", flat=True)) == {"C10", "C11"}


def test_a_full_products_file_discontinues_absent_variants_and_products_and_brings_them_back(tmp_path, kore_connection):
    everything = [product_row("P1", "V1", "SKU1"), product_row("P1", "V2", "SKU2"), product_row("P2", "V3", "SKU3")]
    run_import(write_kore(tmp_path, "KS_PRODUCTS", 1, everything, mode="FULL"))

    code, report = run_import(write_kore(tmp_path, "KS_PRODUCTS", 2, everything[:1], mode="FULL"))

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=1, retired=2)
    assert dict(ProductVariant.objects.values_list("variant_id", "status")) == {
        "V1": "live",
        "V2": "discontinued",
        "V3": "discontinued",
    }
    assert dict(Product.objects.values_list("product_id", "status")) == {"P1": "live", "P2": "discontinued"}

    code, report = run_import(write_kore(tmp_path, "KS_PRODUCTS", 3, everything, mode="FULL"))

    assert code == 0
    assert set(ProductVariant.objects.values_list("status", flat=True)) == {"live"}
    assert set(Product.objects.values_list("status", flat=True)) == {"live"}


def test_a_full_inventory_file_sets_absent_stock_levels_to_zero(tmp_path, catalogue):
    run_import(
        write_kore(
            tmp_path,
            "KS_INVENTORY",
            2,
            [
                {"sku": "SKU1", "location": "A", "quantity": "5"},
                {"sku": "SKU1", "location": "B", "quantity": "3"},
                {"sku": "SKU2", "location": "A", "quantity": "7"},
            ],
            mode="FULL",
        )
    )

    code, report = run_import(
        write_kore(
            tmp_path,
            "KS_INVENTORY",
            3,
            [{"sku": "SKU1", "location": "A", "quantity": "5"}, {"sku": "SKU1", "location": "B", "quantity": "4"}],
            mode="FULL",
        )
    )

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=1, updated=1, retired=1)
    assert {(s.variant.sku, s.location): s.quantity for s in StockLevel.objects.select_related("variant")} == {
        ("SKU1", "A"): 5,
        ("SKU1", "B"): 4,
        ("SKU2", "A"): 0,
    }


def prices_by_key() -> dict:
    """Return (price list, sku, min quantity) -> price."""
    return {
        (p.price_list.code, p.variant.sku, p.min_quantity): p.price
        for p in Price.objects.select_related("price_list", "variant")
    }


def test_a_full_prices_file_removes_prices_of_its_price_lists_it_no_longer_has(tmp_path, catalogue):
    run_import(
        write_kore(
            tmp_path,
            "KS_PRICES",
            2,
            [
                {"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "10.00"},
                {"price_list": "RETAIL", "sku": "SKU2", "currency": "EUR", "price": "12.00"},
                {"price_list": "WHOLESALE", "sku": "SKU1", "currency": "EUR", "price": "8.00"},
            ],
            mode="FULL",
        )
    )

    code, report = run_import(
        write_kore(
            tmp_path,
            "KS_PRICES",
            3,
            [{"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "10.00"}],
            mode="FULL",
        )
    )

    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=1, retired=1)
    assert prices_by_key() == {("RETAIL", "SKU1", 1): Decimal("10.00"), ("WHOLESALE", "SKU1", 1): Decimal("8.00")}


def test_a_full_prices_file_keeps_prices_another_connection_sent(tmp_path, catalogue, second_kore):
    run_import(
        write_kore(
            tmp_path,
            "KS_PRICES",
            2,
            [{"price_list": "RETAIL", "sku": "SKU1", "currency": "EUR", "price": "10.00"}],
            mode="FULL",
        )
    )
    run_import(
        write_kore(
            tmp_path,
            "KS_PRICES",
            1,
            [{"price_list": "RETAIL", "sku": "SKU3", "currency": "EUR", "price": "30.00"}],
            integration="INT2",
        )
    )

    code, report = run_import(
        write_kore(
            tmp_path,
            "KS_PRICES",
            3,
            [{"price_list": "RETAIL", "sku": "SKU2", "currency": "EUR", "price": "12.00"}],
            mode="FULL",
        )
    )

    assert code == 0
    assert only_file(report)["retired"] == 1
    assert prices_by_key() == {("RETAIL", "SKU2", 1): Decimal("12.00"), ("RETAIL", "SKU3", 1): Decimal("30.00")}


# -- 5. Row errors --------------------------------------------------------------------------------

MODEL_OF = {"KS_CUSTOMERS": Customer, "KS_PRODUCTS": ProductVariant, "SPECIAL-ORDERS": SpecialOrder}
GOOD_ROWS = {
    "KS_CUSTOMERS": [customer_row("C1"), customer_row("C2")],
    "KS_PRODUCTS": [product_row("P1", "V1", "SKU1"), product_row("P2", "V2", "SKU2")],
    "SPECIAL-ORDERS": [special_order_row("SO-1"), special_order_row("SO-2")],
}
ROW_ERRORS = {
    "missing required value": (
        "KS_CUSTOMERS",
        customer_row("C9", email=""),
        "email",
        "",
        "a value is required",
    ),
    "bad integer": (
        "KS_PRODUCTS",
        product_row("P9", "V9", "SKU9", weight_in_grams="heavy"),
        "weight_in_grams",
        "heavy",
        "'heavy' is not a whole number",
    ),
    "comma decimal": (
        "KS_CUSTOMERS",
        customer_row("C9", discount_percentage="12,50"),
        "discount_percentage",
        "12,50",
        "'12,50' is not a decimal number",
    ),
    "bad date": (
        "KS_PRODUCTS",
        product_row("P9", "V9", "SKU9", restock_date="2026-02-30"),
        "restock_date",
        "2026-02-30",
        "'2026-02-30' is not a date",
    ),
    "bad datetime": (
        "SPECIAL-ORDERS",
        special_order_row("SO-9", created_at="01/11/2026 10:00"),
        "created_at",
        "01/11/2026 10:00",
        "'01/11/2026 10:00' is not a date-time",
    ),
    "unknown choice": (
        "SPECIAL-ORDERS",
        special_order_row("SO-9", order_type="FOO"),
        "order_type",
        "FOO",
        "unknown choice 'FOO'",
    ),
    "bad boolean": (
        "KS_CUSTOMERS",
        customer_row("C9", payment_on_account="maybe"),
        "payment_on_account",
        "maybe",
        "'maybe' is not a boolean",
    ),
}


def write_file_of(tmp_path, descriptor: str, rows: list[dict]):
    """Write rows as a Kore (sequence 1) or BSPK file of the descriptor."""
    if descriptor.startswith("KS_"):
        return write_kore(tmp_path, descriptor, 1, rows)
    return write_bspk(tmp_path, descriptor, rows)


@pytest.mark.parametrize("case", list(ROW_ERRORS))
def test_a_bad_row_is_refused_alone_with_row_column_value_and_message(tmp_path, kore_connection, bspk_connection, case):
    descriptor, bad_row, column, value, message = ROW_ERRORS[case]
    good = GOOD_ROWS[descriptor]
    path = write_file_of(tmp_path, descriptor, [good[0], bad_row, good[1]])

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert result["status"] == "imported"
    assert counts(result) == totals(created=2, failed=1)
    assert len(result["errors"]) == 1
    error = result["errors"][0]
    assert (error["row"], error["column"], error["value"]) == (3, column, value)
    assert message in error["message"]
    assert MODEL_OF[descriptor].objects.count() == 2


def test_a_line_item_of_an_unknown_special_order_is_a_row_error(tmp_path, bspk_connection):
    run_import(write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1")]))
    items = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-LINE-ITEMS",
        [
            {"line_item_id": "L1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"},
            {"line_item_id": "L2", "special_order_id": "SO-404", "product_name": "Chain", "quantity": "1"},
            {"line_item_id": "L3", "special_order_id": "SO-1", "product_name": "Clasp", "quantity": "2"},
        ],
        timestamp="202611011100",
    )

    code, report = run_import(items)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=2, failed=1))
    assert result["errors"] == [
        {"row": 3, "column": "special_order_id", "value": "SO-404", "message": "unknown special order 'SO-404'"}
    ]
    assert set(SpecialOrderLineItem.objects.values_list("line_item_id", flat=True)) == {"L1", "L3"}


def test_a_quantity_below_one_is_a_row_error(tmp_path, bspk_connection):
    run_import(write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1")]))
    items = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-LINE-ITEMS",
        [
            {"line_item_id": "L1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "0"},
            {"line_item_id": "L2", "special_order_id": "SO-1", "product_name": "Chain", "quantity": "1"},
        ],
        timestamp="202611011100",
    )

    code, report = run_import(items)

    assert code == 0
    result = only_file(report)
    assert counts(result) == totals(created=1, failed=1)
    assert (result["errors"][0]["row"], result["errors"][0]["column"]) == (2, "quantity")
    assert list(SpecialOrderLineItem.objects.values_list("line_item_id", flat=True)) == ["L2"]


def test_a_key_twice_in_one_batch_refuses_the_later_row(tmp_path, kore_connection):
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [customer_row("C1", first_name="Ann"), customer_row("C2"), customer_row("C1", first_name="Zed")],
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=2, failed=1))
    error = result["errors"][0]
    assert (error["row"], error["column"], error["value"]) == (4, "customer_id", "C1")
    assert "duplicate" in error["message"]
    assert customers()["C1"]["first_name"] == "Ann"


def test_a_key_twice_in_different_batches_refuses_the_later_row(tmp_path, kore_connection, settings):
    settings.IMPEX_BATCH_SIZE = 2
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [
            customer_row("C1", first_name="Ann"),
            customer_row("C2"),
            customer_row("C3"),
            customer_row("C1", first_name="Zed"),
        ],
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=3, failed=1))
    error = result["errors"][0]
    assert (error["row"], error["column"], error["value"]) == (5, "customer_id", "C1")
    assert "duplicate" in error["message"]
    assert customers()["C1"]["first_name"] == "Ann"


def test_rows_with_too_many_or_too_few_cells_are_refused_alone(tmp_path, kore_connection):
    path = write_raw(
        tmp_path,
        kore_name("KS_CUSTOMERS", 1),
        "customer_id\temail\tfirst_name\n"
        "C1\tc1@example.com\tAnn\n"
        "C2\tc2@example.com\n"
        "C3\tc3@example.com\tCy\textra\n"
        "C4\tc4@example.com\tDee\n",
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=2, failed=2))
    assert [e["row"] for e in result["errors"]] == [3, 4]
    assert "2 cells" in result["errors"][0]["message"] and "3" in result["errors"][0]["message"]
    assert "4 cells" in result["errors"][1]["message"]
    assert sorted(customers()) == ["C1", "C4"]


# -- 6. Self references ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [5000, 2])
def test_a_parent_customer_later_in_the_same_file_is_accepted(tmp_path, kore_connection, settings, batch_size):
    settings.IMPEX_BATCH_SIZE = batch_size
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [
            customer_row("C1", parent_customer_id="C4"),
            customer_row("C2", parent_customer_id="C1"),
            customer_row("C3"),
            customer_row("C4"),
        ],
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result), result["errors"]) == ("imported", totals(created=4), [])
    parents = dict(Customer.objects.values_list("customer_id", "parent__customer_id"))
    assert parents == {"C1": "C4", "C2": "C1", "C3": None, "C4": None}


@pytest.mark.parametrize("batch_size", [5000, 2])
def test_a_parent_customer_that_never_comes_refuses_that_row_only(tmp_path, kore_connection, settings, batch_size):
    settings.IMPEX_BATCH_SIZE = batch_size
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [
            customer_row("C1"),
            customer_row("C2", parent_customer_id="C99"),
            customer_row("C3", parent_customer_id="C1"),
            customer_row("C4"),
        ],
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=3, failed=1))
    error = result["errors"][0]
    assert (error["row"], error["column"], error["value"]) == (3, "parent_customer_id", "C99")
    assert "C99" in error["message"]
    assert dict(Customer.objects.values_list("customer_id", "parent__customer_id")) == {
        "C1": None,
        "C3": "C1",
        "C4": None,
    }


@pytest.mark.parametrize("batch_size", [5000, 2])
def test_customers_naming_each_other_in_a_circle_are_written_and_linked(
    tmp_path, kore_connection, settings, batch_size
):
    settings.IMPEX_BATCH_SIZE = batch_size
    rows = [
        customer_row("C1", parent_customer_id="C2"),
        customer_row("C2", parent_customer_id="C1"),
        customer_row("C3", parent_customer_id="C3"),
        customer_row("C4", parent_customer_id="C1"),
    ]

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))

    assert (code, counts(only_file(report))) == (0, totals(created=4))
    parents = dict(Customer.objects.values_list("customer_id", "parent__customer_id"))
    assert parents == {"C1": "C2", "C2": "C1", "C3": "C3", "C4": "C1"}

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, rows))

    assert (code, counts(only_file(report))) == (0, totals(unchanged=4))


def test_parents_in_later_chunks_and_unchanged_children_are_written_once(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 3
    settings.IMPEX_BATCH_SIZE = 2
    rows = [customer_row(f"C{n}", parent_customer_id=f"C{n + 4}" if n < 4 else "") for n in range(8)]

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))

    assert (code, counts(only_file(report))) == (0, totals(created=8))
    stamps = dict(Customer.objects.values_list("customer_id", "updated_at"))
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, rows))
    assert (code, counts(only_file(report))) == (0, totals(unchanged=8))
    assert dict(Customer.objects.values_list("customer_id", "updated_at")) == stamps

    rows[1]["parent_customer_id"] = "C7"
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 3, rows))

    assert (code, counts(only_file(report))) == (0, totals(updated=1, unchanged=7))
    assert Customer.objects.get(customer_id="C1").parent.customer_id == "C7"


# -- 7. Error limits ----------------------------------------------------------------------------------


def test_more_bad_rows_than_the_limit_reject_the_file_and_write_nothing(tmp_path, kore_connection, settings):
    settings.IMPEX_CHUNK_ROWS = 2
    settings.IMPEX_BATCH_SIZE = 1
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(max_error_count=1)
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [
            customer_row("C1"),
            customer_row("C2"),
            customer_row("C3"),
            customer_row("C4", email=""),
            customer_row("C5", email=""),
        ],
    )

    code, report = run_import(path)

    assert code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert "limit" in result["errors"][0]["message"]
    assert Customer.objects.count() == 0
    assert not SyncError.objects.exists()
    assert folder_files(kore_connection, "error", settings.IMPEX_ROOT) == {path.name, f"{path.name}.reason.txt"}


def test_bad_rows_up_to_the_limit_are_refused_alone(tmp_path, kore_connection):
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(max_error_count=1)
    path = write_kore(
        tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email=""), customer_row("C3")]
    )

    code, report = run_import(path)

    assert code == 0
    assert counts(only_file(report)) == totals(created=2, failed=1)


def test_a_share_of_bad_rows_past_the_ratio_rejects_the_file(tmp_path, kore_connection):
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(max_error_ratio=Decimal("0.5"))
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        1,
        [customer_row("C1"), customer_row("C2", email=""), customer_row("C3", email=""), customer_row("C4", email="")],
    )

    code, report = run_import(path)

    assert code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert "limit" in result["errors"][0]["message"]
    assert Customer.objects.count() == 0


# -- 8. File errors ------------------------------------------------------------------------------------


def assert_rejected(code: int, report: dict, fragment: str) -> dict:
    """Check that the one file of the report was rejected with a message holding fragment."""
    result = only_file(report)
    assert code == 1
    assert result["status"] == "rejected"
    assert counts(result) == NOTHING
    assert len(result["errors"]) == 1
    assert result["errors"][0]["row"] is None
    assert fragment in result["errors"][0]["message"], result["errors"][0]["message"]
    return result


def assert_in_error_folder(connection: Connection, name: str, fragment: str, impex_root) -> None:
    """Check that a rejected file sits in the connection's error folder with its reason."""
    folder = impex_root / connection.code / "error"
    assert (folder / name).exists()
    assert fragment in (folder / f"{name}.reason.txt").read_text(encoding="utf-8")
    assert name not in folder_files(connection, "archive", impex_root)


CUSTOMERS_TSV = table_text([customer_row("C1"), customer_row("C2")], delimiter="\t")
ORDERS_CSV = table_text([special_order_row("SO-1")], delimiter=",")

BAD_NAMES = [
    ("kore-erp", "ERP_12345_INT1_KS_CUSTOMERS.NET", "sequence '12345' is not a 6 or 7 digit number"),
    ("kore-erp", "ERP_0000001_INT1_KS_CUSTOMERS.DELTA", "mode 'DELTA' is not FULL or NET"),
    ("kore-erp", "ERP_0000001_INT1_KS_CUSTOMERS", "no mode extension"),
    ("kore-erp", "ERP-1_0000001_INT1_KS_CUSTOMERS.NET", "source 'ERP-1'"),
    ("kore-erp", "ERP_0000001_INT1_KS_NOTHING.NET", "unknown API"),
    ("kore-erp", "ERP_0000001_INT9_KS_CUSTOMERS.NET", "integration 'INT9' does not match"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Acme_20261101.csv", "timestamp '20261101' is not YYYYMMDDHHMM"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Acme_202613011000.csv", "timestamp '202613011000' is not YYYYMMDDHHMM"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Acme_202611011000.txt", "extension '.txt'"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Acme_202611011000.CSV", "lower case"),
    ("acme-pos", "SPECIAL-ORDERS_V2_acme_202611011000.csv", "company 'acme'"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Acme_202611011000_1.csv", "5 underscore-separated parts"),
    ("acme-pos", "SPECIAL-ORDERS_Two_Acme_202611011000.csv", "'Two' is not a version"),
    ("acme-pos", "SPECIAL-ORDERS_V3_Acme_202611011000.csv", "version 'V3' is not supported"),
    ("acme-pos", "SPECIAL-ORDERS_V2_Globex_202611011000.csv", "company 'Globex' does not match"),
    ("acme-pos", "SPECIAL-THINGS_V2_Acme_202611011000.csv", "unknown type 'SPECIAL-THINGS'"),
]


@pytest.mark.parametrize(("connection_code", "name", "fragment"), BAD_NAMES)
def test_a_name_that_does_not_parse_rejects_the_file_saying_which_part_is_wrong(
    tmp_path, kore_connection, bspk_connection, settings, connection_code, name, fragment
):
    content = CUSTOMERS_TSV if connection_code == "kore-erp" else ORDERS_CSV
    path = write_raw(tmp_path, name, content)
    before = entity_counts()

    code, report = run_import(path, connection=connection_code)

    assert_rejected(code, report, fragment)
    assert entity_counts() == before
    assert not ImportedFileName.objects.exists()
    conn = kore_connection if connection_code == "kore-erp" else bspk_connection
    assert_in_error_folder(conn, name, fragment, settings.IMPEX_ROOT)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("customers.tsv", "follows neither the BSPK convention"),
        ("SPECIAL-ORDERS_V2_Globex_202611011000.csv", "no connection has the company 'Globex'"),
        ("ERP_0000001_INT9_KS_CUSTOMERS.NET", "no connection has the integration id 'INT9'"),
        ("SPECIAL-ORDERS_V2_Acme_202613011000.csv", "timestamp '202613011000' is not YYYYMMDDHHMM"),
        ("SPECIAL-ORDERS_V3_Acme_202611011000.csv", "version 'V3' is not supported"),
    ],
)
def test_a_bad_name_without_a_given_connection_is_rejected(tmp_path, kore_connection, bspk_connection, name, fragment):
    path = write_raw(tmp_path, name, ORDERS_CSV if name.endswith(".csv") else CUSTOMERS_TSV)
    before = entity_counts()

    code, report = run_import(path)

    assert_rejected(code, report, fragment)
    assert entity_counts() == before


BAD_CONTENTS = {
    "not UTF-8": (
        b"customer_id\temail\tfirst_name\nC1\tc1@example.com\tAnn\nC2\tc2@example.com\t"
        + "Café".encode("latin-1")
        + b"\n",
        "not valid UTF-8",
    ),
    "missing required header column": (
        b"customer_id\tfirst_name\nC1\tAnn\n",
        "missing required column 'email'",
    ),
    "unknown header column": (
        b"customer_id\temail\tnickname\nC1\tc1@example.com\tAnnie\n",
        "unknown column 'nickname'",
    ),
    "unterminated quotes": (
        b'customer_id\temail\nC1\tc1@example.com\nC2\t"c2@example.com\nC3\tc3@example.com\n',
        "unterminated quote",
    ),
    "empty file": (b"", "empty"),
}


@pytest.mark.parametrize("case", list(BAD_CONTENTS))
def test_a_file_that_cannot_be_read_whole_is_rejected_and_writes_nothing(tmp_path, kore_connection, settings, case):
    content, fragment = BAD_CONTENTS[case]
    path = write_raw(tmp_path, kore_name("KS_CUSTOMERS", 1), content)

    code, report = run_import(path)

    assert_rejected(code, report, fragment)
    assert Customer.objects.count() == 0
    assert not ImportedFileName.objects.exists()
    assert_in_error_folder(kore_connection, path.name, fragment, settings.IMPEX_ROOT)


XML_NAME = "ERP_0000001_INT1_KS_CUSTOMERS_XML.NET"
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE records [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<records>
  <record><customer_id>C1</customer_id><email>c1@example.com</email></record>
  <record><customer_id>C2</customer_id><email>c2@example.com</email><first_name>&lol4;</first_name></record>
</records>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE records [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<records>
  <record><customer_id>C1</customer_id><email>c1@example.com</email><first_name>&secret;</first_name></record>
</records>
"""
MALFORMED_XML = """<?xml version="1.0"?>
<records>
  <record><customer_id>C1</customer_id><email>c1@example.com</email></record>
  <record><customer_id>C2</customer_id><email>c2@example.com</record>
</records>
"""


def test_an_xml_descriptor_imports_records(tmp_path, kore_connection, xml_customers, settings):
    path = write_raw(
        tmp_path,
        XML_NAME,
        '<?xml version="1.0" encoding="UTF-8"?>\n<records>'
        "<record><customer_id>C1</customer_id><email>c1@example.com</email>"
        "<first_name>Zoë &amp; co</first_name></record>"
        "<record><customer_id>C2</customer_id><email>c2@example.com</email></record>"
        "</records>\n",
    )

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["descriptor"], result["status"], counts(result)) == (
        "KS_CUSTOMERS_XML",
        "imported",
        totals(created=2),
    )
    assert customers()["C1"]["first_name"] == "Zoë & co"
    assert folder_files(kore_connection, "archive", settings.IMPEX_ROOT) == {XML_NAME}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (BILLION_LAUGHS, "entity declarations are not allowed"),
        (EXTERNAL_ENTITY, "entity declarations are not allowed"),
        (MALFORMED_XML, "unreadable XML"),
    ],
    ids=["billion laughs", "external entity", "malformed"],
)
def test_unsafe_or_unreadable_xml_is_rejected_and_writes_nothing(
    tmp_path, kore_connection, xml_customers, settings, content, fragment
):
    path = write_raw(tmp_path, XML_NAME, content)

    code, report = run_import(path)

    assert_rejected(code, report, fragment)
    assert Customer.objects.count() == 0
    assert_in_error_folder(kore_connection, XML_NAME, fragment, settings.IMPEX_ROOT)


def test_an_accepted_file_goes_to_the_archive_folder_even_with_row_errors(tmp_path, kore_connection, settings):
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", email="")])

    code, report = run_import(path)

    assert code == 0
    assert only_file(report)["status"] == "imported"
    assert folder_files(kore_connection, "archive", settings.IMPEX_ROOT) == {path.name}
    assert folder_files(kore_connection, "error", settings.IMPEX_ROOT) == set()


# -- 9. Byte order marks and free text ------------------------------------------------------------------


def test_a_kore_file_with_a_byte_order_mark_imports(tmp_path, kore_connection):
    path = write_raw(tmp_path, kore_name("KS_CUSTOMERS", 1), "\ufeff" + CUSTOMERS_TSV)

    code, report = run_import(path)

    assert code == 0
    assert counts(only_file(report)) == totals(created=2)
    assert sorted(customers()) == ["C1", "C2"]


def test_a_file_with_windows_line_endings_imports(tmp_path, kore_connection):
    path = write_raw(tmp_path, kore_name("KS_CUSTOMERS", 1), CUSTOMERS_TSV.replace("\n", "\r\n"))

    code, report = run_import(path)

    assert code == 0
    assert counts(only_file(report)) == totals(created=2)
    assert customers()["C2"]["email"] == "c2@example.com"


def test_a_bspk_file_with_a_byte_order_mark_imports(tmp_path, bspk_connection):
    path = write_raw(tmp_path, bspk_name("SPECIAL-ORDERS"), "\ufeff" + ORDERS_CSV)

    code, report = run_import(path)

    assert code == 0
    assert counts(only_file(report)) == totals(created=1)
    assert SpecialOrder.objects.filter(special_order_id="SO-1").exists()


def test_quoted_free_text_is_stored_exactly(tmp_path, bspk_connection):
    description = 'Resize, polish "gently"\nthen call: 東京の顧客, Привет мир 🎉💍'
    notes = '  Line one, with comma\r\nLine two "quoted" ""twice""\nИтого: 日本語 👍  '
    orders = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1", description=description)])
    items = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-LINE-ITEMS",
        [
            {
                "line_item_id": "L1",
                "special_order_id": "SO-1",
                "product_name": "Ring, gold",
                "quantity": "1",
                "notes": notes,
            },
            {"line_item_id": "L2", "special_order_id": "SO-1", "product_name": "Кольцо", "quantity": "2", "notes": ""},
        ],
    )

    code, report = run_import(orders, items)

    assert code == 0
    assert [f["failed"] for f in report["files"]] == [0, 0]
    assert SpecialOrder.objects.get().description == description
    assert dict(SpecialOrderLineItem.objects.values_list("line_item_id", "notes")) == {"L1": notes, "L2": ""}
    assert SpecialOrderLineItem.objects.get(line_item_id="L2").product_name == "Кольцо"


# -- 10. Each file name is imported once ------------------------------------------------------------------


def test_the_same_name_with_the_same_content_is_a_duplicate_and_changes_nothing(tmp_path, kore_connection):
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="Ann")])
    run_import(path)
    before = list(Customer.objects.values())

    code, report = run_import(path)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("duplicate", NOTHING)
    assert list(Customer.objects.values()) == before


def test_the_same_bspk_name_with_the_same_content_is_a_duplicate(tmp_path, bspk_connection):
    path = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1")])
    run_import(path)

    code, report = run_import(path)

    assert (code, only_file(report)["status"]) == (0, "duplicate")
    assert SpecialOrder.objects.count() == 1


def test_the_same_name_with_other_content_is_rejected_as_a_conflict(tmp_path, kore_connection, settings):
    write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="Ann")])
    run_import(tmp_path / kore_name("KS_CUSTOMERS", 1))
    before = list(Customer.objects.values())
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="Zed"), customer_row("C2")])

    code, report = run_import(path)

    assert_rejected(code, report, "conflict, not imported (send changed data under a new sequence)")
    assert list(Customer.objects.values()) == before


# -- 11. Datetimes and booleans --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-11-01T10:00:00", datetime(2026, 11, 1, 9, 0, tzinfo=UTC)),
        ("2026-07-01T10:00:00", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        ("2026-11-01T10:00:00+05:30", datetime(2026, 11, 1, 4, 30, tzinfo=UTC)),
        ("2026-11-01T10:00:00-03:00", datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
    ],
)
def test_datetimes_are_read_with_their_offset_or_in_the_connection_time_zone(tmp_path, bspk_connection, sent, stored):
    bspk_connection.timezone = "Europe/Paris"
    bspk_connection.save()
    path = write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1", created_at=sent)])

    code, report = run_import(path)

    assert (code, only_file(report)["failed"]) == (0, 0)
    assert SpecialOrder.objects.get().ordered_at == stored


def test_naive_kore_datetimes_are_read_in_the_connection_time_zone(tmp_path, kore_connection):
    kore_connection.timezone = "Europe/Paris"
    kore_connection.save()
    Customer.objects.create(customer_id="CU1", email="cu1@example.com", connection=kore_connection)
    path = write_kore(
        tmp_path,
        "KS_ORDERS",
        1,
        [
            {
                "order_id": "O1",
                "customer_id": "CU1",
                "order_date": "2026-11-01T10:00:00",
                "currency": "EUR",
                "total": "10",
            }
        ],
    )

    code, report = run_import(path)

    assert (code, only_file(report)["failed"]) == (0, 0)
    assert Order.objects.get().order_date == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("Y", True), ("N", False), ("true", True), ("false", False), ("1", True), ("0", False)],
)
def test_booleans_are_read_in_every_style(tmp_path, kore_connection, sent, stored):
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", payment_on_account=sent, active=sent)])

    code, report = run_import(path)

    assert (code, only_file(report)["failed"]) == (0, 0)
    assert Customer.objects.values_list("payment_on_account", "active").get() == (stored, stored)


def test_a_new_customer_without_an_active_column_is_active(tmp_path, kore_connection):
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")]))

    assert code == 0
    assert Customer.objects.get().active is True


def test_dates_are_read_as_year_month_day(tmp_path, kore_connection):
    path = write_kore(tmp_path, "KS_PRODUCTS", 1, [product_row("P1", "V1", "SKU1", restock_date="2026-12-24")])

    code, report = run_import(path)

    assert (code, only_file(report)["failed"]) == (0, 0)
    assert ProductVariant.objects.get().restock_date == date(2026, 12, 24)


# -- 12. Dry run ---------------------------------------------------------------------------------------------


def test_a_dry_run_reports_the_counts_and_writes_nothing(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", first_name="Ann")]))
    before = list(Customer.objects.values())
    path = write_kore(
        tmp_path,
        "KS_CUSTOMERS",
        2,
        [customer_row("C1", first_name="Anne"), customer_row("C2"), customer_row("C3", email="")],
    )

    code, report = run_import(path, dry_run=True)

    assert code == 0
    result = only_file(report)
    assert (result["status"], counts(result)) == ("imported", totals(created=1, updated=1, failed=1))
    assert [e["row"] for e in result["errors"]] == [4]
    assert list(Customer.objects.values()) == before
    assert not ImportedFileName.objects.filter(name=path.name).exists()
    assert not SyncError.objects.exists()
    kore_connection.refresh_from_db()
    assert kore_connection.next_expected_sequence == 2


def test_a_dry_run_of_a_full_file_retires_nothing_and_keeps_the_sync_log(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email=""), customer_row("C2")]))

    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C3")], mode="FULL"), dry_run=True)

    assert code == 0
    assert counts(only_file(report)) == totals(created=1, retired=1)
    assert active_of() == {"C2": True}
    assert set(open_errors(kore_connection)) == {"C1"}
    assert customer_log(kore_connection).last_full_sync is None


def test_after_a_dry_run_the_same_file_imports_for_real(tmp_path, kore_connection):
    path = write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2")])
    run_import(path, dry_run=True)

    code, report = run_import(path)

    assert code == 0
    assert (only_file(report)["status"], counts(only_file(report))) == ("imported", totals(created=2))
    assert sorted(customers()) == ["C1", "C2"]
    assert ImportedFileName.objects.filter(connection=kore_connection, name=path.name).exists()


# -- 13. Sync logs ----------------------------------------------------------------------------------------------


def open_errors(connection: Connection) -> dict:
    """Return the open sync errors of the connection's customers: external id -> message."""
    return dict(
        SyncError.objects.filter(log__connection=connection, log__entity="customer").values_list(
            "external_id", "message"
        )
    )


def customer_log(connection: Connection) -> SyncLog:
    """Return the customers' sync log of a connection."""
    return SyncLog.objects.get(connection=connection, entity="customer")


def test_a_full_file_starts_the_sync_log_over_and_sets_last_full_sync(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email=""), customer_row("C2")]))
    assert set(open_errors(kore_connection)) == {"C1"}
    assert customer_log(kore_connection).last_full_sync is None

    code, report = run_import(
        write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C2"), customer_row("C3", email="")], mode="FULL")
    )

    assert code == 0
    assert set(open_errors(kore_connection)) == {"C3"}
    assert customer_log(kore_connection).last_full_sync is not None


def test_a_net_file_keeps_open_errors_adds_new_ones_and_resolves_clean_ones(tmp_path, kore_connection):
    run_import(
        write_kore(
            tmp_path,
            "KS_CUSTOMERS",
            1,
            [customer_row("C1", email=""), customer_row("C2", email=""), customer_row("C3")],
        )
    )
    assert set(open_errors(kore_connection)) == {"C1", "C2"}

    code, report = run_import(
        write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1"), customer_row("C4", discount_percentage="x")])
    )

    assert code == 0
    errors = open_errors(kore_connection)
    assert set(errors) == {"C2", "C4"}
    assert "discount_percentage" in errors["C4"]
    log = customer_log(kore_connection)
    assert log.last_partial_sync is not None
    assert log.last_full_sync is None


def test_a_sync_log_has_one_open_error_per_external_id(tmp_path, kore_connection):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1", email="")]))

    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1", discount_percentage="12,5")]))

    errors = SyncError.objects.filter(log__connection=kore_connection, external_id="C1")
    assert errors.count() == 1
    assert "discount_percentage" in errors.get().message


def test_sync_logs_are_kept_per_connection(tmp_path, kore_connection, second_kore):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C10", email="")], integration="INT2"))

    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1")], mode="FULL"))

    assert set(open_errors(second_kore)) == {"C10"}
    assert open_errors(kore_connection) == {}


# -- 14. impex_connection and impex_export -------------------------------------------------------------------


def call_json(command: str, *args) -> dict:
    """Run a command with --json and return the JSON of its last line."""
    out = io.StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_impex_connection_creates_then_updates_a_connection(db):
    created = call_json(
        "impex_connection", "erp-two", "--convention", "kore", "--integration", "INT7", "--timezone", "Europe/Paris"
    )
    updated = call_json("impex_connection", "erp-two", "--convention", "kore", "--contacts", "a@x.com, b@y.com")

    assert created == {
        "code": "erp-two",
        "created": True,
        "convention": "kore",
        "company": "",
        "integration": "INT7",
        "inbox": "",
        "timezone": "Europe/Paris",
        "contacts": [],
        "interval": 5,
        "cron": "",
        "scan_seconds": None,
        "scan": True,
        "archive": "",
        "error_folder": "",
        "outbox": "",
        "groups": [],
    }
    assert updated["created"] is False
    assert (updated["integration"], updated["timezone"], updated["contacts"]) == (
        "INT7",
        "Europe/Paris",
        ["a@x.com", "b@y.com"],
    )
    conn = Connection.objects.get(code="erp-two")
    assert (conn.convention, conn.integration_id, conn.contact_list) == ("kore", "INT7", ["a@x.com", "b@y.com"])


def test_impex_connection_creates_a_bspk_connection_that_imports(tmp_path, db):
    created = call_json("impex_connection", "globex-pos", "--convention", "bspk", "--company", "Globex")
    path = write_raw(tmp_path, bspk_name("SPECIAL-ORDERS", company="Globex"), ORDERS_CSV)

    code, report = run_import(path)

    assert (created["created"], created["company"]) == (True, "Globex")
    assert (code, only_file(report)["status"]) == (0, "imported")
    assert SpecialOrder.objects.get().connection.code == "globex-pos"


@pytest.mark.parametrize(
    "args",
    [
        ["--convention", "sap"],
        ["--convention", "kore"],
        ["--convention", "bspk"],
        ["--convention", "kore", "--integration", "INT1", "--timezone", "Mars/Olympus"],
    ],
    ids=["unknown convention", "kore without integration", "bspk without company", "unknown time zone"],
)
def test_impex_connection_refuses_bad_settings(db, args):
    with pytest.raises(CommandError):
        call_command("impex_connection", "bad-one", *args, stdout=io.StringIO())

    assert not Connection.objects.filter(code="bad-one").exists()


def test_impex_export_writes_the_descriptor_columns_and_imports_back_unchanged(tmp_path, kore_connection):
    rows = [
        customer_row(
            "C1",
            first_name="Ann",
            discount_percentage="12.5",
            payment_on_account="true",
            parent_customer_id="C2",
            active="false",
        ),
        customer_row("C2", last_name="Baker", company_name="Baker & Sons, Ltd"),
    ]
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))
    out = tmp_path / "export" / "customers.tsv"

    result = call_json("impex_export", "KS_CUSTOMERS", "--out", str(out))

    assert (result["descriptor"], result["rows"], result["path"]) == ("KS_CUSTOMERS", 2, str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    expected_header = list(
        DataDescriptor.objects.get(code="KS_CUSTOMERS").columns.order_by("position").values_list("name", flat=True)
    )
    assert lines[0].split("\t") == expected_header
    assert len(lines) == 3
    reimport = tmp_path / kore_name("KS_CUSTOMERS", 2)
    out.rename(reimport)
    code, report = run_import(reimport)
    assert code == 0
    assert counts(only_file(report)) == totals(unchanged=2)


def test_an_import_report_names_the_descriptor_of_each_file(tmp_path, kore_connection, catalogue):
    customers_file = write_kore(tmp_path, "KS_CUSTOMERS", 2, [customer_row("C1")])
    stock_file = write_kore(tmp_path, "KS_INVENTORY", 3, [{"sku": "SKU1", "location": "A", "quantity": "1"}])

    code, report = run_import(stock_file, customers_file)

    assert code == 0
    assert file_named(report, customers_file.name)["descriptor"] == "KS_CUSTOMERS"
    assert file_named(report, stock_file.name)["descriptor"] == "KS_INVENTORY"
    assert ImportFile.objects.filter(status="imported").count() == 3
