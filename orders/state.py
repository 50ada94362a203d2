"""The order state machine of SPEC section 7: states, transitions (methods with guards) and their table.

The methods only move `state`; orders.services.order_transition is the one caller for one order: it locks the
order, runs the method, saves, writes the timeline row and sets the export flags configured for the transition.
Many orders at once (orders.services.orders_confirm_ready, orders_transition) go through orders_move: the same
methods and guards, several transitions in turn written in one UPDATE. A queryset's update() refuses to write `state`.
"""

from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransition, ConcurrentTransitionMixin, FSMField, can_proceed, transition

from orders.choices import OrderState as S
from orders.exceptions import IllegalTransition


def has_lines(order) -> bool:
    """The order's lines are in."""
    return order.lines.exists()


# The guards read the lines through order.lines.all(): with the lines prefetched (many orders moved at once,
# OrderQuerySet.transition) they cost no query; without, one.


def every_line_shipped(order) -> bool:
    """Every line of the order has shipped."""
    lines = order.lines.all()
    return bool(lines) and all(line.shipped_at is not None for line in lines)


def some_line_unshipped(order) -> bool:
    """At least one line of the order has not shipped."""
    return any(line.shipped_at is None for line in order.lines.all())


def has_guards(name: str) -> bool:
    """Say if a transition has guards (they read the order's lines: prefetch them)."""
    return any(t.conditions for t in getattr(OrderStateMachine, name)._django_fsm.transitions.values())


# Why a guard refused, in words a user can act on ("order O-1 can't be confirmed: it has no lines").
GUARD_MESSAGES = {
    has_lines: "it has no lines",
    every_line_shipped: "not every line has shipped",
    some_line_unshipped: "every line has shipped",
}

BEFORE_SHIPPING = [S.NEW, S.CONFIRMED, S.ON_HOLD, S.EXPORTED]
# Amending one of these raises the order's version (a new order's content is just its content).
AMENDABLE = [S.CONFIRMED, S.ON_HOLD, S.EXPORTED]
HAS_SHIPPED = [S.PARTIALLY_SHIPPED, S.SHIPPED, S.COMPLETED]
SHIPPABLE = [S.CONFIRMED, S.EXPORTED, S.PARTIALLY_SHIPPED]


class OrderQuerySet(models.QuerySet):
    """Orders; their state is written only by the transitions of the state machine."""

    def update(self, **kwargs):
        if "state" in kwargs:
            raise IllegalTransition("an order's state changes only by a transition (orders.services.order_transition)")
        return super().update(**kwargs)

    def transition(self, name: str) -> list[tuple[models.Model, str]]:
        """Move these orders (locked by the caller) by one transition, each through its method and guards, written
        in one UPDATE; return each order moved with its state before. Orders the transition refuses stay as they
        are. Prefetch what the guards read (e.g. lines) to keep it to a few queries."""
        (moved,) = orders_move(self, [name])
        return [(order, before) for order, before, _ in moved]


def orders_move(orders, names: list[str]) -> list[list[tuple[models.Model, str, str]]]:
    """Move orders (locked by the caller) along transitions in turn, each through its methods and guards, and write
    where they end in one UPDATE per state left and state reached; return for each transition the orders it moved
    with their state before and after it. An order a transition refuses takes no later one and stays where the
    ones before left it. Prefetch what the guards read (e.g. lines) to keep it to a few queries."""
    steps: list[list[tuple[models.Model, str, str]]] = [[] for _ in names]
    start: dict = {}
    for order in orders:
        for moved, name in zip(steps, names, strict=True):
            method = getattr(order, name)
            if not can_proceed(method):
                break
            before = order.state
            start.setdefault(order.pk, (order, before))
            method()
            moved.append((order, before, order.state))
    now = timezone.now()
    ends: dict[tuple[str, str], list[models.Model]] = {}
    for order, before in start.values():
        ends.setdefault((before, order.state), []).append(order)
    for (before, target), group in ends.items():
        model = type(group[0])
        rows = models.QuerySet(model).filter(pk__in=[o.pk for o in group], state=before)
        if rows.update(state=target, state_changed_at=now, updated_at=now) != len(group):
            raise ConcurrentTransition(f"orders moved from {before} meanwhile: lock them before a transition")
        for order in group:
            order.state_changed_at = order.updated_at = now
    return steps


class OrderStateMachine(ConcurrentTransitionMixin, models.Model):
    """An order's state, moved only by the transition methods below (never by imports or forms)."""

    # protected: assigning state directly raises; ConcurrentTransitionMixin: a save whose state changed in the
    # database since the order was read raises ConcurrentTransition instead of overwriting it.
    state = FSMField(max_length=20, choices=S.choices, default=S.NEW, protected=True, db_index=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        abstract = True

    @transition(field=state, source=S.NEW, target=S.CONFIRMED, conditions=[has_lines])
    def confirm(self):
        """The order's lines are in: it enters the exporter chains."""

    @transition(field=state, source=S.CONFIRMED, target=S.ON_HOLD)
    def hold(self):
        """An approval gate holds the order until staff decide."""

    @transition(field=state, source=S.ON_HOLD, target=S.CONFIRMED)
    def approve(self):
        """Staff approved the held order: it goes on along the chain."""

    @transition(field=state, source=S.ON_HOLD, target=S.CANCELLED)
    def reject(self):
        """Staff rejected the held order."""

    @transition(field=state, source=S.CONFIRMED, target=S.EXPORTED)
    def mark_exported(self):
        """Every exporter chain of the order has finished."""

    @transition(field=state, source=SHIPPABLE, target=S.PARTIALLY_SHIPPED, conditions=[some_line_unshipped])
    def ship_partially(self):
        """Some lines have shipped, not all."""

    @transition(field=state, source=SHIPPABLE, target=S.SHIPPED, conditions=[every_line_shipped])
    def ship(self):
        """Every line has shipped."""

    @transition(field=state, source=S.SHIPPED, target=S.COMPLETED, conditions=[every_line_shipped])
    def complete(self):
        """Every line has shipped: the order is done."""

    @transition(field=state, source=BEFORE_SHIPPING, target=S.CANCELLED)
    def cancel(self):
        """Cancelled before anything shipped."""
