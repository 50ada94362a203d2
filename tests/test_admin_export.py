"""Export on demand (SPEC sections 1 channel 4, 12 and 13): an export group's file and an entity's records,
downloaded as they are made, with text a spreadsheet would run neutralised; impex.export_data on the server."""

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape

import pytest
from django.core.management import call_command
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from impex.models import DataDescriptor, DataGroup
from impex.services.exports import export_download
from impex.tests.helpers import customer_row, run_import, write_bspk, write_kore
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
from tests.admin_helpers import admin_url, staff_user, table_snapshot

EXPORT_DATA = "impex.export_data"
FORMULAS = {
    "first_name": "=SUM(1)",
    "last_name": "+1",
    "company_name": "-x",
    "group": "@x",
    "accounting_id": "\tlead",
    "price_list": "\rcr",
}
SPECIAL_ORDER = {
    "special_order_id": "SO1",
    "store_id": "ST1",
    "client_id": "CL1",
    "order_type": "REPAIR",
    "status": "OPEN",
    "description": 'Resize, polish "gold" ring\nsecond line',
    "currency": "EUR",
    "deposit_amount": "10.5",
    "total_amount": "120",
    "created_at": "2026-11-01T10:00:00+01:00",
}


@pytest.fixture
def customers(tmp_path, kore_connection):
    """Three customers imported from a Kore file (one refers to another)."""
    rows = [
        customer_row("C1", first_name="Åsa", last_name="Öberg", discount_percentage="12.5", payment_on_account="true"),
        customer_row("C2", first_name="Jun", company_name="Yamada, Ltd.", parent_customer_id="C1", active="false"),
        customer_row("C3", first_name="Zoë", group="trade"),
    ]
    code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))
    assert code == 0, report
    return Customer.objects.order_by("customer_id")


def export_group(code, descriptor_code):
    """An export group with one descriptor."""
    group = DataGroup.objects.create(code=code, name=f"Group {code}", direction="export")
    group.descriptors.add(DataDescriptor.objects.get(code=descriptor_code))
    return group


def xml_descriptor():
    """An admin-made XML layout of KS_CUSTOMERS that claims files named *KS_CUSTOMERS_XML.*."""
    base = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    columns = list(base.columns.all())
    base.pk = None
    base.code, base.format, base.xml_root, base.xml_record = "KS_CUSTOMERS_XML", "xml", "customers", "customer"
    base.file_pattern, base.builtin = "*KS_CUSTOMERS_XML.*", False
    base.save()
    for column in columns:
        column.pk, column.descriptor = None, base
        column.save()
    return base


def group_export_url(group):
    return reverse("admin:impex_datagroup_export", args=[group.pk])


def entity_export_url(model):
    return admin_url(model, "descriptor_export")


def download(response) -> bytes:
    """The bytes of a streamed download."""
    assert isinstance(response, StreamingHttpResponse), response
    return b"".join(response.streaming_content)


def impex_export_text(code, tmp_path, *extra) -> str:
    """What impex_export writes for a descriptor or export group."""
    out = tmp_path / "impex_export" / "file"
    call_command("impex_export", code, "--out", str(out), *extra, stdout=io.StringIO())
    return out.read_bytes().decode()


def rows_of(text, delimiter):
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


# The export group's page


def test_an_export_group_page_has_the_export_button_and_an_import_group_has_none(admin_client, db):
    group = export_group("customers-out", "KS_CUSTOMERS")
    inbound = DataGroup.objects.get(code="kore-inbound")

    export_page = admin_client.get(admin_url(DataGroup, "change", group.pk))
    import_page = admin_client.get(admin_url(DataGroup, "change", inbound.pk))
    refused = admin_client.get(group_export_url(inbound), follow=True)

    assert f'href="{group_export_url(group)}"' in export_page.text
    assert ">Export</a>" in export_page.text
    assert "/export/" not in import_page.text
    assert "Content-Disposition" not in refused.headers
    assert "Only export groups export: kore-inbound is an import group." in refused.text


