"""Descriptors made by admins: ignored columns, a rejected-rows file's errors column, boolean words, e-mail keys."""

import io

import pytest

from impex.models import Connection, DataDescriptor, DataGroup, DescriptorColumn
from impex.services.exports import export_to_stream
from impex.tests.helpers import counts, kore_name, only_file, run_import, write_raw
from syncapp.models import Customer
from tests.shop import SHOP_PATTERN, shop_columns, shop_row, write_shop_file

pytestmark = pytest.mark.django_db

CUSTOMER_COLUMNS = [
    ("customer_id", "customer_id", "string", True, True, False),
    ("fax", "", "string", False, False, True),
    ("email", "email", "string", True, False, False),
    ("first_name", "first_name", "string", False, False, False),
    ("active", "active", "boolean", False, False, False),
]


def make_descriptor(code: str, *, fmt: str, columns=CUSTOMER_COLUMNS, **fields) -> DataDescriptor:
    """An admin-made Kore-named customers descriptor (convention kore, names *_<code>.*)."""
    descriptor = DataDescriptor.objects.create(
        code=code,
        entity="customer",
        convention="kore",
        format=fmt,
        delimiter="\\t" if fmt == "tsv" else ",",
        file_pattern=f"*_{code}.*",
        precedence=10,
        **fields,
    )
    DescriptorColumn.objects.bulk_create(
        DescriptorColumn(
            descriptor=descriptor,
            position=n,
            name=name,
            field=field,
            type=kind,
            required=required,
            is_key=is_key,
            ignored=ignored,
        )
        for n, (name, field, kind, required, is_key, ignored) in enumerate(columns)
    )
    return descriptor


def file_text(fmt: str, header: list[str], rows: list[list[str]]) -> str:
    """Return rows as a CSV, TSV or XML file's text."""
    if fmt == "xml":
        records = "".join(
            "<record>" + "".join(f"<{h}>{v}</{h}>" for h, v in zip(header, row, strict=True)) + "</record>"
            for row in rows
        )
        return f'<?xml version="1.0" encoding="UTF-8"?><records>{records}</records>'
    sep = "\t" if fmt == "tsv" else ","
    return "\n".join(sep.join(line) for line in [header, *rows]) + "\n"


def export_text(descriptor: DataDescriptor) -> str:
    out = io.StringIO()
    export_to_stream(out, descriptor=descriptor)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "xml"])
def test_ignored_and_errors_columns_are_read_past_and_the_export_round_trips(kore_connection, tmp_path, fmt):
    descriptor = make_descriptor("KS_CUST_IGN", fmt=fmt)
    header = ["customer_id", "fax", "email", "first_name", "active", "errors"]
    rows = [
        ["C1", "0113 000", "c1@example.com", "Ann", "true", "email: a value is required"],
        ["C2", "", "c2@example.com", "Bob", "false", ""],
    ]
    path = write_raw(tmp_path, kore_name("KS_CUST_IGN", 1), file_text(fmt, header, rows))

    code, report = run_import(path, connection="kore-erp")

    assert code == 0, report
    assert counts(only_file(report)) == {"created": 2, "updated": 0, "unchanged": 0, "retired": 0, "failed": 0}
    assert sorted(Customer.objects.values_list("customer_id", "email", "first_name", "active")) == [
        ("C1", "c1@example.com", "Ann", True),
        ("C2", "c2@example.com", "Bob", False),
    ]

    exported = export_text(descriptor)
    if fmt == "xml":
        assert "<fax/>" in exported and "<errors>" not in exported
    else:
        sep = "\t" if fmt == "tsv" else ","
        lines = exported.splitlines()
        assert lines[0] == sep.join(["customer_id", "fax", "email", "first_name", "active"])
        assert lines[1] == sep.join(["C1", "", "c1@example.com", "Ann", "true"])
    again = write_raw(tmp_path, kore_name("KS_CUST_IGN", 2), exported)
    code, report = run_import(again, connection="kore-erp")
    assert counts(only_file(report)) == {"created": 0, "updated": 0, "unchanged": 2, "retired": 0, "failed": 0}


def test_a_declared_errors_column_is_imported_not_read_past(kore_connection, tmp_path):
    columns = [*CUSTOMER_COLUMNS[:1], ("errors", "group", "string", False, False, False), CUSTOMER_COLUMNS[2]]
    make_descriptor("KS_CUST_ERR", fmt="csv", columns=columns)
    path = write_raw(tmp_path, kore_name("KS_CUST_ERR", 1), "customer_id,errors,email\nC1,VIP,c1@example.com\n")

    code, report = run_import(path, connection="kore-erp")

    assert code == 0, report
    assert Customer.objects.get().group == "VIP"


def test_an_undeclared_column_other_than_errors_still_rejects_the_file(kore_connection, tmp_path):
    make_descriptor("KS_CUST_IGN", fmt="csv")
    path = write_raw(tmp_path, kore_name("KS_CUST_IGN", 1), "customer_id,email,phone\nC1,c1@example.com,1\n")

    code, report = run_import(path, connection="kore-erp")

    assert code == 1
    assert only_file(report)["errors"][0]["message"] == (
        f"{path.name}: unknown column 'phone' (descriptor KS_CUST_IGN has: customer_id, email, first_name, active, fax)"
    )
    assert not Customer.objects.exists()


