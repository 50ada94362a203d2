"""Install the built-in descriptors and groups (SPEC section 6)."""

from django.db import migrations


def forwards(apps, schema_editor):
    from impex.builtin import install_builtin

    install_builtin(apps)


class Migration(migrations.Migration):
    dependencies = [("impex", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
