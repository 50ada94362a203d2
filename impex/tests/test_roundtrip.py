"""Export-then-import round trips of every built-in descriptor, in CSV/TSV and XML."""

import json

import pytest
from django.core.management import call_command

from impex.models import DataDescriptor
from orders.models import Order, OrderLine, Shipment
from syncapp.models import Customer, Price, ProductVariant, SpecialOrder, SpecialOrderEvent, StockLevel

BSPK = {
    "SPECIAL-ORDERS": [
        "special_order_id,store_id,client_id,associate_id,order_type,status,description,currency,deposit_amount,"
        "total_amount,created_at,promised_date",
        'SO1,ST1,CL1,A1,REPAIR,OPEN,"Resize, polish ""gold"" ring\nsecond line: 修理 — ремонт 💍",EUR,10.50,'
        "120.00,2026-11-01T10:00:00+01:00,2026-11-20",
        "SO2,ST1,CL2,,CUSTOM,READY,,EUR,,99.99,2026-11-02T09:30:00Z,",
    ],
    "SPECIAL-ORDER-LINE-ITEMS": [
        "line_item_id,special_order_id,sku,product_name,quantity,unit_price,notes",
        'LI1,SO1,SKU-1,"Ring, gold",1,120.00,"=not a formula for other systems"',
        "LI2,SO2,,Custom pendant,2,,",
    ],
    "SPECIAL-ORDER-EVENTS": [
        "event_id,special_order_id,event_type,event_at,associate_id,note",
        "EV1,SO1,CREATED,2026-11-01T10:00:00+01:00,A1,",
        'EV2,SO1,NOTE,2026-11-01T11:00:00+01:00,A1,"Client said: ""no rush"""',
    ],
}

KORE = {
    "KS_CUSTOMERS": [
        "customer_id\temail\tfirst_name\tlast_name\tcompany_name\tgroup\taccounting_id\tprice_list\t"
        "discount_percentage\tpayment_on_account\tparent_customer_id\tactive",
        "C1\tc1@example.com\tÅsa\tÖberg\tNordic AB\ttrade\tACC1\tTRADE\t12.5\ttrue\t\ttrue",
        "C2\tc2@example.com\tJun\t山田\t\tretail\t\tRETAIL\t\tfalse\tC1\tfalse",
    ],
    "KS_PRODUCTS": [
        "product_id\ttitle\tslug\tstatus\tvariant_id\tsku\tweight_in_grams\tposition\tcart_image_url\toptions\t"
        "rrp\trestock_date",
        "P1\tShirt\tshirt\tlive\tV1\tSKU-1\t200\t1\thttps://img.example/1.jpg\tColour=Red;Size=M\t19.90\t",
        "P1\tShirt\tshirt\tlive\tV2\tSKU-2\t210\t2\t\tColour=Red;Size=L\t19.90\t2026-12-01",
    ],
    "KS_INVENTORY": ["sku\tlocation\tquantity\trestock_date", "SKU-1\tWH1\t5\t", "SKU-2\tWH1\t0\t2026-12-01"],
    "KS_PRICES": [
        "price_list\tsku\tcurrency\tprice\tmin_quantity",
        "RETAIL\tSKU-1\tEUR\t19.90\t1",
        "RETAIL\tSKU-1\tEUR\t17.50\t10",
        "TRADE\tSKU-2\tEUR\t12.00\t1",
    ],
    "KS_ORDERS": [
        "order_id\tcustomer_id\torder_date\tcurrency\ttotal\tshipping_method\tship_to_name\tship_to_line1\t"
        "ship_to_city\tship_to_postcode\tship_to_country",
        "O1\tC1\t2026-11-03T08:00:00+00:00\tEUR\t39.80\tDHL\tÅsa Öberg\tStorgatan 1\tStockholm\t111 22\tSE",
    ],
    "KS_ORDER_LINES": [
        "order_id\tline_no\tsku\tquantity\tunit_price",
        "O1\t1\tSKU-1\t1\t19.90",
        "O1\t2\tSKU-2\t1\t19.90",
    ],
    "KS_SHIPMENTS": [
        "shipment_id\torder_id\tcarrier\ttracking_number\tshipped_at\tline_nos",
        "SH1\tO1\tDHL\tJD000111\t2026-11-04T12:00:00+00:00\t1;2",
    ],
}


