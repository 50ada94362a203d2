"""Tests of the BSPK and Kore file-name conventions."""

from datetime import datetime

import pytest

from impex.exceptions import FileNameError
from impex.naming import (
    ParsedName,
    company_of,
    guess_convention,
    integration_of,
    parse_bspk,
    parse_file_name,
    parse_kore,
)

BSPK_TYPES = frozenset({"SPECIAL-ORDERS", "SPECIAL-ORDER-LINE-ITEMS", "SPECIAL-ORDER-EVENTS"})
KORE_TYPES = frozenset(
    {"KS_CUSTOMERS", "KS_PRODUCTS", "KS_INVENTORY", "KS_PRICES", "KS_ORDERS", "KS_ORDER_LINES", "KS_SHIPMENTS"}
)


def bspk_error(name: str, *, company: str | None = None) -> str:
    """Return the message of the error parsing a bad BSPK name."""
    with pytest.raises(FileNameError) as caught:
        parse_bspk(name, known_types=BSPK_TYPES, company=company)
    return str(caught.value)


def kore_error(name: str, *, integration: str | None = None) -> str:
    """Return the message of the error parsing a bad Kore name."""
    with pytest.raises(FileNameError) as caught:
        parse_kore(name, known_types=KORE_TYPES, integration=integration)
    return str(caught.value)


# BSPK: valid names


def test_bspk_valid_name_gives_every_part():
    parsed = parse_bspk("SPECIAL-ORDERS_V2_AcmeRetail_202611011230.csv", known_types=BSPK_TYPES, company="AcmeRetail")

    assert parsed == ParsedName(
        name="SPECIAL-ORDERS_V2_AcmeRetail_202611011230.csv",
        convention="bspk",
        type_code="SPECIAL-ORDERS",
        order_key="202611011230",
        mode="DELTA",
        company="AcmeRetail",
        version="V2",
        made_at=datetime(2026, 11, 1, 12, 30),
    )
    assert parsed.made_at.tzinfo is None


@pytest.mark.parametrize("type_code", sorted(BSPK_TYPES))
def test_bspk_accepts_every_known_type(type_code):
    parsed = parse_bspk(f"{type_code}_V2_Acme_202601010000.csv", known_types=BSPK_TYPES)

    assert parsed.type_code == type_code


def test_bspk_without_company_argument_accepts_any_camelcase_company():
    parsed = parse_bspk("SPECIAL-ORDER-EVENTS_V2_Shop42_202612312359.csv", known_types=BSPK_TYPES)

    assert parsed.company == "Shop42"
    assert parsed.made_at == datetime(2026, 12, 31, 23, 59)


def test_bspk_accepts_leap_day():
    parsed = parse_bspk("SPECIAL-ORDERS_V2_Acme_202802291200.csv", known_types=BSPK_TYPES)

    assert parsed.made_at == datetime(2028, 2, 29, 12, 0)


@pytest.mark.parametrize(
    "path",
    [
        "/srv/inbox/acme/SPECIAL-ORDERS_V2_Acme_202611011200.csv",
        "inbox/SPECIAL-ORDERS_V2_Acme_202611011200.csv",
        r"C:\inbox\acme\SPECIAL-ORDERS_V2_Acme_202611011200.csv",
    ],
)
def test_bspk_parses_the_base_name_of_a_path(path):
    parsed = parse_bspk(path, known_types=BSPK_TYPES)

    assert parsed.name == "SPECIAL-ORDERS_V2_Acme_202611011200.csv"


def test_bspk_order_key_sorts_by_timestamp():
    names = [
        "SPECIAL-ORDER-EVENTS_V2_Acme_202701010000.csv",
        "SPECIAL-ORDERS_V2_Acme_202611011201.csv",
        "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611011200.csv",
        "SPECIAL-ORDERS_V2_Acme_202512312359.csv",
    ]

    ordered = sorted((parse_bspk(name, known_types=BSPK_TYPES) for name in names), key=lambda p: p.order_key)

    assert [p.made_at for p in ordered] == sorted(p.made_at for p in ordered)
    assert [p.name for p in ordered] == [names[3], names[2], names[1], names[0]]


# BSPK: bad parts


@pytest.mark.parametrize(
    "name",
    [
        "SPECIAL-ORDERS_V2_202611011200.csv",
        "SPECIAL-ORDERS_V2_Acme_Retail_202611011200.csv",
        "SPECIAL-ORDERS.csv",
    ],
)
def test_bspk_rejects_wrong_count_of_parts_with_expected_shape(name):
    message = bspk_error(name)

    assert message.startswith(f"{name}: ")
    assert "TYPE_VERSION_CompanyName_YYYYMMDDHHMM.csv" in message


