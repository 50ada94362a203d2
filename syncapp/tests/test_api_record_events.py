"""Single-record updates over HTTP (SPEC section 10): POST /api/events/customers/ and products/, applied later
through the record pipeline, in the order received, with retries; each outcome patches the sync log."""

from datetime import timedelta

import pytest
from django.utils import timezone

from impex.tests.helpers import customer_row
from orders.tests.helpers import import_rows
from syncapp.models import Customer, Product, ProductVariant, RecordEvent, SyncError, SyncLog
from syncapp.record_events import record_events_pass

CUSTOMERS = "/api/events/customers/"
PRODUCTS = "/api/events/products/"


def apply_all() -> list[dict]:
    return [r.as_json() for r in record_events_pass(by="test")]


def make_due() -> None:
    RecordEvent.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def customers(tmp_path, kore_connection):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row("C-1", first_name="Ada"), customer_row("C-2")])


def test_a_changed_customer_is_202_then_applied(api, customers):
    response = api.post(CUSTOMERS, {"customer_id": "C-1", "email": "new@example.com"})

    assert response.status_code == 202
    event_id = response.json()["event"]
    assert set(response.json()) == {"event"}
    assert Customer.objects.get(customer_id="C-1").email != "new@example.com"  # applied later, not now
    assert apply_all() == [{"event": event_id, "record": "C-1", "status": "applied", "message": "C-1 updated"}]
    customer = Customer.objects.get(customer_id="C-1")
    assert customer.email == "new@example.com"
    assert customer.first_name == "Ada"  # absent columns are left alone


def test_a_new_customer_is_created_and_one_without_required_columns_fails_in_the_log(api, customers, kore_connection):
    api.post(CUSTOMERS, {"customer_id": "C-9", "email": "c9@example.com", "active": True})
    api.post(CUSTOMERS, {"customer_id": "C-10", "first_name": "No Email"})

    reports = apply_all()

    assert [r["status"] for r in reports] == ["applied", "failed"]
    assert Customer.objects.get(customer_id="C-9").active is True
    assert not Customer.objects.filter(customer_id="C-10").exists()
    error = SyncError.objects.get(log__connection=kore_connection, log__entity="customer")
    assert (error.external_id, error.message) == ("C-10", "a new customer needs email")
    assert error.record_event_id == reports[1]["event"]


def test_an_update_that_changes_nothing_writes_nothing(api, customers):
    before = Customer.objects.get(customer_id="C-1").updated_at
    api.post(CUSTOMERS, {"customer_id": "C-1", "email": customer_row("C-1")["email"]})

    (report,) = apply_all()

    assert report["status"] == "unchanged"
    assert Customer.objects.get(customer_id="C-1").updated_at == before


def test_events_of_one_record_apply_in_the_order_received(api, customers):
    for n in range(5):
        api.post(CUSTOMERS, {"customer_id": "C-1", "email": f"v{n}@example.com"})
    api.post(CUSTOMERS, {"customer_id": "C-2", "email": "other@example.com"})

    apply_all()

    assert Customer.objects.get(customer_id="C-1").email == "v4@example.com"
    applied = list(RecordEvent.objects.filter(record_key="C-1").order_by("applied_at").values_list("pk", flat=True))
    assert applied == sorted(applied)


def test_a_later_event_waits_while_an_earlier_one_of_its_record_backs_off(api, customers):
    # C-3 names a parent that is not there yet: tried again later, and the next event of C-3 waits for it.
    api.post(CUSTOMERS, {"customer_id": "C-3", "email": "c3@example.com", "parent_customer_id": "P-1"})
    api.post(CUSTOMERS, {"customer_id": "C-3", "email": "c3-second@example.com"})
    api.post(CUSTOMERS, {"customer_id": "C-2", "email": "two@example.com"})

    reports = apply_all()

    assert [(r["record"], r["status"]) for r in reports] == [("C-3", "pending"), ("C-2", "applied")]
    assert "unknown customer 'P-1'" in reports[0]["message"]
    assert "try 1 of 10" in reports[0]["message"]
    first = RecordEvent.objects.filter(record_key="C-3").order_by("pk").first()
    assert first.next_attempt_at > timezone.now() + timedelta(seconds=50)

    api.post(CUSTOMERS, {"customer_id": "P-1", "email": "parent@example.com"})
    apply_all()
    make_due()
    reports = apply_all()

    assert [(r["record"], r["status"]) for r in reports] == [("C-3", "applied"), ("C-3", "applied")]
    c3 = Customer.objects.get(customer_id="C-3")
    assert (c3.parent.customer_id, c3.email) == ("P-1", "c3-second@example.com")


