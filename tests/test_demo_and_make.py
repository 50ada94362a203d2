"""The demo (`impex_demo`) imports every sample file with the engine, and the Makefile and CI script are in place."""

import io
import json
import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from impex.demo import DEMO_CONNECTIONS, SAMPLES_DIR
from impex.models import Connection, ImportedFileName, RowError
from orders.models import Order, OrderLine, Shipment
from syncapp.models import (
    Customer,
    Price,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
)

PASSWORD = "x-test-pass-123"
ROOT = Path(settings.BASE_DIR)
EVENTS_FILE = "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv"
EXPECTED_DESCRIPTORS = {
    "SPECIAL-ORDERS_V2_Acme_202611010900.csv": "SPECIAL-ORDERS",
    "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv": "SPECIAL-ORDER-LINE-ITEMS",
    EVENTS_FILE: "SPECIAL-ORDER-EVENTS",
    "ERP_0000001_INT1_KS_CUSTOMERS.FULL": "KS_CUSTOMERS",
    "ERP_0000002_INT1_KS_PRODUCTS.FULL": "KS_PRODUCTS",
    "ERP_0000003_INT1_KS_INVENTORY.NET": "KS_INVENTORY",
    "ERP_0000003_INT1_KS_PRICES.NET": "KS_PRICES",
    "ERP_0000004_INT1_KS_ORDERS.NET": "KS_ORDERS",
    "ERP_0000004_INT1_KS_ORDER_LINES.NET": "KS_ORDER_LINES",
    "ERP_0000005_INT1_KS_SHIPMENTS.NET": "KS_SHIPMENTS",
}
EXPECTED_ROWS = {
    SpecialOrder: 5,
    SpecialOrderLineItem: 8,
    SpecialOrderEvent: 10,
    Customer: 10,
    Product: 4,
    ProductVariant: 8,
    StockLevel: 10,
    Price: 14,
    Order: 4,
    OrderLine: 8,
    Shipment: 2,
}


def run_demo():
    """Run impex_demo with a fixed password; return its JSON and its whole output."""
    out = io.StringIO()
    call_command("impex_demo", "--json", "--password", PASSWORD, stdout=out)
    text = out.getvalue()
    return json.loads(text.strip().splitlines()[-1]), text


def files_of(payload):
    """All file reports of the demo's jobs, by name."""
    return {f["name"]: f for job in payload["jobs"] for f in job["files"]}


def snapshot():
    """Row counts and last write of every demo entity, and the imported-names ledger."""
    state = {
        model.__name__: (model.objects.count(), max(model.objects.values_list("updated_at", flat=True)))
        for model in EXPECTED_ROWS
    }
    state["ledger"] = ImportedFileName.objects.count()
    return state


@pytest.mark.django_db
def test_demo_imports_every_sample_file(impex_root):
    payload, text = run_demo()

    files = files_of(payload)
    samples = {p.name for p in SAMPLES_DIR.iterdir() if p.is_file() and p.suffix != ".py"}
    assert set(files) == samples == set(EXPECTED_DESCRIPTORS)
    assert {name: (f["status"], f["descriptor"]) for name, f in files.items()} == {
        name: ("imported", code) for name, code in EXPECTED_DESCRIPTORS.items()
    }
    assert {model: model.objects.count() for model in EXPECTED_ROWS} == EXPECTED_ROWS
    events = files[EVENTS_FILE]
    assert (events["created"], events["failed"]) == (10, 1)
    assert [(e["column"], e["value"]) for e in events["errors"]] == [("special_order_id", "SO-9999")]
    assert RowError.objects.count() == 1
    assert "\n" in SpecialOrder.objects.get(special_order_id="SO-1004").description
    assert "Réparation — 修理" in SpecialOrder.objects.get(special_order_id="SO-1003").description
    assert Customer.objects.get(customer_id="C-1007").parent.customer_id == "C-1010"

    acme = Connection.objects.get(code="acme-pos")
    assert (acme.convention, acme.company_name, acme.timezone, acme.contacts) == (
        "bspk",
        "Acme",
        "Europe/London",
        "integration@acme.example",
    )
    assert Connection.objects.get(code="kore-erp").integration_id == "INT1"
    inbox = impex_root / "acme-pos" / "inbox"
    assert acme.inbox == str(inbox)
    assert sorted(p.name for p in inbox.iterdir()) == sorted([*DEMO_CONNECTIONS[0].files, "README.txt"])

    assert f"Admin login: admin / {PASSWORD} at http://127.0.0.1:8000/admin/" in text
    assert Client().login(username="admin", password=PASSWORD)


@pytest.mark.django_db
def test_demo_twice_reports_duplicates_and_changes_nothing():
    run_demo()
    before = snapshot()

    payload, _ = run_demo()

    assert {f["status"] for f in files_of(payload).values()} == {"duplicate"}
    assert snapshot() == before
    assert Connection.objects.count() == 2
    assert Client().login(username="admin", password=PASSWORD)


def test_makefile_and_ci_script_are_in_place():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "lint", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"Makefile has no '{target}' target"
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    assert ci.read_text().count("make test") >= 2
