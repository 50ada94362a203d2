"""Install the built-in descriptors and groups (SPEC section 6) from a frozen copy of their data.

The data below is this migration's own, as the built-ins were when it was written; it is never edited
again (impex.builtin is the live module the code uses; a test checks that both agree today). Installing
creates what is missing, by code, and never changes a descriptor or group that exists: what an admin
edited stays edited. A later migration that adds built-ins copies this pattern with a frozen copy of
its own data, rather than importing any code that may change.
"""

from django.db import migrations

# Columns: (name, field, type, required, is_key, choices), in file order.
DESCRIPTORS = [
    {
        "code": "SPECIAL-ORDERS",
        "name": "BSPK special orders",
        "entity": "special_order",
        "convention": "bspk",
        "format": "csv",
        "delimiter": ",",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "SPECIAL-ORDERS_*",
        "precedence": 10,
        "boolean_style": "Y/N",
        "builtin": True,
        "columns": [
            ("special_order_id", "special_order_id", "string", True, True, ""),
            ("store_id", "store_id", "string", True, False, ""),
            ("client_id", "client_id", "string", True, False, ""),
            ("associate_id", "associate_id", "string", False, False, ""),
            ("order_type", "order_type", "choice", True, False, "REPAIR,CUSTOM"),
            ("status", "status", "choice", True, False, "OPEN,IN_PROGRESS,READY,COMPLETED,CANCELLED"),
            ("description", "description", "string", False, False, ""),
            ("currency", "currency", "string", False, False, ""),
            ("deposit_amount", "deposit_amount", "decimal", False, False, ""),
            ("total_amount", "total_amount", "decimal", False, False, ""),
            ("created_at", "ordered_at", "datetime", True, False, ""),
            ("promised_date", "promised_date", "date", False, False, ""),
        ],
    },
    {
        "code": "SPECIAL-ORDER-LINE-ITEMS",
        "name": "BSPK special order line items",
        "entity": "special_order_line_item",
        "convention": "bspk",
        "format": "csv",
        "delimiter": ",",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "SPECIAL-ORDER-LINE-ITEMS_*",
        "precedence": 20,
        "boolean_style": "Y/N",
        "builtin": True,
        "columns": [
            ("line_item_id", "line_item_id", "string", True, True, ""),
            ("special_order_id", "special_order", "reference", True, False, ""),
            ("sku", "sku", "string", False, False, ""),
            ("product_name", "product_name", "string", True, False, ""),
            ("quantity", "quantity", "integer", True, False, ""),
            ("unit_price", "unit_price", "decimal", False, False, ""),
            ("notes", "notes", "string", False, False, ""),
        ],
    },
    {
        "code": "SPECIAL-ORDER-EVENTS",
        "name": "BSPK special order events",
        "entity": "special_order_event",
        "convention": "bspk",
        "format": "csv",
        "delimiter": ",",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "SPECIAL-ORDER-EVENTS_*",
        "precedence": 30,
        "boolean_style": "Y/N",
        "builtin": True,
        "columns": [
            ("event_id", "event_id", "string", True, True, ""),
            ("special_order_id", "special_order", "reference", True, False, ""),
            (
                "event_type",
                "event_type",
                "choice",
                True,
                False,
                "CREATED,SENT_TO_WORKSHOP,RECEIVED_FROM_WORKSHOP,READY_FOR_PICKUP,PICKED_UP,CANCELLED,NOTE",
            ),
            ("event_at", "event_at", "datetime", True, False, ""),
            ("associate_id", "associate_id", "string", False, False, ""),
            ("note", "note", "string", False, False, ""),
        ],
    },
    {
        "code": "KS_CUSTOMERS",
        "name": "Kore customers",
        "entity": "customer",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_CUSTOMERS.*",
        "precedence": 10,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("customer_id", "customer_id", "string", True, True, ""),
            ("email", "email", "string", True, False, ""),
            ("first_name", "first_name", "string", False, False, ""),
            ("last_name", "last_name", "string", False, False, ""),
            ("company_name", "company_name", "string", False, False, ""),
            ("group", "group", "string", False, False, ""),
            ("accounting_id", "accounting_id", "string", False, False, ""),
            ("price_list", "price_list", "string", False, False, ""),
            ("discount_percentage", "discount_percentage", "decimal", False, False, ""),
            ("payment_on_account", "payment_on_account", "boolean", False, False, ""),
            ("parent_customer_id", "parent", "reference", False, False, ""),
            ("active", "active", "boolean", False, False, ""),
        ],
    },
    {
        "code": "KS_PRODUCTS",
        "name": "Kore products (one row per variant)",
        "entity": "product_variant",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_PRODUCTS.*",
        "precedence": 10,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("product_id", "product", "reference", True, False, ""),
            ("title", "product.title", "string", True, False, ""),
            ("slug", "product.slug", "string", False, False, ""),
            ("status", "status", "choice", False, False, "live,discontinued"),
            ("variant_id", "variant_id", "string", True, True, ""),
            ("sku", "sku", "string", True, False, ""),
            ("weight_in_grams", "weight_in_grams", "integer", False, False, ""),
            ("position", "position", "integer", False, False, ""),
            ("cart_image_url", "cart_image_url", "string", False, False, ""),
            ("options", "options", "string", False, False, ""),
            ("rrp", "rrp", "decimal", False, False, ""),
            ("restock_date", "restock_date", "date", False, False, ""),
        ],
    },
    {
        "code": "KS_INVENTORY",
        "name": "Kore inventory",
        "entity": "stock_level",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_INVENTORY.*",
        "precedence": 20,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("sku", "variant", "reference", True, True, ""),
            ("location", "location", "string", True, True, ""),
            ("quantity", "quantity", "integer", True, False, ""),
            ("restock_date", "restock_date", "date", False, False, ""),
        ],
    },
    {
        "code": "KS_PRICES",
        "name": "Kore prices",
        "entity": "price",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_PRICES.*",
        "precedence": 20,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("price_list", "price_list", "reference", True, True, ""),
            ("sku", "variant", "reference", True, True, ""),
            ("currency", "currency", "string", True, False, ""),
            ("price", "price", "decimal", True, False, ""),
            ("min_quantity", "min_quantity", "integer", False, True, ""),
        ],
    },
    {
        "code": "KS_ORDERS",
        "name": "Kore orders",
        "entity": "order",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_ORDERS.*",
        "precedence": 30,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("order_id", "order_id", "string", True, True, ""),
            ("customer_id", "customer", "reference", True, False, ""),
            ("order_date", "order_date", "datetime", True, False, ""),
            ("currency", "currency", "string", True, False, ""),
            ("total", "total", "decimal", True, False, ""),
            ("shipping_method", "shipping_method", "string", False, False, ""),
            ("ship_to_name", "ship_to_name", "string", False, False, ""),
            ("ship_to_line1", "ship_to_line1", "string", False, False, ""),
            ("ship_to_city", "ship_to_city", "string", False, False, ""),
            ("ship_to_postcode", "ship_to_postcode", "string", False, False, ""),
            ("ship_to_country", "ship_to_country", "string", False, False, ""),
        ],
    },
    {
        "code": "KS_ORDER_LINES",
        "name": "Kore order lines",
        "entity": "order_line",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_ORDER_LINES.*",
        "precedence": 40,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("order_id", "order", "reference", True, True, ""),
            ("line_no", "line_no", "integer", True, True, ""),
            ("sku", "variant", "reference", True, False, ""),
            ("quantity", "quantity", "integer", True, False, ""),
            ("unit_price", "unit_price", "decimal", True, False, ""),
        ],
    },
    {
        "code": "KS_SHIPMENTS",
        "name": "Kore shipments",
        "entity": "shipment",
        "convention": "kore",
        "format": "tsv",
        "delimiter": "\\t",
        "encoding": "utf-8",
        "has_header": True,
        "file_pattern": "*KS_SHIPMENTS.*",
        "precedence": 50,
        "boolean_style": "true/false",
        "builtin": True,
        "columns": [
            ("shipment_id", "shipment_id", "string", True, True, ""),
            ("order_id", "order", "reference", True, False, ""),
            ("carrier", "carrier", "string", False, False, ""),
            ("tracking_number", "tracking_number", "string", False, False, ""),
            ("shipped_at", "shipped_at", "datetime", True, False, ""),
            ("line_nos", "line_nos", "string", False, False, ""),
        ],
    },
]

