"""The exporter kinds by name: the chain looks a kind up here instead of branching on it."""

from orders.exporters.approval import ApprovalGate
from orders.exporters.base import ExporterKind
from orders.exporters.file import FileExporter
from orders.exporters.webhook import WebhookExporter

KINDS: dict[str, ExporterKind] = {kind.name: kind for kind in (FileExporter(), WebhookExporter(), ApprovalGate())}


def exporter_kind(name: str) -> ExporterKind:
    """Return the kind registered under a name."""
    return KINDS[name]
