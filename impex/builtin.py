"""The built-in descriptors and groups of SPEC section 6, installed by migration 0002."""

# Each column: (name, field, type, required, is_key, choices). Reference columns name the
# foreign key as field; "product.title" fills the parent product of a variant row.
S, I, D, B, DT, DTT, C, R = "string", "integer", "decimal", "boolean", "date", "datetime", "choice", "reference"  # noqa: E741

BSPK_DESCRIPTORS = [
    {
        "code": "SPECIAL-ORDERS",
        "name": "BSPK special orders",
        "entity": "special_order",
        "precedence": 10,
        "columns": [
            ("special_order_id", "special_order_id", S, True, True, ""),
            ("store_id", "store_id", S, True, False, ""),
            ("client_id", "client_id", S, True, False, ""),
            ("associate_id", "associate_id", S, False, False, ""),
            ("order_type", "order_type", C, True, False, "REPAIR,CUSTOM"),
            ("status", "status", C, True, False, "OPEN,IN_PROGRESS,READY,COMPLETED,CANCELLED"),
            ("description", "description", S, False, False, ""),
            ("currency", "currency", S, False, False, ""),
            ("deposit_amount", "deposit_amount", D, False, False, ""),
            ("total_amount", "total_amount", D, False, False, ""),
            ("created_at", "ordered_at", DTT, True, False, ""),
            ("promised_date", "promised_date", DT, False, False, ""),
        ],
    },
    {
        "code": "SPECIAL-ORDER-LINE-ITEMS",
        "name": "BSPK special order line items",
        "entity": "special_order_line_item",
        "precedence": 20,
        "columns": [
            ("line_item_id", "line_item_id", S, True, True, ""),
            ("special_order_id", "special_order", R, True, False, ""),
            ("sku", "sku", S, False, False, ""),
            ("product_name", "product_name", S, True, False, ""),
            ("quantity", "quantity", I, True, False, ""),
            ("unit_price", "unit_price", D, False, False, ""),
            ("notes", "notes", S, False, False, ""),
        ],
    },
    {
        "code": "SPECIAL-ORDER-EVENTS",
        "name": "BSPK special order events",
        "entity": "special_order_event",
        "precedence": 30,
        "columns": [
            ("event_id", "event_id", S, True, True, ""),
            ("special_order_id", "special_order", R, True, False, ""),
            (
                "event_type",
                "event_type",
                C,
                True,
                False,
                "CREATED,SENT_TO_WORKSHOP,RECEIVED_FROM_WORKSHOP,READY_FOR_PICKUP,PICKED_UP,CANCELLED,NOTE",
            ),
            ("event_at", "event_at", DTT, True, False, ""),
            ("associate_id", "associate_id", S, False, False, ""),
            ("note", "note", S, False, False, ""),
        ],
    },
]

KORE_DESCRIPTORS = [
    {
        "code": "KS_CUSTOMERS",
        "name": "Kore customers",
        "entity": "customer",
        "precedence": 10,
        "columns": [
            ("customer_id", "customer_id", S, True, True, ""),
            ("email", "email", S, True, False, ""),
            ("first_name", "first_name", S, False, False, ""),
            ("last_name", "last_name", S, False, False, ""),
            ("company_name", "company_name", S, False, False, ""),
            ("group", "group", S, False, False, ""),
            ("accounting_id", "accounting_id", S, False, False, ""),
            ("price_list", "price_list", S, False, False, ""),
            ("discount_percentage", "discount_percentage", D, False, False, ""),
            ("payment_on_account", "payment_on_account", B, False, False, ""),
            ("parent_customer_id", "parent", R, False, False, ""),
            ("active", "active", B, False, False, ""),
        ],
    },
    {
        "code": "KS_PRODUCTS",
        "name": "Kore products (one row per variant)",
        "entity": "product_variant",
        "precedence": 10,
        "columns": [
            ("product_id", "product", R, True, False, ""),
            ("title", "product.title", S, True, False, ""),
            ("slug", "product.slug", S, False, False, ""),
            ("status", "status", C, False, False, "live,discontinued"),
            ("variant_id", "variant_id", S, True, True, ""),
            ("sku", "sku", S, True, False, ""),
            ("weight_in_grams", "weight_in_grams", I, False, False, ""),
            ("position", "position", I, False, False, ""),
            ("cart_image_url", "cart_image_url", S, False, False, ""),
            ("options", "options", S, False, False, ""),
            ("rrp", "rrp", D, False, False, ""),
            ("restock_date", "restock_date", DT, False, False, ""),
        ],
    },
    {
        "code": "KS_INVENTORY",
        "name": "Kore inventory",
        "entity": "stock_level",
        "precedence": 20,
        "columns": [
            ("sku", "variant", R, True, True, ""),
            ("location", "location", S, True, True, ""),
            ("quantity", "quantity", I, True, False, ""),
            ("restock_date", "restock_date", DT, False, False, ""),
        ],
    },
    {
        "code": "KS_PRICES",
        "name": "Kore prices",
        "entity": "price",
        "precedence": 20,
        "columns": [
            ("price_list", "price_list", R, True, True, ""),
            ("sku", "variant", R, True, True, ""),
            ("currency", "currency", S, True, False, ""),
            ("price", "price", D, True, False, ""),
            ("min_quantity", "min_quantity", I, False, True, ""),
        ],
    },
    {
        "code": "KS_ORDERS",
        "name": "Kore orders",
        "entity": "order",
        "precedence": 30,
        "columns": [
            ("order_id", "order_id", S, True, True, ""),
            ("customer_id", "customer", R, True, False, ""),
            ("order_date", "order_date", DTT, True, False, ""),
            ("currency", "currency", S, True, False, ""),
            ("total", "total", D, True, False, ""),
            ("shipping_method", "shipping_method", S, False, False, ""),
            ("ship_to_name", "ship_to_name", S, False, False, ""),
            ("ship_to_line1", "ship_to_line1", S, False, False, ""),
            ("ship_to_city", "ship_to_city", S, False, False, ""),
            ("ship_to_postcode", "ship_to_postcode", S, False, False, ""),
            ("ship_to_country", "ship_to_country", S, False, False, ""),
            ("status", "status", C, False, False, "open,cancelled"),
        ],
    },
    {
        "code": "KS_ORDER_LINES",
        "name": "Kore order lines",
        "entity": "order_line",
        "precedence": 40,
        "columns": [
            ("order_id", "order", R, True, True, ""),
            ("line_no", "line_no", I, True, True, ""),
            ("sku", "variant", R, True, False, ""),
            ("quantity", "quantity", I, True, False, ""),
            ("unit_price", "unit_price", D, True, False, ""),
        ],
    },
    {
        "code": "KS_SHIPMENTS",
        "name": "Kore shipments",
        "entity": "shipment",
        "precedence": 50,
        "columns": [
            ("shipment_id", "shipment_id", S, True, True, ""),
            ("order_id", "order", R, True, False, ""),
            ("carrier", "carrier", S, False, False, ""),
            ("tracking_number", "tracking_number", S, False, False, ""),
            ("shipped_at", "shipped_at", DTT, True, False, ""),
            ("line_nos", "line_nos", S, False, False, ""),
        ],
    },
]

