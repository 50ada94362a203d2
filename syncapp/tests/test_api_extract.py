"""Paged extraction (SPEC section 10): GET /api/extract/{customers,special-orders,orders}/ by a stable cursor."""

from datetime import timedelta

import pytest
from django.utils import timezone

from impex.tests.helpers import customer_row, special_order_row
from orders.tests.helpers import import_catalogue, import_orders, import_rows, line_row, order_row
from syncapp.models import Customer

URL = "/api/extract/customers/"


def page(api, url=URL, **query):
    response = api.get(url, **query)
    assert response.status_code == 200, response.content
    return response.json()


def extract_all(api, url=URL, *, between=None, **query) -> list[dict]:
    """Page to the end; between(n) runs after the n-th page (the data changing meanwhile)."""
    records, cursor, n = [], None, 0
    while True:
        params = dict(query)
        if cursor:
            params["cursor"] = cursor
        body = page(api, url, **params)
        records += body["results"]
        cursor = body["next_cursor"]
        n += 1
        if cursor is None:
            return records
        if between is not None:
            between(n)


@pytest.fixture
def customers(tmp_path, kore_connection):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row(f"C-{n:03}", first_name=f"N{n}") for n in range(1, 26)])


def test_a_page_has_the_descriptor_columns_plus_updated_at(api, customers):
    body = page(api, limit=2)

    assert len(body["results"]) == 2
    assert body["next_cursor"]
    record = body["results"][0]
    assert list(record) == [
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "company_name",
        "group",
        "accounting_id",
        "price_list",
        "discount_percentage",
        "payment_on_account",
        "parent_customer_id",
        "active",
        "updated_at",
    ]
    assert record["active"] is True
    assert record["parent_customer_id"] is None


def test_paging_returns_every_record_once_when_nothing_changes(api, customers):
    records = extract_all(api, limit=7)

    assert sorted(r["customer_id"] for r in records) == [f"C-{n:03}" for n in range(1, 26)]
    assert len(records) == 25


def test_records_changed_between_pages_are_not_skipped(api, customers):
    def change(n):
        # Change records not yet returned and some already returned, and add new ones, between pages.
        Customer.objects.get(customer_id=f"C-{25 - n:03}").save()
        Customer.objects.get(customer_id=f"C-{n:03}").save()
        Customer.objects.create(customer_id=f"NEW-{n}", email=f"new{n}@example.com")

    records = extract_all(api, limit=5, between=change)

    ids = {r["customer_id"] for r in records}
    assert {f"C-{n:03}" for n in range(1, 26)} <= ids
    stamps = [(r["updated_at"]) for r in records]
    assert stamps == sorted(stamps)


def test_updated_since_filters_and_the_oldest_change_comes_first(api, customers):
    since = timezone.now()
    Customer.objects.filter(customer_id="C-010").update(first_name="Later", updated_at=since + timedelta(seconds=2))
    Customer.objects.filter(customer_id="C-003").update(first_name="Late", updated_at=since + timedelta(seconds=1))

    body = page(api, updated_since=since.isoformat())

    assert [(r["customer_id"], r["first_name"]) for r in body["results"]] == [("C-003", "Late"), ("C-010", "Later")]
    assert body["next_cursor"] is None


def test_special_orders_and_orders(api, tmp_path, bspk_connection, kore_connection):
    from impex.tests.helpers import run_import, write_bspk

    code, report = run_import(write_bspk(tmp_path, "SPECIAL-ORDERS", [special_order_row("SO-1")]))
    assert code == 0, report
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1", total="12.50")], [line_row("O1", 1)])

    (special,) = page(api, "/api/extract/special-orders/")["results"]
    (order,) = page(api, "/api/extract/orders/")["results"]

    assert special["special_order_id"] == "SO-1"
    assert "created_at" in special and "updated_at" in special
    assert (order["order_id"], order["customer_id"], order["total"]) == ("O1", "CU1", "12.5")


@pytest.mark.parametrize(
    "query, field",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"updated_since": "last week"}, "updated_since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_parameters_are_400(api, customers, query, field):
    response = api.get(URL, **query)

    assert response.status_code == 400
    assert field in response.json()


def test_limit_1000_and_the_default_100(api, tmp_path, kore_connection):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row(f"C-{n:04}") for n in range(150)])

    assert len(page(api)["results"]) == 100
    assert len(page(api, limit=1000)["results"]) == 150


def test_unknown_entity_is_404_and_a_wrong_token_401(api, customers):
    assert api.get("/api/extract/spaceships/").status_code == 404
    assert api.get(URL, token="wrong").status_code == 401
    assert api.client.get(URL).status_code == 401
