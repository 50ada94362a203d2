"""django-import-export resources of the synced entities, for small ad-hoc imports and exports in the admin.

Columns are named as in the built-in descriptors (SPEC section 6) and records are matched by their
external ids, so a file exported here imports back, and a small Kore or BSPK file can be imported
here. Big files go through ImpEx (`manage.py impex_import` or an import job): this path reads the
whole file into memory and writes row by row.
"""

import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from import_export import fields, resources, widgets

from impex.builtin import column_names
from impex.services.columns import control_character_error, within_utc_years
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise_formula(value):
    """Prefix a quote to a text cell that a spreadsheet would run as a formula; numbers stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


class IsoDateTimeWidget(widgets.DateTimeWidget):
    """Read ISO 8601 datetimes (offset or Z; naive ones in the current time zone) and write them with offset."""

    def clean(self, value, row=None, **kwargs):
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            return super().clean(value, row, **kwargs)
        parsed = parse_datetime(value.strip())
        if parsed is None:
            raise ValueError(f"'{value}' is not an ISO 8601 datetime, e.g. 2024-05-01T09:30:00+02:00.")
        parsed = timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed
        if not within_utc_years(parsed):
            raise ValueError(f"'{value}' is outside the years 1-9999 once read in UTC.")
        return parsed

    def render(self, value, obj=None, **kwargs):
        if not value:
            return ""
        value = timezone.localtime(value)
        if kwargs.get("force_native_type"):
            return value.replace(tzinfo=None)
        return value.isoformat()


class PlainDecimalWidget(widgets.DecimalWidget):
    """Write decimals with a dot whatever the locale, as SPEC section 6 says."""

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else str(value)


class FlexibleBooleanWidget(widgets.BooleanWidget):
    """Read the boolean styles of SPEC section 6 (Y/N, true/false, 1/0) and write true/false."""

    TRUE_VALUES = ["true", "1", 1, True, "TRUE", "True", "Y", "y", "yes", "Yes", "YES"]
    FALSE_VALUES = ["false", "0", 0, False, "FALSE", "False", "N", "n", "no", "No", "NO"]

    def clean(self, value, row=None, **kwargs):
        if value in self.NULL_VALUES:
            return None
        if value in self.TRUE_VALUES:
            return True
        if value in self.FALSE_VALUES:
            return False
        raise ValueError(f"'{value}' is not a boolean: use true/false, Y/N or 1/0.")


class NaturalKeyWidget(widgets.ForeignKeyWidget):
    """A reference by external id, with a message that names the missing record."""

    def clean(self, value, row=None, **kwargs):
        try:
            return super().clean(value, row, **kwargs)
        except self.model.DoesNotExist:
            raise ValueError(f"No {self.model._meta.verbose_name} with {self.field} '{value}'.") from None


def reference(attribute, column_name, model, field):
    """A column that refers to another record by its external id."""
    return fields.Field(attribute=attribute, column_name=column_name, widget=NaturalKeyWidget(model, field=field))


class SafeExportResource(resources.ModelResource):
    """Base resource: natural keys, SPEC value formats, and exports that spreadsheets cannot run as formulas."""

    WIDGETS_MAP = {
        **resources.ModelResource.WIDGETS_MAP,
        "DateTimeField": IsoDateTimeWidget,
        "DecimalField": PlainDecimalWidget,
        "BooleanField": FlexibleBooleanWidget,
    }

    class Meta:
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True

    def before_import_row(self, row, **kwargs):
        """Refuse a row with a control character in a cell (SPEC section 12) before anything looks it up."""
        errors = {}
        for column, value in row.items():
            if isinstance(value, str) and (error := control_character_error(value, column=column)):
                errors[column] = error.message
        if errors:
            raise ValidationError(errors)

    def export_field(self, field, instance, **kwargs):
        return neutralise_formula(super().export_field(field, instance, **kwargs))


class CustomerResource(SafeExportResource):
    """Customers in the KS_CUSTOMERS layout."""

    parent_customer_id = reference("parent", "parent_customer_id", Customer, "customer_id")

    class Meta(SafeExportResource.Meta):
        model = Customer
        import_id_fields = ("customer_id",)
        fields = column_names("KS_CUSTOMERS")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("parent")


class ProductResource(SafeExportResource):
    """Products (the parent of variants)."""

    class Meta(SafeExportResource.Meta):
        model = Product
        import_id_fields = ("product_id",)
        fields = ("product_id", "title", "slug", "status")
        export_order = fields


class ProductVariantResource(SafeExportResource):
    """Product variants in the KS_PRODUCTS layout: one row per variant, carrying its product's title and slug."""

    product_id = reference("product", "product_id", Product, "product_id")
    title = fields.Field(attribute="product__title", column_name="title", readonly=True)
    slug = fields.Field(attribute="product__slug", column_name="slug", readonly=True)

    class Meta(SafeExportResource.Meta):
        model = ProductVariant
        import_id_fields = ("variant_id",)
        fields = (
            "product_id",
            "title",
            "slug",
            "status",
            "variant_id",
            "sku",
            "weight_in_grams",
            "position",
            "cart_image_url",
            "options",
            "rrp",
            "restock_date",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("product")

    def before_import_row(self, row, **kwargs):
        """Create or update the row's product from its product_id, title and slug, as a KS_PRODUCTS file does."""
        self._product_changed = False
        super().before_import_row(row, **kwargs)
        product_id = (row.get("product_id") or "").strip()
        if not product_id or "title" not in row:
            return
        values = {"title": row.get("title") or ""}
        if not values["title"].strip():
            raise ValueError("title is required.")
        if "slug" in row:
            values["slug"] = row.get("slug") or ""
        with transaction.atomic():
            product, created = Product.objects.select_for_update().get_or_create(product_id=product_id, defaults=values)
            changed = [name for name, value in values.items() if getattr(product, name) != value]
            if changed:
                for name in changed:
                    setattr(product, name, values[name])
                product.save(update_fields=[*changed, "updated_at"])
        self._product_changed = created or bool(changed)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if getattr(self, "_product_changed", False):
            return False
        return super().skip_row(instance, original, row, import_validation_errors)


class StockLevelResource(SafeExportResource):
    """Stock levels in the KS_INVENTORY layout, keyed by sku and location."""

    sku = reference("variant", "sku", ProductVariant, "sku")

    class Meta(SafeExportResource.Meta):
        model = StockLevel
        import_id_fields = ("sku", "location")
        fields = ("sku", "location", "quantity", "restock_date")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("variant")


class PriceListResource(SafeExportResource):
    """Price lists by code."""

    class Meta(SafeExportResource.Meta):
        model = PriceList
        import_id_fields = ("code",)
        fields = ("code",)


class PriceResource(SafeExportResource):
    """Prices in the KS_PRICES layout, keyed by price list, sku and minimum quantity."""

    price_list = reference("price_list", "price_list", PriceList, "code")
    sku = reference("variant", "sku", ProductVariant, "sku")

    class Meta(SafeExportResource.Meta):
        model = Price
        import_id_fields = ("price_list", "sku", "min_quantity")
        fields = ("price_list", "sku", "currency", "price", "min_quantity")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("price_list", "variant")

    def before_import_row(self, row, **kwargs):
        """Create the price lists a file names, as KS_PRICES files do."""
        super().before_import_row(row, **kwargs)
        code = (row.get("price_list") or "").strip()
        if code:
            PriceList.objects.get_or_create(code=code)


class SpecialOrderResource(SafeExportResource):
    """Special orders in the BSPK SPECIAL-ORDERS layout (ordered_at is the column created_at)."""

    ordered_at = fields.Field(attribute="ordered_at", column_name="created_at", widget=IsoDateTimeWidget())

    class Meta(SafeExportResource.Meta):
        model = SpecialOrder
        import_id_fields = ("special_order_id",)
        fields = (
            "special_order_id",
            "store_id",
            "client_id",
            "associate_id",
            "order_type",
            "status",
            "description",
            "currency",
            "deposit_amount",
            "total_amount",
            "ordered_at",
            "promised_date",
        )
        export_order = fields


class SpecialOrderLineItemResource(SafeExportResource):
    """Special order line items in the BSPK SPECIAL-ORDER-LINE-ITEMS layout."""

    special_order_id = reference("special_order", "special_order_id", SpecialOrder, "special_order_id")

    class Meta(SafeExportResource.Meta):
        model = SpecialOrderLineItem
        import_id_fields = ("line_item_id",)
        fields = ("line_item_id", "special_order_id", "sku", "product_name", "quantity", "unit_price", "notes")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("special_order")


class SpecialOrderEventResource(SafeExportResource):
    """Special order events in the BSPK SPECIAL-ORDER-EVENTS layout."""

    special_order_id = reference("special_order", "special_order_id", SpecialOrder, "special_order_id")

    class Meta(SafeExportResource.Meta):
        model = SpecialOrderEvent
        import_id_fields = ("event_id",)
        fields = ("event_id", "special_order_id", "event_type", "event_at", "associate_id", "note")
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("special_order")
