"""An approval gate decides before any other chain sends the order anywhere (SPEC section 7, issue 16 H3): a held
order runs no exporter of any chain, whichever flag a pass takes first, until staff approve it."""

import pytest

from orders.models import Order, OrderExportRun, OrderFlag
from orders.services import order_approve
from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row


def states() -> dict[str, str]:
    return dict(Order.objects.values_list("order_id", "state"))


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("ana", "ana@example.com", "pw")


# "crm" comes after the gate's flag "approval" in a pass's batch (the gate held the order, then the other chain sent
# it anyway); "a-crm" comes before it (the other chain sent the order before the gate had decided).
@pytest.mark.parametrize("other_flag", ["crm", "a-crm"])
def test_a_second_chain_from_confirm_never_sends_an_order_the_gate_holds_and_sends_it_once_approved(
    tmp_path, kore_connection, webhook_receiver, admin_user, other_flag
):
    configure("gate", "--flag", "approval", "--kind", "approval", "--min-total", "500", "--next-flag", "erp")
    configure("erp", "--flag", "erp", "--kind", "file", "--descriptor", "KS_ORDERS")
    configure("crm", "--flag", other_flag, "--kind", "webhook", "--url", webhook_receiver.url, "--secret", "k")
    import_catalogue(tmp_path)
    import_orders(
        tmp_path, [order_row("O1", total="900"), order_row("O2", total="10")], [line_row("O1", 1), line_row("O2", 1)]
    )
    # confirm starts both chains: each order carries the gate's flag and the other chain's.
    assert sorted(OrderFlag.objects.values_list("order__order_id", "flag")) == sorted(
        (o, f) for o in ("O1", "O2") for f in ("approval", other_flag)
    )

    runs = export_pass()

    assert states() == {"O1": "on_hold", "O2": "exported"}
    assert [p.json["order"]["order_id"] for p in webhook_receiver.received] == ["O2"]
    assert [(r["exporter"], r["status"]) for r in runs if r["order"] == "O1"] == [("gate", "held")]
    assert OrderFlag.objects.get(order__order_id="O1", flag=other_flag).status == "pending"
    assert export_pass() == []  # still held: nothing runs on it

    order_approve(order=Order.objects.get(order_id="O1"), user=admin_user)
    export_pass()

    assert states() == {"O1": "exported", "O2": "exported"}
    assert sorted(p.json["order"]["order_id"] for p in webhook_receiver.received) == ["O1", "O2"]
    done = list(OrderExportRun.objects.filter(order__order_id="O1", status="done").values_list("exporter_code"))
    assert sorted(done) == [("crm",), ("erp",), ("gate",)]
