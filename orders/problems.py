"""Order exporters that gave up on an order: problems until the exporter delivers it (SPEC 8)."""

from django.urls import reverse

from impex.choices import ProblemKind
from impex.services.problems import problem_raise, problem_resolve
from orders.models import Exporter


def _key(*, code: str, order) -> str:
    return f"exporter:{code}:order:{order.order_id}"


def exporter_gave_up(*, exporter, order, message: str) -> None:
    """Raise the problem of an exporter that has used up its tries on an order (or was refused for good)."""
    problem_raise(
        kind=ProblemKind.EXPORTER,
        key=_key(code=exporter.code, order=order),
        connection=order.connection_id,
        message=f"exporter {exporter.code} gave up on order {order.order_id}: {message}",
        url=reverse("admin:orders_order_change", args=[order.pk]),
    )


def exporter_delivered(*, exporter, order) -> None:
    """Resolve the exporter's problem with the order, if it had one."""
    problem_resolve(key=_key(code=exporter.code, order=order))


def exporters_delivered(*, exporter, orders) -> None:
    """Resolve the exporter's problems with the orders, those that had one (one statement for all)."""
    problem_resolve(keys=[_key(code=exporter.code, order=order) for order in orders])


def exporters_stopped(*, order) -> None:
    """Resolve every exporter's problem with the order: its deliveries were dropped (it was cancelled)."""
    problem_resolve(keys=[_key(code=code, order=order) for code in Exporter.objects.values_list("code", flat=True)])
