"""What each entity of SPEC section 6 is in the database: model, key, natural key, retirement."""

from dataclasses import dataclass, field

from django.apps import apps
from django.db import models


@dataclass(frozen=True)
class EntitySpec:
    """How the engine reads, keys, references and retires one entity."""

    name: str
    model_label: str
    # Fields that identify a record (the upsert conflict target), in the order the key is built.
    key_fields: tuple[str, ...]
    # FULL mode: the field set on records a FULL file no longer has ("delete" removes them).
    retire: str = ""
    retire_value: object = None
    # FULL mode: values given to records the file has again when their column is absent.
    revive: dict = field(default_factory=dict)
    # Referenced entities created on the fly when a row names one that does not exist yet.
    create_missing_refs: frozenset = frozenset()

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)


# The natural key of every model another entity refers to: what a file names it by.
NATURAL_KEYS = {
    "syncapp.Customer": "customer_id",
    "syncapp.Product": "product_id",
    "syncapp.ProductVariant": "sku",
    "syncapp.PriceList": "code",
    "syncapp.SpecialOrder": "special_order_id",
    "orders.Order": "order_id",
}

ENTITIES = {
    spec.name: spec
    for spec in (
        EntitySpec("special_order", "syncapp.SpecialOrder", ("special_order_id",)),
        EntitySpec("special_order_line_item", "syncapp.SpecialOrderLineItem", ("line_item_id",)),
        EntitySpec("special_order_event", "syncapp.SpecialOrderEvent", ("event_id",)),
        EntitySpec(
            "customer",
            "syncapp.Customer",
            ("customer_id",),
            retire="active",
            retire_value=False,
            revive={"active": True},
        ),
        EntitySpec(
            "product_variant",
            "syncapp.ProductVariant",
            ("variant_id",),
            retire="status",
            retire_value="discontinued",
            revive={"status": "live"},
        ),
        EntitySpec("stock_level", "syncapp.StockLevel", ("variant", "location"), retire="quantity", retire_value=0),
        EntitySpec(
            "price",
            "syncapp.Price",
            ("price_list", "variant", "min_quantity"),
            retire="delete",
            create_missing_refs=frozenset({"price_list"}),
        ),
        EntitySpec("order", "orders.Order", ("order_id",)),
        EntitySpec("order_line", "orders.OrderLine", ("order", "line_no")),
        EntitySpec("shipment", "orders.Shipment", ("shipment_id",)),
    )
}


def entity_spec(name: str) -> EntitySpec:
    """Return the spec of an entity by its name."""
    return ENTITIES[name]


def natural_key_of(model: type[models.Model]) -> str:
    """Return the field other files use to name a record of this model."""
    return NATURAL_KEYS[model._meta.label]
