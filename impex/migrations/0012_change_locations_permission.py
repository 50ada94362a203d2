"""Add the permission to set folders, URLs and hosts (SPEC section 13: impex.change_locations)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0011_webhooks'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='connection',
            options={'ordering': ['code'], 'permissions': [('change_locations', 'Can set the folders, URLs and hosts the hub reads from, writes to or calls')]},
        ),
    ]
