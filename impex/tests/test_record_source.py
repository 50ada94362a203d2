"""Each record has a source (SPEC section 5, issue 16 L7): the connection whose file or update created it. Files
and single-record updates of other connections change its columns, never its source, so the owner's FULL file
still retires it."""

from decimal import Decimal

import pytest

from impex.models import Connection
from impex.services.tokens import api_token_issue
from impex.tests.helpers import customer_row, only_file, product_row, run_import, write_kore
from syncapp.models import Customer
from syncapp.record_events import record_events_pass
from syncapp.tests.api_helpers import Api


@pytest.fixture
def shop(db):
    """A second Kore connection (integration INT2) that also sends customers."""
    return Connection.objects.create(code="kore-shop", name="Shop", convention="kore", integration_id="INT2")


def sources() -> dict[str, tuple[str, str, bool]]:
    return {c.customer_id: (c.connection.code, c.last_name, c.active) for c in Customer.objects.all()}


def test_another_connection_s_file_changes_columns_never_the_source_and_the_owner_s_full_file_retires(
    tmp_path, kore_connection, shop
):
    (tmp_path / "erp").mkdir()
    (tmp_path / "shop").mkdir()
    rows = [customer_row("C-1", last_name="Erp"), customer_row("C-2", last_name="Erp")]
    assert run_import(write_kore(tmp_path / "erp", "KS_CUSTOMERS", 1, rows, mode="FULL"))[0] == 0

    code, report = run_import(
        write_kore(
            tmp_path / "shop",
            "KS_CUSTOMERS",
            1,
            [customer_row("C-1", last_name="Shop"), customer_row("C-3", last_name="Shop")],
            integration="INT2",
        )
    )

    assert code == 0 and only_file(report)["updated"] == 1 and only_file(report)["created"] == 1
    assert sources() == {
        "C-1": ("kore-erp", "Shop", True),
        "C-2": ("kore-erp", "Erp", True),
        "C-3": ("kore-shop", "Shop", True),
    }

    code, report = run_import(write_kore(tmp_path / "erp", "KS_CUSTOMERS", 2, rows[1:], mode="FULL"))

    assert code == 0 and only_file(report)["retired"] == 1
    assert sources()["C-1"] == ("kore-erp", "Shop", False)
    assert sources()["C-3"] == ("kore-shop", "Shop", True)


def test_another_connection_s_single_record_update_changes_columns_never_the_source(
    tmp_path, client, kore_connection, shop
):
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C-1", last_name="Erp")]))[0] == 0
    api = Api(client, api_token_issue(connection=shop, by="test"))

    assert api.post("/api/events/customers/", {"customer_id": "C-1", "last_name": "Shop"}).status_code == 202
    assert api.post("/api/events/customers/", {"customer_id": "C-9", "email": "c9@example.com"}).status_code == 202
    reports = record_events_pass(by="test")

    assert [(r.record, r.status) for r in reports] == [("C-1", "applied"), ("C-9", "applied")]
    assert sources() == {"C-1": ("kore-erp", "Shop", True), "C-9": ("kore-shop", "", True)}


# -- Two systems, shared customers (issue 17): the POS creates them, the ERP adds its column ---------------------


@pytest.fixture
def pos(db):
    """The POS: a Kore connection (integration POS1) that creates the customers and the catalogue."""
    return Connection.objects.create(code="pos", name="POS", convention="kore", integration_id="POS1")


@pytest.fixture
def erp(db):
    """The ERP: a Kore connection (integration ERP1) that adds accounting ids and creates customers of its own."""
    return Connection.objects.create(code="erp", name="ERP", convention="kore", integration_id="ERP1")


def customers() -> dict[str, tuple[str, str, str, bool]]:
    return {
        c.customer_id: (c.connection.code, c.last_name, c.accounting_id, c.active)
        for c in Customer.objects.select_related("connection")
    }


def send(folder, system: str, api: str, sequence: int, rows: list[dict], *, mode: str = "NET", columns=None) -> dict:
    """Import one file of a system (POS1 or ERP1) and return its report, asserting it went in."""
    (folder / system).mkdir(exist_ok=True)
    path = write_kore(folder / system, api, sequence, rows, mode=mode, integration=system, columns=columns)
    code, report = run_import(path)
    assert code == 0 and only_file(report)["status"] == "imported", report
    return only_file(report)


