"""The built-in KS_ORDERS descriptor gets its optional status column (open or cancelled, SPEC section 6)."""

from django.db import migrations

STATUS = {
    "name": "status",
    "field": "status",
    "type": "choice",
    "required": False,
    "is_key": False,
    "choices": "open,cancelled",
}


def forwards(apps, schema_editor):
    """Add the status column to the built-in KS_ORDERS, last, unless it has a status column already."""
    DataDescriptor = apps.get_model("impex", "DataDescriptor")
    DescriptorColumn = apps.get_model("impex", "DescriptorColumn")
    for descriptor in DataDescriptor.objects.filter(code="KS_ORDERS", builtin=True):
        columns = DescriptorColumn.objects.filter(descriptor=descriptor)
        if columns.filter(name=STATUS["name"]).exists():
            continue
        last = columns.order_by("-position").values_list("position", flat=True).first()
        DescriptorColumn.objects.create(descriptor=descriptor, position=(last or 0) + 1, **STATUS)


def backwards(apps, schema_editor):
    """Take the status column off the built-in KS_ORDERS."""
    DescriptorColumn = apps.get_model("impex", "DescriptorColumn")
    DescriptorColumn.objects.filter(descriptor__code="KS_ORDERS", descriptor__builtin=True, name="status").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("impex", "0018_connection_state_last_applied_timestamps"),
        ("orders", "0009_order_status_amendment_notes"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
