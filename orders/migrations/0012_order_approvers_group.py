"""The group "Order approvers" on every hub, not only the demo's: see orders, their lines, shipments and export runs,
and approve or reject held orders (SPEC 13), so that the 403 page and the user page can point staff to it."""

from django.db import migrations

APPROVERS = "Order approvers"
PERMISSIONS = ("view_order", "view_orderline", "view_shipment", "view_orderexportrun", "approve_order")


def approvers_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # A new database gets its permissions after the last migration (post_migrate): make orders' ones now.
    config = apps.get_app_config("orders")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=APPROVERS)
    group.permissions.add(
        *permission_model.objects.filter(content_type__app_label="orders", codename__in=PERMISSIONS)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0011_natural_keys_one_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(approvers_group, migrations.RunPython.noop)]