def test_boolean_words_are_read_in_any_case_and_the_first_is_written(kore_connection, tmp_path):
    descriptor = make_descriptor("KS_CUST_YN", fmt="csv", true_words="yes, y", false_words="no, n")
    text = "customer_id,email,active\nC1,c1@example.com,YES\nC2,c2@example.com,No\nC3,c3@example.com,n\n"
    text += "C4,c4@example.com,true\n"
    path = write_raw(tmp_path, kore_name("KS_CUST_YN", 1), text)

    code, report = run_import(path, connection="kore-erp")

    result = only_file(report)
    assert counts(result)["created"] == 3 and counts(result)["failed"] == 1
    assert result["errors"] == [
        {"row": 5, "column": "active", "value": "true", "message": "'true' is not a boolean (use one of yes, y, no, n)"}
    ]
    assert dict(Customer.objects.values_list("customer_id", "active")) == {"C1": True, "C2": False, "C3": False}
    lines = export_text(descriptor).splitlines()
    assert lines[1:] == ["C1,,c1@example.com,,yes", "C2,,c2@example.com,,no", "C3,,c3@example.com,,no"]


def test_two_boolean_words_make_a_short_message(kore_connection, tmp_path):
    make_descriptor("KS_CUST_YN", fmt="csv", true_words="yes", false_words="no")
    path = write_raw(tmp_path, kore_name("KS_CUST_YN", 1), "customer_id,email,active\nC1,c1@example.com,Y\n")

    code, report = run_import(path, connection="kore-erp")

    assert only_file(report)["errors"][0]["message"] == "'Y' is not a boolean (use yes or no)"


# -- the shop platform's customers export (SPEC section 2) ------------------------------------------------------


@pytest.fixture
def shop_group(db):
    """The shop's descriptor as the admin makes it (tests/test_admin_descriptors.py posts the same), in a group."""
    descriptor = DataDescriptor.objects.create(
        code="SHOP_CUSTOMERS",
        entity="customer",
        convention="",
        format="csv",
        file_pattern=SHOP_PATTERN,
        precedence=10,
        true_words="yes",
        false_words="no",
    )
    DescriptorColumn.objects.bulk_create(DescriptorColumn(descriptor=descriptor, **c) for c in shop_columns())
    connection = Connection.objects.create(code="shop", convention="bspk", company_name="Shop")
    group = DataGroup.objects.create(code="shop-customers", name="Shop customers", connection=connection)
    group.descriptors.add(descriptor)
    return group


def test_the_shop_customers_file_is_imported_keyed_by_e_mail(shop_group, tmp_path):
    code, report = run_import(write_shop_file(tmp_path), group="shop-customers")

    result = only_file(report)
    assert code == 0, report  # refused rows do not fail the file
    assert result["descriptor"] == "SHOP_CUSTOMERS"
    assert counts(result) == {"created": 3, "updated": 0, "unchanged": 0, "retired": 0, "failed": 2}
    assert [(e["row"], e["column"], e["message"]) for e in result["errors"]] == [
        (3, "Email", "Email is the key: a value is required"),
        (5, "Email", "duplicate key ann@example.com in this file (first at row 2)"),
    ]
    assert sorted(Customer.objects.values_list("customer_id", "email", "first_name", "last_name", "company_name")) == [
        ("ann@example.com", "ann@example.com", "Ann", "Archer", "Archer Ltd"),
        ("cy@example.com", "cy@example.com", "Cy", "Cole", ""),
        ("dee@example.com", "dee@example.com", "Dee", "Dunn", "Dunn & Co"),
    ]
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}


def test_a_later_shop_file_updates_the_customers_by_e_mail(shop_group, tmp_path):
    run_import(write_shop_file(tmp_path), group="shop-customers")
    later = write_shop_file(
        tmp_path, "customers_export_2.csv", [shop_row("Ann", "Archer-Smith", "ann@example.com", company="Archer Ltd")]
    )
    code, report = run_import(later, group="shop-customers")

    assert code == 0, report
    assert counts(only_file(report))["updated"] == 1
    assert Customer.objects.get(email="ann@example.com").last_name == "Archer-Smith"
    assert Customer.objects.count() == 3


def test_a_name_no_pattern_claims_is_still_refused_by_the_naming_rules(shop_group, tmp_path):
    path = write_shop_file(tmp_path, "clients.csv")

    code, report = run_import(path, group="shop-customers")

    assert code == 1
    assert only_file(report)["status"] == "rejected"
    assert not Customer.objects.exists()


def test_two_descriptors_claiming_one_name_reject_it(shop_group, tmp_path):
    other = DataDescriptor.objects.create(code="SHOP_OTHER", entity="customer", file_pattern="customers_*.csv")
    DescriptorColumn.objects.create(descriptor=other, name="Email", field="email", is_key=True)
    shop_group.descriptors.add(other)

    code, report = run_import(write_shop_file(tmp_path), group="shop-customers")

    assert only_file(report)["errors"][0]["message"] == (
        "customers_export.csv: the patterns of several descriptors match it (SHOP_CUSTOMERS, SHOP_OTHER); "
        "make them tell the files apart"
    )
