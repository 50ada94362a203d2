"""The order state machine of SPEC section 7: the transition table, guards, timeline rows and flags set."""

import pytest
from django.db import transaction

from orders.choices import OrderState, OrderTransition
from orders.exceptions import IllegalTransition
from orders.models import Exporter, Order, OrderEvent, OrderFlag, TransitionFlag
from orders.services import order_transition, orders_chains_start
from orders.tests.helpers import import_catalogue, import_orders, import_rows, line_row, order_row


def test_orders_enter_new_and_are_confirmed_when_their_lines_are_in(tmp_path, kore_connection):
    import_catalogue(tmp_path)

    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O1", 2, "SKU2")])

    assert dict(Order.objects.values_list("order_id", "state")) == {"O1": "confirmed", "O2": "new"}
    (event,) = OrderEvent.objects.filter(order__order_id="O1", kind="transition")
    assert (event.transition, event.from_state, event.to_state, event.by) == ("confirm", "new", "confirmed", "import")
    assert not OrderEvent.objects.filter(order__order_id="O2").exists()

    import_rows(tmp_path, "KS_ORDER_LINES", [line_row("O2", 1)])
    assert Order.objects.get(order_id="O2").state == "confirmed"


def test_confirm_sets_the_flags_configured_for_it_or_else_the_first_flag_of_every_chain(tmp_path, kore_connection):
    Exporter.objects.create(code="gate", flag="approval", kind="approval", next_flag="erp", min_total=100)
    Exporter.objects.create(code="erp", flag="erp", kind="file", next_flag="")
    Exporter.objects.create(code="crm", flag="crm", kind="webhook", url="http://127.0.0.1:9/")
    import_catalogue(tmp_path)

    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1)])
    assert sorted(OrderFlag.objects.values_list("flag", flat=True)) == ["approval", "crm"]

    TransitionFlag.objects.create(transition="confirm", flag="erp")
    import_orders(tmp_path, [order_row("O2")], [line_row("O2", 1)])
    assert list(OrderFlag.objects.filter(order__order_id="O2").values_list("flag", flat=True)) == ["erp"]
    assert list(OrderEvent.objects.filter(order__order_id="O2", kind="flag_set").values_list("flag", "by")) == [
        ("erp", "import")
    ]