GROUPS = [
    {
        "code": "bspk-special-orders",
        "name": "BSPK special orders",
        "direction": "import",
        "descriptors": [
            "SPECIAL-ORDERS",
            "SPECIAL-ORDER-LINE-ITEMS",
            "SPECIAL-ORDER-EVENTS",
        ],
    },
    {
        "code": "kore-inbound",
        "name": "Kore inbound",
        "direction": "import",
        "descriptors": [
            "KS_CUSTOMERS",
            "KS_PRODUCTS",
            "KS_INVENTORY",
            "KS_PRICES",
            "KS_ORDERS",
            "KS_ORDER_LINES",
            "KS_SHIPMENTS",
        ],
    },
]


def install(apps, descriptors, groups):
    """Create the descriptors and groups that are missing (by code); never change one that exists."""
    DataDescriptor = apps.get_model("impex", "DataDescriptor")
    DescriptorColumn = apps.get_model("impex", "DescriptorColumn")
    DataGroup = apps.get_model("impex", "DataGroup")
    existing = set(
        DataDescriptor.objects.filter(code__in=[d["code"] for d in descriptors]).values_list("code", flat=True)
    )
    created = {}
    for spec in descriptors:
        if spec["code"] in existing:
            continue
        descriptor = DataDescriptor.objects.create(**{k: v for k, v in spec.items() if k != "columns"})
        DescriptorColumn.objects.bulk_create(
            DescriptorColumn(
                descriptor=descriptor,
                position=i,
                name=name,
                field=field,
                type=type_,
                required=required,
                is_key=is_key,
                choices=choices,
            )
            for i, (name, field, type_, required, is_key, choices) in enumerate(spec["columns"])
        )
        created[spec["code"]] = descriptor
    for spec in groups:
        group, group_created = DataGroup.objects.get_or_create(
            code=spec["code"], defaults={"name": spec["name"], "direction": spec["direction"]}
        )
        if group_created:
            group.descriptors.set(DataDescriptor.objects.filter(code__in=spec["descriptors"]))
        else:
            # An existing group keeps its members as they are, and gains only the descriptors created now.
            group.descriptors.add(*[created[code] for code in spec["descriptors"] if code in created])


def forwards(apps, schema_editor):
    install(apps, DESCRIPTORS, GROUPS)


class Migration(migrations.Migration):
    dependencies = [("impex", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