# Layouts the hub writes for other systems and never imports (SPEC section 6, "export only").
EXPORT_DESCRIPTORS = [
    {
        "code": "ORDER-STATUS",
        "name": "Order status (for the platform that took the order)",
        "entity": "order",
        "precedence": 60,
        "columns": [
            ("order_id", "order_id", S, True, True, ""),
            ("state", "state", C, True, False, ""),
            ("shipped_lines", "shipped_lines", S, False, False, ""),
            ("tracking_numbers", "tracking_numbers", S, False, False, ""),
            ("updated_at", "updated_at", DTT, True, False, ""),
        ],
    },
]

EXPORT_GROUPS = [
    {"code": "order-status", "name": "Order status for the platform", "descriptors": ["ORDER-STATUS"]},
]

GROUPS = [
    {
        "code": "bspk-special-orders",
        "name": "BSPK special orders",
        "descriptors": [d["code"] for d in BSPK_DESCRIPTORS],
    },
    {"code": "kore-inbound", "name": "Kore inbound", "descriptors": [d["code"] for d in KORE_DESCRIPTORS]},
]


def column_names(code: str) -> tuple[str, ...]:
    """Return the column names of a built-in descriptor, in file order."""
    spec = next(d for d in BSPK_DESCRIPTORS + KORE_DESCRIPTORS + EXPORT_DESCRIPTORS if d["code"] == code)
    return tuple(column[0] for column in spec["columns"])


def install_builtin(apps) -> None:
    """Create or refresh the built-in descriptors, their columns, the two import groups and the export group."""
    DataDescriptor = apps.get_model("impex", "DataDescriptor")
    DescriptorColumn = apps.get_model("impex", "DescriptorColumn")
    DataGroup = apps.get_model("impex", "DataGroup")
    for convention, fmt, delimiter, boolean_style, specs in (
        ("bspk", "csv", ",", "Y/N", BSPK_DESCRIPTORS),
        ("kore", "tsv", "\\t", "true/false", KORE_DESCRIPTORS),
        ("kore", "tsv", "\\t", "true/false", EXPORT_DESCRIPTORS),
    ):
        for spec in specs:
            pattern = f"{spec['code']}_*" if convention == "bspk" else f"*{spec['code']}.*"
            descriptor, _ = DataDescriptor.objects.update_or_create(
                code=spec["code"],
                defaults={
                    "name": spec["name"],
                    "entity": spec["entity"],
                    "convention": convention,
                    "format": fmt,
                    "delimiter": delimiter,
                    "encoding": "utf-8",
                    "has_header": True,
                    "file_pattern": pattern,
                    "precedence": spec["precedence"],
                    "boolean_style": boolean_style,
                    "builtin": True,
                    "export_only": specs is EXPORT_DESCRIPTORS,
                },
            )
            descriptor.columns.all().delete()
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
    for direction, groups in (("import", GROUPS), ("export", EXPORT_GROUPS)):
        for group in groups:
            obj, _ = DataGroup.objects.update_or_create(
                code=group["code"], defaults={"name": group["name"], "direction": direction}
            )
            obj.descriptors.set(DataDescriptor.objects.filter(code__in=group["descriptors"]))