def run_import(*paths, expect_exit=0):
    """Run impex_import with --json and return the parsed files list."""
    from io import StringIO

    out = StringIO()
    code = 0
    try:
        call_command("impex_import", *[str(p) for p in paths], "--json", stdout=out)
    except SystemExit as exc:
        code = exc.code
    assert code == expect_exit, out.getvalue()
    return json.loads(out.getvalue().strip().splitlines()[-1])["files"]


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def loaded(tmp_path, bspk_connection, kore_connection):
    """Import one file of every built-in descriptor."""
    paths = [write(tmp_path / f"{code}_V2_Acme_202611010900.csv", lines) for code, lines in BSPK.items()]
    paths += [write(tmp_path / f"ERP_0000001_INT1_{code}.NET", lines) for code, lines in KORE.items()]
    files = run_import(*paths)
    assert {f["status"] for f in files} == {"imported"}
    assert sum(f["failed"] for f in files) == 0, files
    return tmp_path


def snapshot():
    """Return the data of every entity, to compare before and after a round trip."""
    return [
        list(m.objects.order_by("pk").values())
        for m in (
            Customer,
            ProductVariant,
            StockLevel,
            Price,
            SpecialOrder,
            SpecialOrderEvent,
            Order,
            OrderLine,
            Shipment,
        )
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("code", list(BSPK) + list(KORE))
def test_export_then_import_changes_nothing(loaded, tmp_path, code):
    before = snapshot()
    if code in BSPK:
        name = f"{code}_V2_Acme_202611020900.csv"
    else:
        name = f"ERP_0000002_INT1_{code}.NET"
    out = tmp_path / "export" / name
    call_command("impex_export", code, "--out", str(out), stdout=open("/dev/null", "w"))
    header = out.read_text(encoding="utf-8").splitlines()[0]
    expected = [c.name for c in DataDescriptor.objects.get(code=code).columns.all()]
    assert header.split("\t" if code in KORE else ",") == expected

    (result,) = run_import(out)

    rows = len((BSPK | KORE)[code]) - 1
    assert result["status"] == "imported"
    assert (result["created"], result["updated"], result["failed"], result["unchanged"]) == (0, 0, 0, rows)
    assert snapshot() == before


@pytest.fixture
def xml_descriptor(db):
    """An admin-made XML layout of KS_CUSTOMERS with its own element names."""
    base = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    columns = list(base.columns.all())
    base.pk = None
    base.code = "KS_CUSTOMERS_XML"
    base.format = "xml"
    base.xml_root = "customers"
    base.xml_record = "customer"
    base.file_pattern = "*KS_CUSTOMERS_XML.*"
    base.builtin = False
    base.save()
    for c in columns:
        c.pk = None
        c.descriptor = base
        c.save()
    return base


def test_xml_import_creates_records(tmp_path, kore_connection, xml_descriptor):
    path = tmp_path / "ERP_0000001_INT1_KS_CUSTOMERS_XML.NET"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<customers>'
        "<customer><customer_id>X1</customer_id><email>x1@example.com</email>"
        "<first_name>Zoë &amp; Co</first_name><active>false</active></customer>"
        "<customer><customer_id>X2</customer_id><email>x2@example.com</email>"
        "<parent_customer_id>X1</parent_customer_id></customer>"
        "<customer><customer_id>X3</customer_id><email></email></customer>"
        "</customers>",
        encoding="utf-8",
    )

    (result,) = run_import(path)

    assert (result["status"], result["created"], result["failed"]) == ("imported", 2, 1)
    assert result["errors"][0]["row"] == 3
    assert result["errors"][0]["column"] == "email"
    x1 = Customer.objects.get(customer_id="X1")
    assert (x1.first_name, x1.active) == ("Zoë & Co", False)
    assert Customer.objects.get(customer_id="X2").parent == x1


def test_xml_export_imports_back_unchanged(loaded, tmp_path, xml_descriptor):
    before = snapshot()
    out = tmp_path / "ERP_0000002_INT1_KS_CUSTOMERS_XML.NET"
    call_command("impex_export", "KS_CUSTOMERS_XML", "--out", str(out), stdout=open("/dev/null", "w"))
    text = out.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "<customers>" in text and "<customer>" in text

    (result,) = run_import(out)

    assert (result["status"], result["unchanged"], result["failed"]) == ("imported", 2, 0)
    assert snapshot() == before