def test_bspk_rejects_unknown_type_listing_known_types():
    message = bspk_error("FOO_V2_Acme_202611011200.csv")

    assert message == (
        "FOO_V2_Acme_202611011200.csv: unknown type 'FOO' "
        "(known: SPECIAL-ORDER-EVENTS, SPECIAL-ORDER-LINE-ITEMS, SPECIAL-ORDERS)"
    )


def test_bspk_type_is_case_sensitive():
    message = bspk_error("special-orders_V2_Acme_202611011200.csv")

    assert "unknown type 'special-orders'" in message


@pytest.mark.parametrize("version", ["V1", "V3", "V20"])
def test_bspk_rejects_other_version(version):
    name = f"SPECIAL-ORDERS_{version}_Acme_202611011200.csv"

    assert bspk_error(name) == f"{name}: version '{version}' is not supported (expected V2)"


@pytest.mark.parametrize("version", ["v2", "2", "VX", "V", "V2a"])
def test_bspk_rejects_what_is_not_a_version(version):
    name = f"SPECIAL-ORDERS_{version}_Acme_202611011200.csv"

    assert bspk_error(name) == f"{name}: '{version}' is not a version (expected V2)"


def test_bspk_rejects_company_other_than_the_connections():
    name = "SPECIAL-ORDERS_V2_Acme_202611011200.csv"

    assert bspk_error(name, company="AcmeRetail") == (
        f"{name}: company 'Acme' does not match the connection's company 'AcmeRetail'"
    )


def test_bspk_company_comparison_is_case_sensitive():
    message = bspk_error("SPECIAL-ORDERS_V2_AcmeRetail_202611011200.csv", company="Acmeretail")

    assert "company 'AcmeRetail' does not match the connection's company 'Acmeretail'" in message


@pytest.mark.parametrize("company", ["acme", "Acme-Retail", "4Acme", "Acmé", ""])
def test_bspk_rejects_company_that_is_not_camelcase(company):
    name = f"SPECIAL-ORDERS_V2_{company}_202611011200.csv"

    message = bspk_error(name)

    assert message.startswith(f"{name}: company '{company}' is not a CamelCase name")


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026130112",
        "20261101120",
        "2026110112000",
        "202613011200",
        "202602301200",
        "202611012400",
        "202611011260",
        "202611001200",
        "2026110112ab",
        "\u0662\u0660\u0662\u0666\u0661\u0661\u0660\u0661\u0661\u0662\u0660\u0660",
    ],
)
def test_bspk_rejects_bad_timestamp(timestamp):
    name = f"SPECIAL-ORDERS_V2_Acme_{timestamp}.csv"

    assert bspk_error(name) == f"{name}: timestamp '{timestamp}' is not YYYYMMDDHHMM"


def test_bspk_rejects_upper_case_extension_saying_lower_case():
    name = "SPECIAL-ORDERS_V2_Acme_202611011200.CSV"

    assert bspk_error(name) == f"{name}: extension '.CSV' must be lower case '.csv'"


@pytest.mark.parametrize("extension", ["txt", "tsv", "csv.zip"])
def test_bspk_rejects_other_extension(extension):
    name = f"SPECIAL-ORDERS_V2_Acme_202611011200.{extension}"

    message = bspk_error(name)

    assert message.startswith(f"{name}: extension '.")
    assert "is not .csv" in message


def test_bspk_rejects_name_without_extension():
    name = "SPECIAL-ORDERS_V2_Acme_202611011200"

    assert bspk_error(name) == f"{name}: no extension (expected .csv)"


# Kore: valid names


def test_kore_vendor_example_is_the_short_form():
    parsed = parse_kore("DT_000001_KS_ORDERS.NET", known_types=KORE_TYPES, integration="INT7")

    assert parsed == ParsedName(
        name="DT_000001_KS_ORDERS.NET",
        convention="kore",
        type_code="KS_ORDERS",
        order_key="000000000001",
        mode="NET",
        sequence=1,
        integration=None,
        source="DT",
    )


def test_kore_full_form_with_seven_digit_sequence():
    parsed = parse_kore("ERP_0000042_INT7_KS_CUSTOMERS.FULL", known_types=KORE_TYPES, integration="INT7")

    assert parsed == ParsedName(
        name="ERP_0000042_INT7_KS_CUSTOMERS.FULL",
        convention="kore",
        type_code="KS_CUSTOMERS",
        order_key="000000000042",
        mode="FULL",
        sequence=42,
        integration="INT7",
        source="ERP",
    )


def test_kore_without_integration_argument_accepts_any_integration():
    parsed = parse_kore("ERP_0000042_Other9_KS_PRICES.NET", known_types=KORE_TYPES)

    assert parsed.integration == "Other9"


