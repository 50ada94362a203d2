"""The approval gate: holds orders over a total, or of an inactive customer, until staff decide."""

from impex.money import money_text
from orders.choices import ExporterKind as Kind
from orders.choices import ExportRunStatus, OrderTransition
from orders.exporters.base import ExporterKind, Outcome
from orders.services import order_transition


class ApprovalGate(ExporterKind):
    name = Kind.APPROVAL
    in_transaction = True

    def run(self, *, order, exporter, flag) -> Outcome:
        reasons = []
        if exporter.min_total is not None and order.total >= exporter.min_total:
            minimum = money_text(exporter.min_total, order.currency)
            reasons.append(f"its total {money_text(order.total, order.currency)} is at least {minimum}")
        if not order.customer.active:
            reasons.append(f"customer {order.customer.customer_id} is inactive")
        if not reasons:
            return Outcome(message="no approval needed")
        why = "held for approval: " + " and ".join(reasons)
        order_transition(order=order, transition=OrderTransition.HOLD, by=f"exporter {exporter.code}", reason=why)
        return Outcome(status=ExportRunStatus.HELD, message=why)
