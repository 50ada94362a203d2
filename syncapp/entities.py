"""How the engine imports the synced entities: keys, external ids, FULL retirement and derived fields."""

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from impex.entities import EntitySpec, entity_register, natural_key_register
from syncapp.choices import ProductStatus
from syncapp.models import Product, ProductVariant


def product_status_derive(variant_pks=None) -> None:
    """Discontinue products whose variants all are, and bring back those with a live variant.

    variant_pks: only the products of these variants (a single-record update); None: every product.
    """
    now = timezone.now()
    variants = ProductVariant.objects.filter(product=OuterRef("pk"))
    live = variants.filter(status=ProductStatus.LIVE)
    products = Product.objects.all()
    if variant_pks is not None:
        products = products.filter(pk__in=ProductVariant.objects.filter(pk__in=variant_pks).values("product_id"))
    with transaction.atomic():
        products.filter(Exists(variants), ~Exists(live)).exclude(status=ProductStatus.DISCONTINUED).update(
            status=ProductStatus.DISCONTINUED, updated_at=now
        )
        products.filter(Exists(live)).exclude(status=ProductStatus.LIVE).update(
            status=ProductStatus.LIVE, updated_at=now
        )


def register() -> None:
    """Register the synced entities and the external ids of the records files refer to."""
    for label, field_name in (
        ("syncapp.Customer", "customer_id"),
        ("syncapp.Product", "product_id"),
        ("syncapp.ProductVariant", "sku"),
        ("syncapp.PriceList", "code"),
        ("syncapp.SpecialOrder", "special_order_id"),
    ):
        natural_key_register(label, field_name)
    for spec in (
        EntitySpec("special_order", "Special order", "syncapp.SpecialOrder", ("special_order_id",)),
        EntitySpec(
            "special_order_line_item", "Special order line item", "syncapp.SpecialOrderLineItem", ("line_item_id",)
        ),
        EntitySpec("special_order_event", "Special order event", "syncapp.SpecialOrderEvent", ("event_id",)),
        EntitySpec(
            "customer",
            "Customer",
            "syncapp.Customer",
            ("customer_id",),
            retire="active",
            retire_value=False,
            revive={"active": True},
            key_aliases={"email": "customer_id"},
        ),
        EntitySpec(
            "product_variant",
            "Product variant (and its product)",
            "syncapp.ProductVariant",
            ("variant_id",),
            retire="status",
            retire_value=ProductStatus.DISCONTINUED,
            revive={"status": ProductStatus.LIVE},
            after_file=product_status_derive,
            after_records=lambda pks: product_status_derive(variant_pks=pks),
        ),
        EntitySpec(
            "stock_level",
            "Stock level",
            "syncapp.StockLevel",
            ("variant", "location"),
            retire="quantity",
            retire_value=0,
        ),
        EntitySpec(
            "price",
            "Price",
            "syncapp.Price",
            ("price_list", "variant", "min_quantity"),
            retire_delete=True,
            retire_within=("price_list",),
            create_missing_refs=frozenset({"price_list"}),
        ),
    ):
        entity_register(spec)