def test_kore_takes_the_longest_known_api_suffix():
    parsed = parse_kore("ERP_0000043_INT7_KS_ORDER_LINES.NET", known_types=KORE_TYPES | {"ORDER_LINES", "LINES"})

    assert parsed.type_code == "KS_ORDER_LINES"
    assert parsed.integration == "INT7"


def test_kore_integration_may_contain_underscores():
    parsed = parse_kore("ERP_0000043_SHOP_EU_KS_ORDERS.NET", known_types=KORE_TYPES, integration="SHOP_EU")

    assert parsed.integration == "SHOP_EU"
    assert parsed.type_code == "KS_ORDERS"


def test_kore_short_form_of_api_with_underscores():
    parsed = parse_kore("DT_000002_KS_ORDER_LINES.FULL", known_types=KORE_TYPES)

    assert parsed.integration is None
    assert parsed.type_code == "KS_ORDER_LINES"


def test_kore_parses_the_base_name_of_a_path():
    parsed = parse_kore(r"D:\inbox\kore\DT_000001_KS_ORDERS.NET", known_types=KORE_TYPES)

    assert parsed.name == "DT_000001_KS_ORDERS.NET"
    assert parse_kore("/inbox/kore/DT_000001_KS_ORDERS.NET", known_types=KORE_TYPES).name == parsed.name


def test_kore_order_key_sorts_by_sequence_number_across_six_and_seven_digits():
    names = [
        "DT_0000010_INT7_KS_ORDERS.NET",
        "DT_000009_KS_ORDERS.NET",
        "DT_0000002_INT7_KS_CUSTOMERS.FULL",
        "DT_000100_KS_SHIPMENTS.NET",
        "DT_9999999_INT7_KS_ORDERS.NET",
        "DT_000011_KS_ORDERS.NET",
    ]

    ordered = sorted((parse_kore(name, known_types=KORE_TYPES) for name in names), key=lambda p: p.order_key)

    assert [p.sequence for p in ordered] == [2, 9, 10, 11, 100, 9999999]
    assert sorted(names) != [p.name for p in ordered]


# Kore: bad parts


@pytest.mark.parametrize("mode", ["DIFF", "net", "Full", "TXT", ""])
def test_kore_rejects_bad_mode(mode):
    name = f"DT_000001_KS_ORDERS.{mode}"

    assert kore_error(name) == f"{name}: mode '{mode}' is not FULL or NET"


def test_kore_rejects_name_without_mode():
    name = "DT_000001_KS_ORDERS"

    assert kore_error(name) == f"{name}: no mode extension (expected .FULL or .NET)"


@pytest.mark.parametrize("name", ["DT_000001.NET", "DT.NET"])
def test_kore_rejects_too_few_parts_with_expected_shape(name):
    message = kore_error(name)

    assert message.startswith(f"{name}: ")
    assert "{source}_{sequence}_{integration}_{API}.{mode}" in message


@pytest.mark.parametrize("source", ["D-T", "D T", "", "DÉ"])
def test_kore_rejects_bad_source(source):
    name = f"{source}_000001_KS_ORDERS.NET"

    assert kore_error(name) == f"{name}: source '{source}' is not letters and digits"


@pytest.mark.parametrize(
    "sequence", ["abc", "00001", "00000001", "1", "00000a1", "", "\u0660\u0660\u0660\u0660\u0660\u0661"]
)
def test_kore_rejects_bad_sequence(sequence):
    name = f"DT_{sequence}_KS_ORDERS.NET"

    assert kore_error(name) == f"{name}: sequence '{sequence}' is not a 6 or 7 digit number"


def test_kore_rejects_integration_other_than_the_connections():
    name = "ERP_0000042_X_KS_CUSTOMERS.FULL"

    assert kore_error(name, integration="Y") == (
        f"{name}: integration 'X' does not match the connection's integration 'Y'"
    )


@pytest.mark.parametrize("name", ["ERP_0000042__KS_CUSTOMERS.FULL", "ERP_0000042_A__KS_CUSTOMERS.FULL"])
def test_kore_rejects_malformed_integration(name):
    message = kore_error(name)

    assert message.startswith(f"{name}: integration '")
    assert "is not letters and digits" in message


def test_kore_rejects_unknown_api_listing_known_types():
    name = "ERP_0000042_INT7_KS_FOO.FULL"

    message = kore_error(name, integration="INT7")

    assert message == (
        f"{name}: unknown API in 'INT7_KS_FOO' (known: KS_CUSTOMERS, KS_INVENTORY, KS_ORDERS, "
        "KS_ORDER_LINES, KS_PRICES, KS_PRODUCTS, KS_SHIPMENTS)"
    )


def test_kore_rejects_unknown_api_of_short_form():
    assert kore_error("DT_000001_FOO.NET").startswith("DT_000001_FOO.NET: unknown API in 'FOO' (known: KS_CUSTOMERS")