def test_a_full_file_retires_only_its_own_customers_and_leaves_other_systems_columns_alone(tmp_path, pos, erp):
    pos_rows = [customer_row("C1", last_name="One"), customer_row("C2", last_name="Two")]
    send(tmp_path, "POS1", "KS_CUSTOMERS", 1, pos_rows, mode="FULL")
    erp_rows = [customer_row("C2", accounting_id="ACC-2"), customer_row("C9", accounting_id="ACC-9")]

    assert (send(tmp_path, "ERP1", "KS_CUSTOMERS", 1, erp_rows)["updated"], Customer.objects.count()) == (1, 3)
    assert customers() == {
        "C1": ("pos", "One", "", True),
        "C2": ("pos", "Two", "ACC-2", True),  # the ERP's NET changed a column, not the source
        "C9": ("erp", "", "ACC-9", True),
    }

    assert send(tmp_path, "ERP1", "KS_CUSTOMERS", 2, erp_rows[1:], mode="FULL")["retired"] == 0
    assert customers()["C2"] == ("pos", "Two", "ACC-2", True)  # not the ERP's to retire

    assert send(tmp_path, "POS1", "KS_CUSTOMERS", 2, pos_rows[:1], mode="FULL")["retired"] == 1
    assert customers() == {
        "C1": ("pos", "One", "", True),
        "C2": ("pos", "Two", "ACC-2", False),  # retired by its source; the ERP's accounting id is left alone
        "C9": ("erp", "", "ACC-9", True),
    }

    send(tmp_path, "ERP1", "KS_CUSTOMERS", 3, erp_rows, mode="FULL")
    assert customers()["C2"] == ("pos", "Two", "ACC-2", False)  # nor the ERP's to bring back

    assert send(tmp_path, "POS1", "KS_CUSTOMERS", 3, pos_rows, mode="FULL")["updated"] == 1
    assert customers()["C2"] == ("pos", "Two", "ACC-2", True)  # its source's next FULL brings it back


def test_full_files_retire_only_their_own_variants_stock_levels_and_prices(tmp_path, pos, erp):
    from syncapp.models import Price, ProductVariant, StockLevel

    variants = [product_row("P1", "V1", "SKU-1"), product_row("P1", "V2", "SKU-2")]
    send(tmp_path, "POS1", "KS_PRODUCTS", 1, variants, mode="FULL")
    send(tmp_path, "ERP1", "KS_PRODUCTS", 1, [product_row("P9", "V9", "SKU-9"), {**variants[1], "rrp": "9.50"}])
    stock = [{"sku": "SKU-1", "location": "L1", "quantity": "5"}, {"sku": "SKU-2", "location": "L1", "quantity": "3"}]
    send(tmp_path, "POS1", "KS_INVENTORY", 2, stock, mode="FULL")
    send(tmp_path, "ERP1", "KS_INVENTORY", 2, [{"sku": "SKU-2", "location": "L2", "quantity": "7"}])
    prices = [
        {"price_list": "RETAIL", "sku": sku, "currency": "EUR", "price": "10"} for sku in ("SKU-1", "SKU-2", "SKU-9")
    ]
    send(tmp_path, "POS1", "KS_PRICES", 3, prices[:2], mode="FULL")
    send(tmp_path, "ERP1", "KS_PRICES", 3, prices[2:])

    assert (
        send(tmp_path, "ERP1", "KS_PRODUCTS", 4, variants[:1] + [product_row("P9", "V9", "SKU-9")], mode="FULL")[
            "retired"
        ]
        == 0
    )
    assert (
        send(tmp_path, "ERP1", "KS_INVENTORY", 5, [], mode="FULL", columns=["sku", "location", "quantity"])["retired"]
        == 1
    )  # its own L2 level
    assert send(tmp_path, "ERP1", "KS_PRICES", 6, prices[:1], mode="FULL")["retired"] == 1  # its own SKU-9 price
    assert ProductVariant.objects.get(variant_id="V2").status == "live"
    assert dict(StockLevel.objects.values_list("location", "quantity").filter(variant__sku="SKU-2")) == {
        "L1": 3,
        "L2": 0,
    }

    assert send(tmp_path, "POS1", "KS_PRODUCTS", 4, variants[:1], mode="FULL")["retired"] == 1
    assert send(tmp_path, "POS1", "KS_INVENTORY", 5, stock[:1], mode="FULL")["retired"] == 1
    assert send(tmp_path, "POS1", "KS_PRICES", 6, prices[:1], mode="FULL")["retired"] == 1

    assert dict(ProductVariant.objects.values_list("variant_id", "status")) == {
        "V1": "live",
        "V2": "discontinued",
        "V9": "live",
    }
    assert ProductVariant.objects.get(variant_id="V2").rrp == Decimal("9.50")  # the ERP's column stays
    assert StockLevel.objects.get(variant__sku="SKU-2", location="L1").quantity == 0
    assert sorted(Price.objects.values_list("variant__sku", flat=True)) == ["SKU-1"]
