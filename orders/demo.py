"""The demo's order chain: an approval gate and a file exporter, an approvers group, and one pass of each task."""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from orders.chain import orders_export_pass
from orders.feeds import orders_feed_pass
from orders.models import Exporter, Order

APPROVERS = "Order approvers"
# What an approver needs: see orders and their runs, approve and reject.
APPROVER_PERMISSIONS = ("view_order", "view_orderline", "view_shipment", "view_orderexportrun", "approve_order")
DEMO_EXPORTERS = (
    {
        "code": "approval",
        "name": "Approval of orders of 400 or more",
        "flag": "approval",
        "kind": "approval",
        "next_flag": "erp",
        "min_total": Decimal("400"),
    },
    {"code": "erp-file", "name": "Order files for the ERP", "flag": "erp", "kind": "file", "next_flag": ""},
)


@dataclass(frozen=True)
class DemoChain:
    """What the demo set up: the exporters (code -> created?) and the approvers group."""

    exporters: dict[str, bool]
    approvers_group: str


def approvers_group_save() -> Group:
    """Create the approvers group if missing (migration orders 0012 makes it too) and give it what approvers need."""
    group, _ = Group.objects.get_or_create(name=APPROVERS)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="orders", codename__in=APPROVER_PERMISSIONS)
    )
    return group


@transaction.atomic
def demo_chain_save() -> DemoChain:
    """Create the demo exporters and the approvers group if missing; never change ones an admin edited."""
    created = {}
    for spec in DEMO_EXPORTERS:
        _, created[spec["code"]] = Exporter.objects.get_or_create(code=spec["code"], defaults=spec)
    return DemoChain(exporters=created, approvers_group=approvers_group_save().name)


def demo_chain_run() -> dict[str, str]:
    """Run the order export and feed passes once, as the cluster's schedules do; return each order's state."""
    orders_export_pass(by="command: impex_demo")
    orders_feed_pass(by="command: impex_demo")
    return dict(Order.objects.order_by("order_id").values_list("order_id", "state"))


def demo_chain_set_up() -> str:
    """Set the demo's order chain up and say what it is (impex_demo prints it)."""
    chain = demo_chain_save()
    return (
        "Order exporters: approval (holds orders of 400 or more) -> erp-file (order files in kore-erp's outbox); "
        f"group '{chain.approvers_group}' may approve"
    )
