"""Single-record updates applied in batches (issue 18): a pass costs the same queries for 10 updates as for 100, and
each update of a mixed batch gets its own outcome, as when they were applied one at a time."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from impex.models import DataDescriptor, Problem, WebhookDelivery, WebhookSubscription
from impex.tests.helpers import customer_row, product_row
from orders.tests.helpers import import_rows
from syncapp.models import Customer, ProductVariant, RecordEvent, SyncError
from syncapp.record_events import record_events_pass

CUSTOMERS = "/api/events/customers/"
PRODUCTS = "/api/events/products/"


def a_pass() -> dict[str, tuple[str, str]]:
    """Run a pass; return each report's record, status and message by record."""
    return {r.record: (r.status, r.message) for r in record_events_pass(by="test")}


def queries_of_a_pass() -> int:
    with CaptureQueriesContext(connection) as queries:
        reports = record_events_pass(by="test")
    assert {r.status for r in reports} == {"applied"}, reports
    return len(queries)


@pytest.mark.parametrize(
    "url, rows, change",
    [
        (
            CUSTOMERS,
            ("KS_CUSTOMERS", [customer_row(f"C-{n:03}") for n in range(100)]),
            lambda n, version: {"customer_id": f"C-{n:03}", "last_name": f"v{version}"},
        ),
        (
            PRODUCTS,
            ("KS_PRODUCTS", [product_row(f"P{n // 4}", f"V{n:03}", f"SKU{n:03}") for n in range(100)]),
            lambda n, version: {"variant_id": f"V{n:03}", "rrp": f"{version}.5", "status": "discontinued"},
        ),
    ],
    ids=["customers", "products"],
)
def test_a_pass_costs_the_same_queries_for_10_updates_as_for_100(api, tmp_path, url, rows, change):
    import_rows(tmp_path, *rows)
    # Someone listens: each batch announces its changes.
    WebhookSubscription.objects.create(
        code="crm", url="https://crm.example/hooks", events=["customer.updated"], secret="k"
    )
    counts = {}
    for version, size in enumerate((1, 10, 100)):  # the first pass makes what every later pass finds
        for n in range(size):
            assert api.post(url, change(n, version)).status_code == 202

        counts[size] = queries_of_a_pass()

    assert counts[10] == counts[100], counts
    assert not RecordEvent.objects.exclude(status="applied").exists()
    if url == CUSTOMERS:
        assert set(Customer.objects.values_list("last_name", flat=True)) == {"v2"}
        assert WebhookDelivery.objects.count() == 3  # one event per batch, with the ids of its customers
    else:
        assert ProductVariant.objects.filter(rrp="2.5", status="discontinued").count() == 100


def test_each_update_of_a_mixed_batch_gets_its_own_outcome(api, tmp_path, kore_connection):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row(f"C-{n}") for n in range(1, 5)])
    before = dict(Customer.objects.values_list("customer_id", "updated_at"))
    # The same columns each, so one pipeline call applies them together.
    sent = {
        "C-1": {"email": "c1-new@example.com", "payment_on_account": "", "parent_customer_id": ""},
        "C-2": {"email": "c-2@example.com", "payment_on_account": "true", "parent_customer_id": ""},
        "C-3": {"email": "c-3@example.com", "payment_on_account": "", "parent_customer_id": "P-9"},
        "C-4": {"email": "c-4@example.com", "payment_on_account": "", "parent_customer_id": ""},  # as stored
    }
    events = {key: api.post(CUSTOMERS, {"customer_id": key, **body}).json()["event"] for key, body in sent.items()}
    events["C-9"] = api.post(CUSTOMERS, {"customer_id": "C-9", "first_name": "No Email"}).json()["event"]
    # The descriptor's boolean words changed after C-2's update was accepted: its "true" no longer reads.
    DataDescriptor.objects.filter(code="KS_CUSTOMERS").update(true_words="yes", false_words="no")

    reports = a_pass()

    assert reports["C-1"] == ("applied", "C-1 updated")
    assert reports["C-2"] == ("failed", "'true' is not a boolean (use yes or no)")
    assert reports["C-3"][0] == "pending"
    assert reports["C-3"][1].startswith("unknown customer 'P-9' (try 1 of 10; next in")
    assert reports["C-4"] == ("unchanged", "C-4 unchanged: nothing written")
    assert reports["C-9"] == ("failed", "a new customer needs email")
    stored = {e.record_key: e for e in RecordEvent.objects.all()}
    assert {key: e.status for key, e in stored.items()} == {key: status for key, (status, _) in reports.items()}
    assert {key: e.message for key, e in stored.items()} == {key: message for key, (_, message) in reports.items()}
    assert {e.attempts for e in stored.values()} == {1}
    assert stored["C-3"].applied_at is None and stored["C-3"].next_attempt_at > timezone.now() + timedelta(seconds=50)
    assert all(e.applied_at is not None for key, e in stored.items() if key != "C-3")
    assert (stored["C-1"].result, stored["C-4"].result) == ("updated", "unchanged")
    customers = {c.customer_id: c for c in Customer.objects.all()}
    assert customers["C-1"].email == "c1-new@example.com"
    assert customers["C-2"].payment_on_account is None
    assert customers["C-3"].parent is None
    assert customers["C-4"].updated_at == before["C-4"]
    assert "C-9" not in customers
    errors = {e.external_id: (e.message, e.record_event_id) for e in SyncError.objects.filter(log__entity="customer")}
    assert errors == {
        "C-2": ("payment_on_account: 'true' is not a boolean (use yes or no)", events["C-2"]),
        "C-9": ("a new customer needs email", events["C-9"]),
    }
    problems = set(Problem.objects.filter(resolved_at__isnull=True).values_list("key", flat=True))
    assert problems == {f"record-event:{events['C-2']}", f"record-event:{events['C-9']}"}


