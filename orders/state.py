"""The order state machine of SPEC section 7: states, transitions (methods with guards) and their table.

The methods only move `state`; orders.services.order_transition is the one caller: it locks the order, runs
the method, saves, writes the timeline row and sets the export flags configured for the transition.
"""

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from orders.choices import OrderState as S


def has_lines(order) -> bool:
    """The order's lines are in."""
    return order.lines.exists()


def every_line_shipped(order) -> bool:
    """Every line of the order has shipped."""
    return order.lines.exists() and not order.lines.filter(shipped_at__isnull=True).exists()


def some_line_unshipped(order) -> bool:
    """At least one line of the order has not shipped."""
    return order.lines.filter(shipped_at__isnull=True).exists()


# Why a guard refused, in words a user can act on ("order O-1 can't be confirmed: it has no lines").
GUARD_MESSAGES = {
    has_lines: "it has no lines",
    every_line_shipped: "not every line has shipped",
    some_line_unshipped: "every line has shipped",
}

BEFORE_SHIPPING = [S.NEW, S.CONFIRMED, S.ON_HOLD, S.EXPORTED]
SHIPPABLE = [S.CONFIRMED, S.EXPORTED, S.PARTIALLY_SHIPPED]


class OrderStateMachine(ConcurrentTransitionMixin, models.Model):
    """An order's state, moved only by the transition methods below (never by imports or forms)."""

    # protected: assigning state directly raises; ConcurrentTransitionMixin: a save whose state changed in the
    # database since the order was read raises ConcurrentTransition instead of overwriting it.
    state = FSMField(max_length=20, choices=S.choices, default=S.NEW, protected=True, db_index=True)

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
