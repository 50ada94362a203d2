"""Cells no database or format can hold (SPEC section 12): control characters and date-times beyond year 9999."""

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from impex.models import DataDescriptor, RowError
from impex.services.columns import control_character_in
from impex.tests.helpers import (
    counts,
    customer_row,
    kore_name,
    only_file,
    run_import,
    special_order_row,
    write_bspk,
    write_kore,
    write_raw,
)
from syncapp.models import Customer, SpecialOrder, SyncError

NOTHING = {"created": 0, "updated": 0, "unchanged": 0, "retired": 0, "failed": 0}
OUT_OF_RANGE = "is outside the years 1-9999 once read in UTC"


def control_message(code: str, name: str) -> str:
    """Return the row error message of a cell holding a control character."""
    return (
        f"the cell holds the control character U+{code} ({name}); only tab, line feed and carriage return are allowed"
    )


def run_export(*args) -> tuple[int, dict, str]:
    """Run impex_export --json; return its exit code, the JSON of its last line and its whole output."""
    out = io.StringIO()
    code = 0
    try:
        call_command("impex_export", *args, "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    text = out.getvalue()
    return code, json.loads(text.strip().splitlines()[-1]), text


def changelist(client, model):
    """Return the admin changelist page of a model."""
    return client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))


def admin_import(client, model, text: str):
    """Upload a CSV to an entity's django-import-export import page and return the response."""
    upload = SimpleUploadedFile("data.csv", text.encode(), content_type="text/csv")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_import")
    return client.post(url, {"import_file": upload, "format": "0", "resource": "0"})


# -- control characters on import ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "code", "name"), [("\x00", "0000", "NUL"), ("\x01", "0001", "SOH"), ("\x1f", "001F", "US")]
)
def test_a_control_character_in_a_text_cell_refuses_its_row_alone(tmp_path, kore_connection, char, code, name):
    rows = [customer_row("C1"), customer_row("C2", first_name=f"An{char}n"), customer_row("C3")]

    exit_code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))

    assert exit_code == 0
    result = only_file(report)
    assert result["status"] == "imported"
    assert counts(result) == {**NOTHING, "created": 2, "failed": 1}
    (error,) = result["errors"]
    assert (error["row"], error["column"]) == (3, "first_name")
    assert error["message"] == control_message(code, name)
    assert error["value"] == f"An{chr(0x2400 + ord(char))}n"
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C1", "C3"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("customer_id", "C\x002"),
        ("email", "c2@example.com\x00"),
        ("parent_customer_id", "C1\x00"),
        ("discount_percentage", "1\x00"),
        ("payment_on_account", "\x1fY"),
        ("active", "Y\x1c"),
    ],
)
def test_a_control_character_is_refused_in_every_kind_of_column(tmp_path, kore_connection, column, value):
    rows = [customer_row("C1"), {**customer_row("C2"), column: value}]

    exit_code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))

    assert exit_code == 0
    result = only_file(report)
    assert counts(result) == {**NOTHING, "created": 1, "failed": 1}
    (error,) = result["errors"]
    assert (error["row"], error["column"]) == (3, column)
    assert error["message"].startswith("the cell holds the control character U+00")
    assert list(Customer.objects.values_list("customer_id", flat=True)) == ["C1"]
    stored = [*RowError.objects.values_list("value", "external_id").get(), SyncError.objects.get().external_id]
    assert control_character_in("".join(stored)) is None


def test_every_bad_cell_of_a_row_is_reported(tmp_path, kore_connection):
    rows = [customer_row("C1", first_name="A\x00", last_name="B\x07", discount_percentage="x")]

    exit_code, report = run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, rows))

    result = only_file(report)
    assert [(e["column"], e["message"]) for e in result["errors"]] == [
        ("first_name", control_message("0000", "NUL")),
        ("last_name", control_message("0007", "BEL")),
        ("discount_percentage", "'x' is not a decimal number (use a dot for decimals)"),
    ]
    assert not Customer.objects.exists()