def test_a_write_the_database_refuses_is_tried_again_alone_and_the_rest_of_its_batch_applies(api, tmp_path):
    import_rows(tmp_path, "KS_PRODUCTS", [product_row("P1", f"V{n}", f"SKU{n}") for n in range(1, 4)])
    api.post(PRODUCTS, {"variant_id": "V2", "sku": "SKU1"})  # V1 has that SKU: the unique index refuses it
    api.post(PRODUCTS, {"variant_id": "V3", "sku": "SKU3-NEW"})

    reports = a_pass()

    assert reports["V3"] == ("applied", "V3 updated")
    assert reports["V2"][0] == "pending"
    assert "the database refused the write" in reports["V2"][1] and "(try 1 of 10" in reports["V2"][1]
    assert dict(ProductVariant.objects.values_list("variant_id", "sku")) == {
        "V1": "SKU1",
        "V2": "SKU2",
        "V3": "SKU3-NEW",
    }


def test_a_customer_sent_before_its_new_parent_applies_with_it_in_one_batch(api, tmp_path):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row("C-1")])
    api.post(CUSTOMERS, {"customer_id": "C-1", "email": "c-1@example.com", "parent_customer_id": "P-1"})
    api.post(CUSTOMERS, {"customer_id": "P-1", "email": "p-1@example.com", "parent_customer_id": ""})

    reports = a_pass()

    # As in a file: the batch writes the parent, then the customer that names it.
    assert reports == {"C-1": ("applied", "C-1 updated"), "P-1": ("applied", "P-1 created")}
    assert Customer.objects.get(customer_id="C-1").parent.customer_id == "P-1"


def test_an_update_that_breaks_its_batch_is_set_aside_alone_and_the_others_apply(api, tmp_path, kore_connection):
    import_rows(tmp_path, "KS_CUSTOMERS", [customer_row("C-1"), customer_row("C-2"), customer_row("C-3")])
    api.post(CUSTOMERS, {"customer_id": "C-1", "last_name": "One"})
    # A row no release of the hub writes (a payload is a JSON object): applying it raises a TypeError.
    broken = RecordEvent.objects.create(
        connection=kore_connection, entity="customer", descriptor_code="KS_CUSTOMERS", record_key="C-2", payload=5
    )
    api.post(CUSTOMERS, {"customer_id": "C-3", "last_name": "Three"})

    outcome = a_pass()

    assert outcome == {"C-1": ("applied", "C-1 updated"), "C-3": ("applied", "C-3 updated")}
    broken.refresh_from_db()
    assert (broken.status, broken.attempts, broken.claimed_by) == ("pending", 1, "")
    assert broken.message.startswith("unexpected error: TypeError") and "(try 1 of" in broken.message
    assert broken.next_attempt_at > timezone.now()
    assert dict(Customer.objects.values_list("customer_id", "last_name"))["C-3"] == "Three"
