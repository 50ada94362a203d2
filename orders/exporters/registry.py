"""The exporter kinds by name: the chain looks a kind up here instead of branching on it.

The kinds register themselves from orders' ready() (OrdersConfig), so that this module imports none of them: the
approval gate uses orders.services, which reads this registry.
"""

from orders.exporters.base import ExporterKind

KINDS: dict[str, ExporterKind] = {}


def exporter_kind_register(kind: ExporterKind) -> None:
    """Make a kind of exporter available by its name."""
    KINDS[kind.name] = kind


def exporter_kind(name: str) -> ExporterKind:
    """Return the kind registered under a name."""
    return KINDS[name]