def test_the_export_page_offers_the_formats_with_the_descriptors_own_first(admin_client, db):
    group = export_group("customers-out", "KS_CUSTOMERS")

    page = admin_client.get(group_export_url(group))

    assert page.status_code == 200
    assert list(page.context["form"].fields) == ["format", "since"]
    assert [value for value, _ in page.context["form"].fields["format"].choices] == ["", "csv", "tsv", "xml"]
    assert "As the descriptor&#x27;s: TSV" in page.text
    assert "customer_id, email, first_name" in page.text
    assert 'type="submit" class="default" value="Export"' in page.text


def test_an_export_group_downloads_the_descriptors_file_as_impex_export_writes_it(admin_client, customers, tmp_path):
    group = export_group("customers-out", "KS_CUSTOMERS")
    before = timezone.now()

    response = admin_client.post(group_export_url(group), {"format": "", "since": ""})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/tab-separated-values; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="customers-out_')
    stamp = disposition.removeprefix('attachment; filename="customers-out_').removesuffix('.tsv"')
    made = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= made <= timezone.now()
    assert download(response).decode() == impex_export_text("customers-out", tmp_path)


def test_a_downloaded_tsv_imports_back_unchanged(admin_client, customers, tmp_path):
    group = export_group("customers-out", "KS_CUSTOMERS")
    before = table_snapshot()
    path = tmp_path / "ERP_0000002_INT1_KS_CUSTOMERS.NET"

    path.write_bytes(download(admin_client.post(group_export_url(group), {"format": "tsv"})))
    code, report = run_import(path)

    assert code == 0
    (result,) = report["files"]
    assert (result["status"], result["unchanged"], result["created"], result["updated"]) == ("imported", 3, 0, 0)
    after = table_snapshot()
    assert after["syncapp.customer"] == before["syncapp.customer"]


def test_a_downloaded_csv_imports_back_unchanged(admin_client, tmp_path, bspk_connection):
    code, _ = run_import(
        write_bspk(tmp_path, "SPECIAL-ORDERS", [SPECIAL_ORDER, {**SPECIAL_ORDER, "special_order_id": "SO2"}])
    )
    assert code == 0
    group = export_group("special-orders-out", "SPECIAL-ORDERS")
    before = list(SpecialOrder.objects.order_by("pk").values())
    path = tmp_path / "SPECIAL-ORDERS_V2_Acme_202611020900.csv"

    response = admin_client.post(group_export_url(group), {"format": "csv"})
    path.write_bytes(download(response))
    code, report = run_import(path)

    assert response["Content-Disposition"].endswith('.csv"')
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert code == 0
    (result,) = report["files"]
    assert (result["status"], result["unchanged"], result["failed"]) == ("imported", 2, 0)
    assert list(SpecialOrder.objects.order_by("pk").values()) == before


def test_a_downloaded_xml_imports_back_unchanged(admin_client, customers, tmp_path):
    group = export_group("customers-xml-out", xml_descriptor().code)
    before = list(Customer.objects.order_by("pk").values())
    path = tmp_path / "ERP_0000002_INT1_KS_CUSTOMERS_XML.NET"

    response = admin_client.post(group_export_url(group), {"format": ""})
    path.write_bytes(download(response))
    code, report = run_import(path)

    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response["Content-Disposition"].endswith('.xml"')
    assert path.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>\n<customers>\n')
    assert code == 0
    (result,) = report["files"]
    assert (result["status"], result["unchanged"], result["failed"]) == ("imported", 3, 0)
    assert list(Customer.objects.order_by("pk").values()) == before


def test_another_format_keeps_the_descriptors_columns(admin_client, customers, tmp_path):
    group = export_group("customers-out", "KS_CUSTOMERS")

    as_csv = download(admin_client.post(group_export_url(group), {"format": "csv"})).decode()
    as_xml = download(admin_client.post(group_export_url(group), {"format": "xml"})).decode()

    assert as_csv == impex_export_text("customers-out", tmp_path, "--format", "csv")
    assert as_xml == impex_export_text("customers-out", tmp_path, "--format", "xml")
    assert {row["customer_id"]: row["company_name"] for row in rows_of(as_csv, ",")}["C2"] == "Yamada, Ltd."