def test_orders_confirmed_before_any_exporter_existed_start_their_chains_once(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1"), order_row("O2")], [line_row("O1", 1), line_row("O2", 1)])
    order_transition(order=Order.objects.get(order_id="O2"), transition="cancel", by="test")
    assert not OrderFlag.objects.exists()

    Exporter.objects.create(code="erp", flag="erp", kind="file")
    assert orders_chains_start(by="task") == 1
    assert orders_chains_start(by="task") == 0

    assert list(OrderFlag.objects.values_list("order__order_id", "flag")) == [("O1", "erp")]


# Every (state, transition) the table allows, and where it leads; every other pair must be refused.
ALLOWED = {
    (OrderState.NEW, OrderTransition.CONFIRM): OrderState.CONFIRMED,
    (OrderState.CONFIRMED, OrderTransition.HOLD): OrderState.ON_HOLD,
    (OrderState.ON_HOLD, OrderTransition.APPROVE): OrderState.CONFIRMED,
    (OrderState.ON_HOLD, OrderTransition.REJECT): OrderState.CANCELLED,
    (OrderState.CONFIRMED, OrderTransition.MARK_EXPORTED): OrderState.EXPORTED,
    **{
        (s, OrderTransition.SHIP_PARTIALLY): OrderState.PARTIALLY_SHIPPED
        for s in ("confirmed", "exported", "partially_shipped")
    },
    **{(s, OrderTransition.SHIP): OrderState.SHIPPED for s in ("confirmed", "exported", "partially_shipped")},
    (OrderState.SHIPPED, OrderTransition.COMPLETE): OrderState.COMPLETED,
    **{(s, OrderTransition.CANCEL): OrderState.CANCELLED for s in ("new", "confirmed", "on_hold", "exported")},
}


def _order_in(state: str) -> Order:
    """An order with two lines, put in the state by updating the row (the table under test is not used to get there:
    the base manager's plain queryset, as Order.objects refuses to write a state)."""
    order = Order.objects.get(order_id="O1")
    Order._base_manager.filter(pk=order.pk).update(state=state)
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def order_with_lines(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    import_orders(tmp_path, [order_row("O1")], [line_row("O1", 1), line_row("O1", 2, "SKU2")])
    return Order.objects.get(order_id="O1")


@pytest.mark.parametrize("state", OrderState.values)
@pytest.mark.parametrize("transition", OrderTransition.values)
def test_every_transition_the_table_does_not_allow_is_refused_and_changes_nothing(order_with_lines, state, transition):
    order = _order_in(state)
    if transition in ("ship", "complete"):
        order.lines.update(shipped_at="2026-11-02T10:00:00Z")
    if transition == "ship_partially":
        order.lines.filter(line_no=1).update(shipped_at="2026-11-02T10:00:00Z")
    events_before = OrderEvent.objects.count()
    updated_before = Order.objects.get(pk=order.pk).updated_at

    if (state, transition) in ALLOWED:
        moved = order_transition(order=order, transition=transition, by="test", reason="table")
        assert moved.state == ALLOWED[(state, transition)]
        last = OrderEvent.objects.filter(order=order, kind="transition").last()
        assert (last.from_state, last.to_state, last.transition, last.by, last.message) == (
            state,
            ALLOWED[(state, transition)],
            transition,
            "test",
            "table",
        )
        return
    with pytest.raises(IllegalTransition, match=f"order O1 can't {transition}: it is {state}"):
        order_transition(order=order, transition=transition, by="test")
    after = Order.objects.get(pk=order.pk)
    assert (after.state, after.updated_at) == (state, updated_before)
    assert OrderEvent.objects.count() == events_before


@pytest.mark.parametrize(
    ("state", "transition", "shipped", "why"),
    [
        ("new", "confirm", None, "it has no lines"),
        ("confirmed", "ship", [1], "not every line has shipped"),
        ("partially_shipped", "ship", [], "not every line has shipped"),
        ("shipped", "complete", [2], "not every line has shipped"),
        ("exported", "ship_partially", [1, 2], "every line has shipped"),
    ],
)
def test_a_guard_refuses_with_its_reason_and_changes_nothing(order_with_lines, state, transition, shipped, why):
    order = _order_in(state)
    if shipped is None:
        order.lines.all().delete()
    else:
        order.lines.filter(line_no__in=shipped).update(shipped_at="2026-11-02T10:00:00Z")

    with pytest.raises(IllegalTransition, match=f"order O1 can't {transition}: {why}"):
        order_transition(order=order, transition=transition, by="test")
    assert Order.objects.get(pk=order.pk).state == state


def test_cancelling_drops_the_flags_waiting_on_the_order(order_with_lines):
    from orders.services import flag_set

    flag_set(order=order_with_lines, flag="erp", by="test")

    order_transition(order=order_with_lines, transition="cancel", by="ana", reason="duplicate order")

    assert not OrderFlag.objects.filter(order=order_with_lines).exists()
    assert OrderEvent.objects.filter(order=order_with_lines, kind="note", message="flags dropped: erp").exists()


def test_state_cannot_be_assigned_directly(order_with_lines):
    with pytest.raises(AttributeError):
        order_with_lines.state = "completed"


def test_a_queryset_update_or_bulk_update_cannot_write_the_state_only_a_transition_can(order_with_lines):
    order = Order.objects.get(pk=order_with_lines.pk)

    with pytest.raises(IllegalTransition, match="changes only by a transition"):
        Order.objects.filter(pk=order.pk).update(state="shipped")
    order.__dict__["state"] = "shipped"  # as a bulk path would carry it, past the protected field
    with pytest.raises(IllegalTransition, match="changes only by a transition"), transaction.atomic():
        Order.objects.bulk_update([order], ["state"])
    assert Order.objects.get(pk=order.pk).state == "confirmed"


def test_the_bulk_confirm_moves_orders_by_the_state_machine_and_records_each(tmp_path, kore_connection):
    import_catalogue(tmp_path)
    ids = [f"O{n}" for n in range(5)]

    import_orders(tmp_path, [order_row(i) for i in ids], [line_row(i, 1) for i in ids[:3]])

    assert dict(Order.objects.values_list("order_id", "state")) == {
        **dict.fromkeys(ids[:3], "confirmed"),
        **dict.fromkeys(ids[3:], "new"),
    }
    confirmed = Order.objects.filter(state="confirmed")
    assert all(o.state_changed_at is not None and o.state_changed_at == o.updated_at for o in confirmed)
    assert sorted(
        OrderEvent.objects.filter(kind="transition").values_list("order__order_id", "from_state", "to_state")
    ) == [(i, "new", "confirmed") for i in ids[:3]]


def test_an_unknown_transition_is_refused_by_name(order_with_lines):
    with pytest.raises(IllegalTransition, match="'teleport' is not a transition of an order"):
        order_transition(order=order_with_lines, transition="teleport", by="test")