def test_tab_line_feed_and_carriage_return_in_a_quoted_cell_are_kept(tmp_path, kore_connection):
    path = write_raw(
        tmp_path,
        kore_name("KS_CUSTOMERS", 1),
        'customer_id\temail\tfirst_name\nC1\tc1@example.com\t"a\tb\nc\rd\r\ne"\n',
    )

    exit_code, report = run_import(path)

    assert exit_code == 0
    assert counts(only_file(report)) == {**NOTHING, "created": 1}
    assert Customer.objects.get().first_name == "a\tb\nc\rd\r\ne"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<records><record><customer_id>C1\x00</customer_id></record></records>", "not well-formed (invalid token)"),
        (b"<records><record><customer_id>C1\x01</customer_id></record></records>", "not well-formed (invalid token)"),
        (
            b"<records><record><customer_id>C1&#1;</customer_id></record></records>",
            "reference to invalid character number",
        ),
    ],
)
def test_xml_cannot_carry_control_characters_so_the_file_is_rejected(tmp_path, kore_connection, document, expected):
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(format="xml")
    path = write_raw(tmp_path, kore_name("KS_CUSTOMERS", 1), document)

    exit_code, report = run_import(path)

    assert exit_code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert result["errors"][0]["message"] == f"{path.name}: unreadable XML: {expected} (line 1, column 33)"
    assert not Customer.objects.exists()


# -- date-times beyond the years 1-9999 ----------------------------------------------------------------------


def test_a_date_time_outside_the_years_1_to_9999_in_utc_refuses_its_row(tmp_path, bspk_connection):
    rows = [
        special_order_row("SO1", created_at="9999-12-31T23:59:59-05:00"),
        special_order_row("SO2", created_at="0001-01-01T00:30:00+01:00"),
        special_order_row("SO3", created_at="9999-12-31T23:59:59+00:00"),
        special_order_row("SO4", created_at="0001-01-01T00:00:00Z"),
    ]

    exit_code, report = run_import(write_bspk(tmp_path, "SPECIAL-ORDERS", rows))

    assert exit_code == 0
    result = only_file(report)
    assert counts(result) == {**NOTHING, "created": 2, "failed": 2}
    assert [(e["row"], e["column"], e["value"], e["message"]) for e in result["errors"]] == [
        (2, "created_at", "9999-12-31T23:59:59-05:00", f"'9999-12-31T23:59:59-05:00' {OUT_OF_RANGE}"),
        (3, "created_at", "0001-01-01T00:30:00+01:00", f"'0001-01-01T00:30:00+01:00' {OUT_OF_RANGE}"),
    ]
    assert dict(SpecialOrder.objects.values_list("special_order_id", "ordered_at")) == {
        "SO3": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "SO4": datetime(1, 1, 1, tzinfo=UTC),
    }


def test_a_naive_date_time_is_checked_in_the_connection_time_zone(tmp_path, bspk_connection):
    bspk_connection.timezone = "America/New_York"
    bspk_connection.save()
    rows = [
        special_order_row("SO1", created_at="9999-12-31T20:00:00"),
        special_order_row("SO2", created_at="9999-12-31T18:00:00"),
    ]

    exit_code, report = run_import(write_bspk(tmp_path, "SPECIAL-ORDERS", rows))

    result = only_file(report)
    assert counts(result) == {**NOTHING, "created": 1, "failed": 1}
    assert [e["message"] for e in result["errors"]] == [
        f"'9999-12-31T20:00:00' (read in America/New_York) {OUT_OF_RANGE}"
    ]
    assert SpecialOrder.objects.get().ordered_at == datetime(9999, 12, 31, 23, tzinfo=UTC)


# -- what the admin and impex_export make of the data afterwards -----------------------------------------------


def test_after_refused_cells_the_changelists_render_and_the_export_succeeds(
    tmp_path, admin_client, kore_connection, bspk_connection
):
    run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C1"), customer_row("C2", first_name="\x00")]))
    run_import(
        write_bspk(
            tmp_path,
            "SPECIAL-ORDERS",
            [
                special_order_row("SO1", created_at="9999-12-31T23:59:59-05:00"),
                special_order_row("SO2", created_at="9999-12-31T23:59:59+00:00"),
            ],
        )
    )

    assert changelist(admin_client, Customer).status_code == 200
    assert changelist(admin_client, SpecialOrder).status_code == 200
    for code in ("KS_CUSTOMERS", "SPECIAL-ORDERS"):
        exit_code, result, _ = run_export(code, "--out", str(tmp_path / f"{code}.csv"))
        assert (exit_code, result["rows"]) == (0, 1)
    assert "SO2,S1,CL1,,REPAIR,OPEN,,,,,9999-12-31T23:59:59+00:00," in (tmp_path / "SPECIAL-ORDERS.csv").read_text()


# -- control characters already stored, on export ------------------------------------------------------------


