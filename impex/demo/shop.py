"""The demo's third-party layout: a shop platform's 19-column customers export, read by a patterns connection."""

from django.db import transaction

from impex.choices import GroupDirection
from impex.models import DataDescriptor, DataGroup, DescriptorColumn

SHOP_GROUP = "shop-import"
SHOP_DESCRIPTOR = "SHOP_CUSTOMERS"
# The export's header as the platform writes it; the customer has a field for four columns, the rest is read past.
SHOP_HEADER = (
    "First Name,Last Name,Email,Company,Address1,Address2,City,Province,Province Code,Country,Country Code,Zip,"
    "Phone,Accepts Marketing,Total Spent,Total Orders,Tags,Note,Tax Exempt"
).split(",")
SHOP_FIELDS = {"First Name": "first_name", "Last Name": "last_name", "Email": "email", "Company": "company_name"}


@transaction.atomic
def shop_layout_save() -> None:
    """Create the shop's customers descriptor (keyed by e-mail) and the import group holding it, once; an admin's
    later changes to them are kept."""
    descriptor, created = DataDescriptor.objects.get_or_create(
        code=SHOP_DESCRIPTOR,
        defaults={
            "name": "Shop platform customers export",
            "entity": "customer",
            "format": "csv",
            "file_pattern": "customers_export*.csv",
            "precedence": 10,
            "true_words": "yes",
            "false_words": "no",
        },
    )
    if created:
        DescriptorColumn.objects.bulk_create(
            DescriptorColumn(
                descriptor=descriptor,
                position=position,
                name=name,
                field=SHOP_FIELDS.get(name, ""),
                required=name == "Email",
                is_key=name == "Email",
                ignored=name not in SHOP_FIELDS,
            )
            for position, name in enumerate(SHOP_HEADER, start=1)
        )
    group, _ = DataGroup.objects.get_or_create(
        code=SHOP_GROUP, defaults={"name": "Shop platform exports", "direction": GroupDirection.IMPORT}
    )
    group.descriptors.add(descriptor)