def test_retries_are_used_up_then_the_event_fails_in_the_sync_log(api, customers, settings, kore_connection):
    settings.IMPEX_EVENT_MAX_ATTEMPTS = 2
    api.post(CUSTOMERS, {"customer_id": "C-3", "email": "c3@example.com", "parent_customer_id": "NOPE"})

    assert apply_all()[0]["status"] == "pending"
    make_due()
    (report,) = apply_all()

    assert report["status"] == "failed"
    assert "2 tries used up" in report["message"]
    error = SyncError.objects.get(log__entity="customer")
    assert error.external_id == "C-3"
    assert "unknown customer 'NOPE'" in error.message


def test_an_applied_event_resolves_the_open_error_of_its_record(api, customers, kore_connection):
    api.patch("/api/sync-logs/customer/", {"errors": [{"external_id": "C-1", "message": "was bad"}]})
    api.post(CUSTOMERS, {"customer_id": "C-1", "email": "fixed@example.com"})

    apply_all()

    log = SyncLog.objects.get(connection=kore_connection, entity="customer")
    assert not log.errors.exists()
    assert log.last_partial_sync is not None


def test_a_changed_product_variant(api, tmp_path, kore_connection):
    import_rows(
        tmp_path,
        "KS_PRODUCTS",
        [{"product_id": "P1", "title": "Shirt", "variant_id": "V1", "sku": "SKU1", "status": "live"}],
    )
    response = api.post(PRODUCTS, {"variant_id": "V1", "rrp": 19.5, "status": "discontinued"})
    assert response.status_code == 202

    (report,) = apply_all()

    assert report["status"] == "applied"
    variant = ProductVariant.objects.get(variant_id="V1")
    assert (str(variant.rrp), variant.status, variant.sku) == ("19.5000", "discontinued", "SKU1")
    # The product follows its variants, as after a file.
    assert Product.objects.get(product_id="P1").status == "discontinued"


@pytest.mark.parametrize(
    "url, body, field",
    [
        (CUSTOMERS, {"email": "x@example.com"}, "customer_id"),
        (CUSTOMERS, {"customer_id": "C-1", "shoe_size": "44"}, "shoe_size"),
        (CUSTOMERS, {"customer_id": "C-1", "discount_percentage": "lots"}, "discount_percentage"),
        (CUSTOMERS, {"customer_id": "C-1", "active": "perhaps"}, "active"),
        (CUSTOMERS, {"customer_id": "C-1", "email": {"a": 1}}, "email"),
        (CUSTOMERS, {"customer_id": "C-1", "first_name": "a\x00b"}, "first_name"),
        (CUSTOMERS, {"customer_id": "C-1", "first_name": "x" * 201}, "first_name"),
        (CUSTOMERS, [{"customer_id": "C-1"}], "non_field_errors"),
        (CUSTOMERS, {}, "non_field_errors"),
        (PRODUCTS, {"variant_id": "V1", "status": "gone"}, "status"),
        (PRODUCTS, {"variant_id": "V1", "restock_date": "2026-13-45"}, "restock_date"),
        (PRODUCTS, {"variant_id": "V1", "weight_in_grams": "heavy"}, "weight_in_grams"),
    ],
)
def test_a_bad_record_is_400_with_the_field_and_queues_nothing(api, customers, url, body, field):
    response = api.post(url, body)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not RecordEvent.objects.exists()


@pytest.mark.parametrize("token", ["", "wrong"])
def test_no_or_a_wrong_token_is_401(api, customers, token):
    if token:
        response = api.post(CUSTOMERS, {"customer_id": "C-1", "email": "x@example.com"}, token=token)
    else:
        response = api.client.post(CUSTOMERS, '{"customer_id": "C-1"}', content_type="application/json")

    assert response.status_code == 401
    assert not RecordEvent.objects.exists()


def test_the_schedule_task_applies_events(api, customers):
    from syncapp.tasks import record_events

    api.post(CUSTOMERS, {"customer_id": "C-2", "last_name": "Changed"})

    assert record_events() == "1 single-record update(s)"
    assert Customer.objects.get(customer_id="C-2").last_name == "Changed"
