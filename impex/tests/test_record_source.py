"""Each record has a source (SPEC section 5, issue 16 L7): the connection whose file or update created it. Files
and single-record updates of other connections change its columns, never its source, so the owner's FULL file
still retires it."""

import pytest

from impex.models import Connection
from impex.services.tokens import api_token_issue
from impex.tests.helpers import customer_row, only_file, run_import, write_kore
from syncapp.models import Customer
from syncapp.record_events import record_events_pass
from syncapp.tests.api_helpers import Api


@pytest.fixture
def shop(db):
    """A second Kore connection (integration INT2) that also sends customers."""
    return Connection.objects.create(code="kore-shop", name="Shop", convention="kore", integration_id="INT2")


def sources() -> dict[str, tuple[str, str, bool]]:
    return {c.customer_id: (c.connection.code, c.last_name, c.active) for c in Customer.objects.all()}


def test_another_connection_s_file_changes_columns_never_the_source_and_the_owner_s_full_file_retires(
    tmp_path, kore_connection, shop
):
    (tmp_path / "erp").mkdir()
    (tmp_path / "shop").mkdir()
    rows = [customer_row("C-1", last_name="Erp"), customer_row("C-2", last_name="Erp")]
    assert run_import(write_kore(tmp_path / "erp", "KS_CUSTOMERS", 1, rows, mode="FULL"))[0] == 0

    code, report = run_import(
        write_kore(
            tmp_path / "shop",
            "KS_CUSTOMERS",
            1,
            [customer_row("C-1", last_name="Shop"), customer_row("C-3", last_name="Shop")],
            integration="INT2",
        )
    )

    assert code == 0 and only_file(report)["updated"] == 1 and only_file(report)["created"] == 1
    assert sources() == {
        "C-1": ("kore-erp", "Shop", True),
        "C-2": ("kore-erp", "Erp", True),
        "C-3": ("kore-shop", "Shop", True),
    }

    code, report = run_import(write_kore(tmp_path / "erp", "KS_CUSTOMERS", 2, rows[1:], mode="FULL"))

    assert code == 0 and only_file(report)["retired"] == 1
    assert sources()["C-1"] == ("kore-erp", "Shop", False)
    assert sources()["C-3"] == ("kore-shop", "Shop", True)


def test_another_connection_s_single_record_update_changes_columns_never_the_source(
    tmp_path, client, kore_connection, shop
):
    assert run_import(write_kore(tmp_path, "KS_CUSTOMERS", 1, [customer_row("C-1", last_name="Erp")]))[0] == 0
    api = Api(client, api_token_issue(connection=shop, by="test"))

    assert api.post("/api/events/customers/", {"customer_id": "C-1", "last_name": "Shop"}).status_code == 202
    assert api.post("/api/events/customers/", {"customer_id": "C-9", "email": "c9@example.com"}).status_code == 202
    reports = record_events_pass(by="test")

    assert [(r.record, r.status) for r in reports] == [("C-1", "applied"), ("C-9", "applied")]
    assert sources() == {"C-1": ("kore-erp", "Shop", True), "C-9": ("kore-shop", "", True)}