def test_changed_since_a_date_exports_the_records_changed_since(admin_client, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")
    Customer.objects.filter(customer_id="C1").update(updated_at=datetime(2026, 1, 10, 12, tzinfo=UTC))
    Customer.objects.filter(customer_id="C2").update(updated_at=datetime(2026, 3, 1, 0, tzinfo=UTC))
    Customer.objects.filter(customer_id="C3").update(updated_at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC))

    on_a_date = download(admin_client.post(group_export_url(group), {"since": "2026-03-01"})).decode()
    at_a_time = download(admin_client.post(group_export_url(group), {"since": "2026-02-28 23:59"})).decode()

    assert [row["customer_id"] for row in rows_of(on_a_date, "\t")] == ["C2"]
    assert sorted(row["customer_id"] for row in rows_of(at_a_time, "\t")) == ["C2", "C3"]


def test_a_date_that_is_not_one_is_an_error_on_the_form(admin_client, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")

    response = admin_client.post(group_export_url(group), {"since": "last week"})

    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    assert "Please correct the error below." in response.text
    assert "last week is not a date: write it as YYYY-MM-DD (e.g. 2026-12-07)" in response.text


def test_the_since_field_is_the_browsers_date_picker_with_an_optional_time(admin_client, db):
    group = export_group("customers-out", "KS_CUSTOMERS")

    page = admin_client.get(group_export_url(group))

    assert '<input type="date" name="since"' in page.text
    assert '<input type="time" name="since_time"' in page.text
    assert "Typed, a date is YYYY-MM-DD, e.g. 2026-12-07." in page.text


def test_since_is_read_in_iso_order_in_the_hubs_time_zone(admin_client, customers, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    group = export_group("customers-out", "KS_CUSTOMERS")
    # 2026-12-07 00:30 and 2026-12-06 23:30 in Berlin; 2026-07-12 (what 12/07/2026 means in Berlin) in UTC.
    Customer.objects.filter(customer_id="C1").update(updated_at=datetime(2026, 12, 6, 23, 30, tzinfo=UTC))
    Customer.objects.filter(customer_id="C2").update(updated_at=datetime(2026, 12, 6, 22, 30, tzinfo=UTC))
    Customer.objects.filter(customer_id="C3").update(updated_at=datetime(2026, 7, 12, 10, 0, tzinfo=UTC))

    def exported(data):
        return sorted(
            row["customer_id"]
            for row in rows_of(download(admin_client.post(group_export_url(group), data)).decode(), "\t")
        )

    assert exported({"since": "2026-12-07"}) == ["C1"]
    assert exported({"since": "2026-12-07T00:15"}) == ["C1"]
    assert exported({"since": "2026-12-06", "since_time": "23:30"}) == ["C1", "C2"]
    assert exported({"since": "2026-07-12"}) == ["C1", "C2", "C3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"since": "12/07/2026"},
            "12/07/2026 is not an ISO date: it could be read day first or month first. Write it as YYYY-MM-DD "
            "(7 December 2026 is 2026-12-07), or pick it in the calendar.",
        ),
        ({"since": "2026-12-7"}, "2026-12-7 is not a date: write it as YYYY-MM-DD"),
        ({"since": "2026-02-30"}, "2026-02-30 is not a real date or time: day is out of range for month."),
        ({"since": "", "since_time": "14:05"}, "A time (14:05) needs a date: pick the day too."),
        ({"since": "2026-12-07", "since_time": "2pm"}, "2pm is not a time: write it as HH:MM, e.g. 14:05."),
        ({"since": "2026-12-07T10:00", "since_time": "14:05"}, "2026-12-07T10:00 holds a time already"),
    ],
    ids=["day-month-year", "not zero-padded", "no such day", "time alone", "bad time", "two times"],
)
def test_a_since_that_is_not_iso_is_refused_with_a_message(admin_client, customers, data, message):
    group = export_group("customers-out", "KS_CUSTOMERS")

    response = admin_client.post(group_export_url(group), data)

    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    assert "Please correct the error below." in response.text
    assert message in unescape(response.text)


