"""A shop platform's 19-column customers export (SPEC section 2) and the descriptor an admin makes for it."""

import csv
from pathlib import Path

SHOP_HEADER = [
    "First Name",
    "Last Name",
    "Email",
    "Company",
    "Address1",
    "Address2",
    "City",
    "Province",
    "Province Code",
    "Country",
    "Country Code",
    "Zip",
    "Phone",
    "Accepts Marketing",
    "Total Spent",
    "Total Orders",
    "Tags",
    "Note",
    "Tax Exempt",
]
# What a customer has a field for; the rest is declared and ignored (a customer has no address, tags or totals).
SHOP_FIELDS = {"First Name": "first_name", "Last Name": "last_name", "Email": "email", "Company": "company_name"}
SHOP_PATTERN = "customers_export*.csv"


def shop_columns() -> list[dict]:
    """Return the shop descriptor's columns as an admin fills the inline rows: position, name, field, flags."""
    columns = []
    for position, name in enumerate(SHOP_HEADER, start=1):
        field = SHOP_FIELDS.get(name, "")
        columns.append(
            {
                "position": position,
                "name": name,
                "field": field,
                "type": "string",
                "required": name == "Email",
                "is_key": name == "Email",
                "ignored": not field,
            }
        )
    return columns


def shop_row(first: str, last: str, email: str, *, company: str = "", marketing: str = "yes") -> list[str]:
    """Return one row of the shop's export."""
    return [
        first,
        last,
        email,
        company,
        "1 High Street",
        "",
        "Leeds",
        "West Yorkshire",
        "WYK",
        "United Kingdom",
        "GB",
        "LS1 1AA",
        "+44 113 000 0000",
        marketing,
        "120.50",
        "3",
        "vip, newsletter",
        'Likes "blue", and quotes',
        "no",
    ]


SHOP_ROWS = [
    shop_row("Ann", "Archer", "ann@example.com", company="Archer Ltd"),
    shop_row("Bob", "Baker", "", marketing="no"),  # row 3: no e-mail
    shop_row("Cy", "Cole", "cy@example.com"),
    shop_row("Ann", "Again", "ann@example.com"),  # row 5: repeats row 2's e-mail
    shop_row("Dee", "Dunn", "dee@example.com", company="Dunn & Co"),
]


def write_shop_file(
    folder: Path,
    name: str = "customers_export.csv",
    rows: list[list[str]] = SHOP_ROWS,
    *,
    header: list[str] = SHOP_HEADER,
) -> Path:
    """Write the shop's customers export (CSV, comma, UTF-8, header row) and return its path."""
    path = Path(folder) / name
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path