def test_kore_api_is_case_sensitive():
    assert "unknown API in 'ks_orders'" in kore_error("DT_000001_ks_orders.NET")


def test_kore_without_known_types_rejects_every_api():
    with pytest.raises(FileNameError, match=r"unknown API in 'KS_ORDERS' \(known: none\)"):
        parse_kore("DT_000001_KS_ORDERS.NET", known_types=())


# Dispatch by convention


def test_parse_file_name_dispatches_to_bspk():
    parsed = parse_file_name(
        "SPECIAL-ORDERS_V2_Acme_202611011200.csv", convention="bspk", known_types=BSPK_TYPES, company="Acme"
    )

    assert parsed.convention == "bspk"


def test_parse_file_name_dispatches_to_kore():
    parsed = parse_file_name(
        "ERP_0000042_INT7_KS_CUSTOMERS.FULL", convention="kore", known_types=KORE_TYPES, integration="INT7"
    )

    assert parsed.convention == "kore"


def test_parse_file_name_checks_the_convention_arguments():
    with pytest.raises(FileNameError, match="company 'Acme' does not match"):
        parse_file_name(
            "SPECIAL-ORDERS_V2_Acme_202611011200.csv", convention="bspk", known_types=BSPK_TYPES, company="Other"
        )
    with pytest.raises(FileNameError, match="integration 'INT7' does not match"):
        parse_file_name(
            "ERP_0000042_INT7_KS_CUSTOMERS.FULL", convention="kore", known_types=KORE_TYPES, integration="INT8"
        )


def test_parse_file_name_rejects_unknown_convention():
    with pytest.raises(FileNameError, match=r"^DT_000001_KS_ORDERS\.NET: unknown naming convention 'xml'"):
        parse_file_name("DT_000001_KS_ORDERS.NET", convention="xml", known_types=KORE_TYPES)


def test_a_bspk_name_does_not_parse_as_kore_nor_the_reverse():
    with pytest.raises(FileNameError):
        parse_file_name("SPECIAL-ORDERS_V2_Acme_202611011200.csv", convention="kore", known_types=KORE_TYPES)
    with pytest.raises(FileNameError):
        parse_file_name("DT_000001_KS_ORDERS.NET", convention="bspk", known_types=BSPK_TYPES)


# Guessing and best-effort lookups


@pytest.mark.parametrize(
    ("name", "convention"),
    [
        ("SPECIAL-ORDERS_V2_Acme_202611011200.csv", "bspk"),
        ("SPECIAL-ORDERS_V3_Acme_202611011200.csv", "bspk"),
        ("FOO_V1_lower_202613011200.csv", "bspk"),
        ("/inbox/SPECIAL-ORDERS_V2_Acme_202611011200.csv", "bspk"),
        ("DT_000001_KS_ORDERS.NET", "kore"),
        ("ERP_0000042_INT7_KS_CUSTOMERS.FULL", "kore"),
        ("anything.FULL", "kore"),
        ("DT_000001_KS_ORDERS.net", None),
        ("SPECIAL-ORDERS_V2_Acme_2026110112.csv", None),
        ("SPECIAL-ORDERS_2_Acme_202611011200.csv", None),
        ("readme.txt", None),
        ("", None),
    ],
)
def test_guess_convention(name, convention):
    assert guess_convention(name) == convention


@pytest.mark.parametrize(
    ("name", "company"),
    [
        ("SPECIAL-ORDERS_V2_AcmeRetail_202611011200.csv", "AcmeRetail"),
        ("FOO_V9_acme_2026.csv", "acme"),
        (r"C:\in\SPECIAL-ORDERS_V2_Acme_202611011200.CSV", "Acme"),
        ("SPECIAL-ORDERS_V2__202611011200.csv", None),
        ("SPECIAL-ORDERS_V2_202611011200.csv", None),
        ("DT_000001_KS_ORDERS.NET", None),
        ("readme.txt", None),
    ],
)
def test_company_of(name, company):
    assert company_of(name) == company


@pytest.mark.parametrize(
    ("name", "integration"),
    [
        ("ERP_0000042_INT7_KS_CUSTOMERS.FULL", "INT7"),
        ("ERP_0000042_SHOP_EU_KS_ORDER_LINES.NET", "SHOP_EU"),
        ("/in/ERP_0000042_INT7_KS_ORDERS.net", "INT7"),
        ("DT_000001_KS_ORDERS.NET", None),
        ("ERP_0000042_INT7_KS_FOO.FULL", "INT7"),
        ("DT_000001_FOO.NET", None),
        ("DT_000001.NET", None),
        ("readme.txt", None),
    ],
)
def test_integration_of(name, integration):
    assert integration_of(name, known_types=KORE_TYPES) == integration
