"""The registry of what the engine can import: each app declares its entities beside its models and registers them."""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models

from impex.registry import registry


@dataclass(frozen=True)
class EntitySpec:
    """How the engine reads, keys, references and retires one entity."""

    name: str
    verbose_name: str
    model_label: str
    # Fields that identify a record (the upsert conflict target), in the order the key is built.
    key_fields: tuple[str, ...]
    # FULL mode: the field set to retire_value on records a FULL file no longer has...
    retire: str = ""
    retire_value: object = None
    # ...or remove those records instead.
    retire_delete: bool = False
    # FULL mode: retire only records that share these leading key fields with a record the file sent
    # (a prices file retires prices of the price lists it names, not of every list).
    retire_within: tuple[str, ...] = ()
    # FULL mode: values given to records the file has again when their column is absent.
    revive: dict = field(default_factory=dict)
    # Fields a descriptor may key records by instead of the key field, which then takes the same value
    # ({"email": "customer_id"}: a file that names customers by e-mail only, e.g. a shop platform's export).
    key_aliases: dict = field(default_factory=dict)
    # Referenced records created on the fly when a row names one that does not exist yet.
    create_missing_refs: frozenset = frozenset()
    # Runs in the transaction that finishes a file of this entity (derived fields of related records).
    after_file: Callable[[], None] | None = None
    # The same for single records sent over HTTP, given the primary keys written (cheaper than after_file).
    after_records: Callable[[list], None] | None = None
    # Sees a batch's checked rows before they are written (pipeline, rows, result): returns the rows to write,
    # having refused the others; after_write is called once they are (e.g. orders: shipped ones refuse changes).
    before_write: Callable | None = None
    after_write: Callable | None = None
    # Runs in the transaction that finishes a file of this entity, before after_file, given the ImportFile.
    file_finish: Callable | None = None
    # Fields the hub alone sets (an order's state): an export-only descriptor may write them, no import fills them.
    hub_fields: tuple[str, ...] = ()

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)


_ENTITIES: dict[str, EntitySpec] = registry["entities"]
_NATURAL_KEYS: dict[str, str] = registry["natural_keys"]


def entity_register(spec: EntitySpec) -> None:
    """Make an entity importable and exportable by descriptors (apps call this from their ready())."""
    _ENTITIES[spec.name] = spec


def natural_key_register(model_label: str, field_name: str) -> None:
    """Declare the field that files use to name a record of a model (its external id)."""
    _NATURAL_KEYS[model_label] = field_name


def entity_spec(name: str) -> EntitySpec:
    """Return the spec of an entity by its name."""
    return _ENTITIES[name]


def entity_verbose_name(name: str) -> str:
    """Return an entity's name as people read it ("Special order event"), or name itself if none is registered."""
    spec = _ENTITIES.get(name)
    return spec.verbose_name if spec else name


def entity_choices() -> list[tuple[str, str]]:
    """Return the registered entities as choices for descriptors."""
    return [(spec.name, spec.verbose_name) for spec in _ENTITIES.values()]


def natural_key_of(model: type[models.Model]) -> str:
    """Return the field other files use to name a record of this model."""
    return _NATURAL_KEYS[model._meta.label]