@pytest.fixture
def stored_control_characters(kore_connection):
    """Customers, one of them holding control characters that reached the database by another path."""
    for customer_id in ("C1", "C2", "C3"):
        Customer.objects.create(customer_id=customer_id, email=f"{customer_id.lower()}@example.com")
    Customer.objects.filter(customer_id="C2").update(first_name="An\x01n", last_name="B\x1f")


def test_xml_export_leaves_out_and_reports_records_it_cannot_write(
    tmp_path, kore_connection, stored_control_characters
):
    out = tmp_path / "customers.xml"

    exit_code, result, text = run_export("KS_CUSTOMERS", "--format", "xml", "--out", str(out))

    assert exit_code == 1
    assert result["rows"] == 2
    assert result["errors"] == [
        {
            "row": "C2",
            "column": "first_name",
            "value": "An\u2401n",
            "message": "the cell holds the control character U+0001 (SOH), which XML 1.0 cannot carry: "
            "the record is left out",
        },
        {
            "row": "C2",
            "column": "last_name",
            "value": "B\u241f",
            "message": "the cell holds the control character U+001F (US), which XML 1.0 cannot carry: "
            "the record is left out",
        },
    ]
    assert "1 record left out:" in text
    assert "record C2, column first_name: the cell holds the control character U+0001 (SOH)" in text
    assert "Traceback" not in text
    reimport = out.rename(tmp_path / kore_name("KS_CUSTOMERS", 1))
    Customer.objects.all().delete()
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(format="xml")
    exit_code, report = run_import(reimport)
    assert (exit_code, counts(only_file(report))) == (0, {**NOTHING, "created": 2})
    assert sorted(Customer.objects.values_list("customer_id", flat=True)) == ["C1", "C3"]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_exports_write_control_characters_as_is(tmp_path, kore_connection, stored_control_characters, fmt):
    out = tmp_path / f"customers.{fmt}"

    exit_code, result, _ = run_export("KS_CUSTOMERS", "--format", fmt, "--out", str(out))

    assert (exit_code, result["rows"], result["errors"]) == (0, 3, [])
    assert "An\x01n" in out.read_text(encoding="utf-8")


def test_a_csv_export_with_a_control_character_imports_back_with_that_row_refused(
    tmp_path, kore_connection, stored_control_characters
):
    out = tmp_path / "customers.tsv"
    run_export("KS_CUSTOMERS", "--out", str(out))
    reimport = out.rename(tmp_path / kore_name("KS_CUSTOMERS", 1))

    exit_code, report = run_import(reimport)

    result = only_file(report)
    assert (exit_code, counts(result)) == (0, {**NOTHING, "unchanged": 2, "failed": 1})
    assert [(e["row"], e["column"]) for e in result["errors"]] == [(3, "first_name"), (3, "last_name")]
    assert Customer.objects.get(customer_id="C2").first_name == "An\x01n"


# -- the entity admin's django-import-export import ----------------------------------------------------------


@pytest.mark.parametrize("value", ["An\x00n", "An\x1bn"])
def test_admin_import_refuses_a_control_character_as_a_row_error(admin_client, db, value):
    response = admin_import(
        admin_client, Customer, f"customer_id,email,first_name\nC1,c1@x.com,Ann\nC2,c2@x.com,{value}\n"
    )

    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors()
    (invalid,) = result.invalid_rows
    assert invalid.number == 3  # as the sheet shows it: the header is row 1
    assert "the cell holds the control character U+00" in str(invalid.error_dict["first_name"])
    assert "only tab, line feed and carriage return are allowed" in response.text
    assert "confirm_form" in response.context  # the good row can still go in; the bad one is refused alone
    assert not Customer.objects.exists()


def test_admin_import_refuses_a_control_character_in_the_key(admin_client, db):
    response = admin_import(admin_client, Customer, "customer_id,email\nC\x001,c1@x.com\n")

    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors()
    assert "U+0000 (NUL)" in str(result.invalid_rows[0].error_dict)
    assert not Customer.objects.exists()


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:30:00+01:00"])
def test_admin_import_refuses_a_date_time_beyond_the_years_1_to_9999(admin_client, db, value):
    header = "special_order_id,store_id,client_id,order_type,status,created_at"

    response = admin_import(admin_client, SpecialOrder, f"{header}\nSO1,S1,CL1,REPAIR,OPEN,{value}\n")

    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors()
    (message,) = result.invalid_rows[0].error_dict["created_at"]
    assert message.startswith(f"'{value}' {OUT_OF_RANGE}")
    assert not SpecialOrder.objects.exists()
    assert changelist(admin_client, SpecialOrder).status_code == 200