@pytest.mark.parametrize(
    ("zone", "data"),
    [
        ("Europe/Berlin", {"since": "0001-01-01"}),
        ("America/New_York", {"since": "9999-12-31", "since_time": "23:59"}),
    ],
    ids=["before-year-1", "after-year-9999"],
)
def test_a_since_outside_the_years_once_in_utc_is_refused_not_a_server_error(
    admin_client, customers, settings, zone, data
):
    settings.TIME_ZONE = zone
    group = export_group("customers-out", "KS_CUSTOMERS")

    response = admin_client.post(group_export_url(group), data)

    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    assert "is outside the years 1 to 9999 once read in UTC" in unescape(response.text)


def test_nothing_changed_since_says_so_on_the_page_instead_of_an_empty_file(admin_client, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")
    Customer.objects.update(updated_at=datetime(2026, 3, 1, 9, 15, tzinfo=UTC))
    Customer.objects.filter(customer_id="C2").update(updated_at=datetime(2026, 11, 3, 10, 15, tzinfo=UTC))

    response = admin_client.post(group_export_url(group), {"since": "2026-12-07"})

    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    assert list(response.context["messages"])[0].level_tag == "warning"
    assert (
        "No customers changed since 2026-12-07 00:00 (UTC), so there is no file to download: the latest change was "
        "at 2026-11-03 10:15." in response.text
    )
    assert 'value="2026-12-07"' in response.text


def test_nothing_changed_since_among_selected_records_or_an_empty_entity(admin_client, customers):
    chosen = [str(pk) for pk in customers.filter(customer_id__in=["C1", "C3"]).values_list("pk", flat=True)]
    Customer.objects.update(updated_at=datetime(2026, 3, 1, 9, 15, tzinfo=UTC))
    selection = {"action": "export_selected", "select_across": "0", "_selected_action": chosen, "do_export": "1"}

    selected = admin_client.post(admin_url(Customer, "changelist"), {**selection, "since": "2026-04-01"})
    Customer.objects.all().delete()
    empty = admin_client.post(entity_export_url(Customer), {"do_export": "1", "since": "2026-04-01"})
    everything = admin_client.post(entity_export_url(Customer), {"do_export": "1"})

    assert "Content-Disposition" not in selected.headers
    assert "None of the 2 selected customers changed since 2026-04-01 00:00 (UTC)" in selected.text
    assert "the latest change was at 2026-03-01 09:15." in selected.text
    assert "Content-Disposition" not in empty.headers
    assert "there are no customers to export at all." in empty.text
    # Without a date the layout's header alone is the file asked for (a template to fill in).
    assert download(everything).decode().count("\n") == 1


def test_a_descriptor_that_cannot_write_xml_says_so_on_the_form(admin_client, customers):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    descriptor.columns.filter(name="first_name").update(name="first name")
    group = export_group("customers-out", "KS_CUSTOMERS")

    response = admin_client.post(group_export_url(group), {"format": "xml"})

    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    assert "KS_CUSTOMERS cannot export: &#x27;first name&#x27; cannot be an XML element name" in response.text


def test_the_export_group_list_action_opens_the_export_page_of_one_export_group(admin_client, db):
    group = export_group("customers-out", "KS_CUSTOMERS")
    inbound = DataGroup.objects.get(code="kore-inbound")
    changelist = admin_url(DataGroup, "changelist")

    one = admin_client.post(changelist, {"action": "export_group", "_selected_action": [group.pk]})
    two = admin_client.post(
        changelist, {"action": "export_group", "_selected_action": [group.pk, inbound.pk]}, follow=True
    )

    assert one.status_code == 302
    assert one.url == group_export_url(group)
    assert "Choose one export group to export (import groups do not export)." in two.text


# Formulas are neutralised in downloads only


def test_downloads_neutralise_formulas_in_text_cells_and_leave_numbers_alone(admin_client, tmp_path, kore_connection):
    Customer.objects.create(customer_id="C1", email="c1@example.com", discount_percentage=Decimal("-5"), **FORMULAS)
    Customer.objects.create(customer_id="-C2", email="@mail", discount_percentage=Decimal("+0.5"))
    group = export_group("customers-out", "KS_CUSTOMERS")

    text = download(admin_client.post(group_export_url(group), {"format": "csv"})).decode()
    plain = impex_export_text("customers-out", tmp_path, "--format", "csv")

    first, second = rows_of(text, ",")
    assert {name: first[name] for name in FORMULAS} == {name: "'" + value for name, value in FORMULAS.items()}
    assert first["discount_percentage"] == "-5"
    assert (second["customer_id"], second["email"], second["discount_percentage"]) == ("'-C2", "'@mail", "0.5")
    original_first, _ = rows_of(plain, ",")
    assert {name: original_first[name] for name in FORMULAS} == FORMULAS


def test_integer_columns_keep_negative_numbers(admin_client, db):
    shirt = Product.objects.create(product_id="P1", title="Shirt")
    variant = ProductVariant.objects.create(variant_id="V1", sku="=SKU", product=shirt)
    StockLevel.objects.create(variant=variant, location="-WH", quantity=-3)
    group = export_group("stock-out", "KS_INVENTORY")

    (row,) = rows_of(download(admin_client.post(group_export_url(group), {"format": "tsv"})).decode(), "\t")

    assert row == {"sku": "'=SKU", "location": "'-WH", "quantity": "-3", "restock_date": ""}


def test_xml_downloads_neutralise_formulas_too(admin_client, db):
    Customer.objects.create(customer_id="C1", email="c1@example.com", first_name="=SUM(1)")
    group = export_group("customers-xml-out", xml_descriptor().code)

    text = download(admin_client.post(group_export_url(group), {})).decode()

    assert "<first_name>'=SUM(1)</first_name>" in text


def test_impex_export_writes_formulas_as_they_are(customers, tmp_path):
    Customer.objects.filter(customer_id="C1").update(first_name="=SUM(1)")

    (row, *_) = rows_of(impex_export_text("KS_CUSTOMERS", tmp_path), "\t")

    assert row["first_name"] == "=SUM(1)"


# Streaming


def test_a_download_streams_in_pieces_as_the_records_are_read(admin_client, db):
    Customer.objects.bulk_create(
        Customer(customer_id=f"C{i:05d}", email=f"customer{i}@example.com", first_name="Name " * 5) for i in range(3000)
    )
    group = export_group("customers-out", "KS_CUSTOMERS")
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")

    response = admin_client.post(group_export_url(group), {})
    chunks = list(response.streaming_content)
    pieces = list(export_download(descriptor=descriptor))

    assert isinstance(response, StreamingHttpResponse)
    assert len(chunks) >= 3
    assert max(len(chunk) for chunk in chunks) < 70_000
    assert b"".join(chunks).count(b"\n") == 3001
    assert pieces == chunks


# An entity's list


def test_an_entitys_list_has_one_export_entry_whose_page_offers_the_file_and_the_sheet(admin_client, customers):
    changelist = admin_client.get(admin_url(Customer, "changelist") + "?active__exact=1")
    (entry,) = export_entries(changelist)
    page = admin_client.get(entry)
    sheet = admin_client.get(admin_url(Customer, "export") + "?active__exact=1")

    assert entry == entity_export_url(Customer) + "?active__exact=1"
    assert "Download sheet" not in changelist.text
    assert "export_selected" in action_names(changelist)
    assert page.status_code == 200
    assert "A file in a descriptor's layout" in page.text
    assert f'href="{admin_url(Customer, "export")}?active__exact=1"' in page.text
    assert ">Choose the columns of a sheet</a>" in page.text
    assert sheet.context["title"] == "Export customers: a sheet"
    assert f'<a href="{entity_export_url(Customer)}?active__exact=1">a file in a descriptor' in sheet.text


def test_an_entitys_export_page_chooses_among_its_descriptors_the_builtin_first(admin_client, customers):
    xml = xml_descriptor()

    page = admin_client.get(entity_export_url(Customer))
    choices = list(page.context["form"].fields["descriptor"].queryset)

    assert choices == [DataDescriptor.objects.get(code="KS_CUSTOMERS"), xml]
    assert page.context["form"]["descriptor"].value() == choices[0].pk
    assert "KS_CUSTOMERS: Kore customers (TSV)" in page.text


def test_an_entitys_export_downloads_every_record_with_the_chosen_descriptor(admin_client, customers, tmp_path):
    xml = xml_descriptor()

    builtin = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    tsv = admin_client.post(entity_export_url(Customer), {"do_export": "1", "descriptor": builtin.pk})
    as_xml = admin_client.post(entity_export_url(Customer), {"do_export": "1", "descriptor": xml.pk})

    assert tsv["Content-Disposition"].startswith('attachment; filename="KS_CUSTOMERS_')
    assert download(tsv).decode() == impex_export_text("KS_CUSTOMERS", tmp_path)
    assert as_xml["Content-Disposition"].startswith('attachment; filename="KS_CUSTOMERS_XML_')
    assert download(as_xml).decode() == impex_export_text("KS_CUSTOMERS_XML", tmp_path)


def test_export_selected_downloads_the_chosen_records_only(admin_client, customers):
    changelist = admin_url(Customer, "changelist")
    chosen = [str(pk) for pk in customers.filter(customer_id__in=["C1", "C3"]).values_list("pk", flat=True)]
    selection = {"action": "export_selected", "select_across": "0", "_selected_action": chosen}

    page = admin_client.post(changelist, {**selection, "index": "0"})
    response = admin_client.post(changelist, {**selection, "do_export": "1", "format": "csv"})

    assert page.status_code == 200
    assert "The file holds the 2 selected customers." in page.text
    assert page.text.count('name="_selected_action"') == 2
    rows = rows_of(download(response).decode(), ",")
    assert [row["customer_id"] for row in rows] == ["C1", "C3"]


def test_export_selected_across_the_filtered_list(admin_client, customers):
    changelist = admin_url(Customer, "changelist") + "?active__exact=1"
    some = str(customers.first().pk)
    selection = {"action": "export_selected", "select_across": "1", "_selected_action": [some]}

    page = admin_client.post(changelist, {**selection, "index": "0"})
    response = admin_client.post(changelist, {**selection, "do_export": "1"})

    assert "The file holds the 2 selected customers." in page.text
    assert [row["customer_id"] for row in rows_of(download(response).decode(), "\t")] == ["C1", "C3"]


def test_one_selected_record_is_named_in_the_singular(admin_client, customers):
    selection = {"action": "export_selected", "select_across": "0", "_selected_action": [customers.first().pk]}

    page = admin_client.post(admin_url(Customer, "changelist"), {**selection, "index": "0"})

    assert "The file holds the 1 selected customer." in page.text


def test_every_entity_with_a_descriptor_exports_and_the_others_do_not(admin_client, db):
    with_descriptor = (Customer, ProductVariant, StockLevel, Price, SpecialOrder, SpecialOrderLineItem)
    with_descriptor += (SpecialOrderEvent, Order, OrderLine, Shipment)
    for model in with_descriptor:
        changelist = admin_client.get(admin_url(model, "changelist"))
        assert export_entries(changelist) == [entity_export_url(model) + "?"], model
        assert admin_client.get(entity_export_url(model)).status_code == 200, model
    for model in (Product, PriceList):
        changelist = admin_client.get(admin_url(model, "changelist"))
        assert export_entries(changelist) == [admin_url(model, "export") + "?"], model
        assert "export_selected" not in action_names(changelist)
        assert admin_client.get(entity_export_url(model)).status_code == 403


# Who may export


def posts_that_would_export(group):
    """Every request that downloads a file for a user allowed to."""
    return [
        ("get", group_export_url(group), {}),
        ("post", group_export_url(group), {"format": "csv"}),
        ("get", entity_export_url(Customer), {}),
        ("post", entity_export_url(Customer), {"do_export": "1"}),
    ]


@pytest.mark.parametrize(
    "perms",
    [
        ("impex.view_datagroup", "syncapp.view_customer"),
        ("impex.view_datagroup", "syncapp.view_customer", "impex.change_datagroup", "syncapp.change_customer"),
        (EXPORT_DATA,),
    ],
    ids=["view only", "change too", "export_data only"],
)
def test_without_export_data_and_the_view_permission_there_is_no_file(client, django_user_model, customers, perms):
    group = export_group("customers-out", "KS_CUSTOMERS")
    client.force_login(staff_user(django_user_model, "someone", *perms))
    before = table_snapshot()

    responses = [getattr(client, method)(url, data) for method, url, data in posts_that_would_export(group)]

    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert not any("Content-Disposition" in r.headers for r in responses)
    assert table_snapshot() == before


def test_without_export_data_the_buttons_and_actions_are_not_shown(client, django_user_model, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")
    client.force_login(staff_user(django_user_model, "viewer", "impex.view_datagroup", "syncapp.view_customer"))
    chosen = {"action": "export_selected", "select_across": "0", "_selected_action": [customers.first().pk]}

    group_page = client.get(admin_url(DataGroup, "change", group.pk))
    group_list = client.get(admin_url(DataGroup, "changelist"))
    customer_list = client.get(admin_url(Customer, "changelist"))
    direct_action = client.post(admin_url(Customer, "changelist"), {**chosen, "do_export": "1"})
    group_action = client.post(
        admin_url(DataGroup, "changelist"), {"action": "export_group", "_selected_action": [group.pk]}
    )

    assert group_export_url(group) not in group_page.text
    assert ">Export</a>" not in group_page.text
    assert "export_group" not in action_names(group_list)
    assert export_entries(customer_list) == [admin_url(Customer, "export") + "?"]
    assert f'href="{entity_export_url(Customer)}' not in client.get(admin_url(Customer, "export")).text
    assert "export_selected" not in action_names(customer_list)
    for refused in (direct_action, group_action):
        assert "Content-Disposition" not in refused.headers
        assert refused.status_code in (200, 302)


def test_export_data_and_the_view_permission_download(client, django_user_model, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")
    client.force_login(
        staff_user(django_user_model, "exporter", EXPORT_DATA, "impex.view_datagroup", "syncapp.view_customer")
    )

    group_page = client.get(admin_url(DataGroup, "change", group.pk))
    customer_list = client.get(admin_url(Customer, "changelist"))
    from_group = client.post(group_export_url(group), {})
    from_list = client.post(entity_export_url(Customer), {"do_export": "1"})

    assert group_export_url(group) in group_page.text
    assert export_entries(customer_list) == [entity_export_url(Customer) + "?"]
    assert len(download(from_group).splitlines()) == 4
    assert len(download(from_list).splitlines()) == 4


def export_entries(response):
    """The targets of the export entries on a changelist's object tools."""
    tools = response.text.split('<ul class="object-tools">', 1)[1].split("</ul>", 1)[0]
    return [unescape(href) for href in re.findall(r'<a href="([^"]*)"[^>]*>Export</a>', tools)]


def action_names(response):
    """The names of the actions a changelist offers."""
    form = response.context["action_form"]
    return [name for name, _ in form.fields["action"].choices if name] if form else []


def test_anonymous_users_are_sent_to_the_login_page(client, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")

    for method, url, data in posts_that_would_export(group):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login") + "?next=")


def test_the_export_forms_need_the_csrf_token(admin_user, customers):
    group = export_group("customers-out", "KS_CUSTOMERS")
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)

    refused = [csrf_client.post(url, data) for method, url, data in posts_that_would_export(group) if method == "post"]

    assert [r.status_code for r in refused] == [403, 403]
    assert all("CSRF" in r.text for r in refused)


def test_an_ignored_column_is_written_empty(admin_client, customers, tmp_path):
    descriptor = DataDescriptor.objects.get(code="KS_CUSTOMERS")
    descriptor.columns.filter(name="group").update(field="", ignored=True)
    group = export_group("customers-out", "KS_CUSTOMERS")

    text = download(admin_client.post(group_export_url(group), {})).decode()

    rows = rows_of(text, "\t")
    assert list(rows[0]) == [c.name for c in descriptor.columns.all()]
    assert {row["group"] for row in rows} == {""}
    assert {row["customer_id"]: row["first_name"] for row in rows}["C3"] == "Zoë"
    assert text == impex_export_text("customers-out", tmp_path)
