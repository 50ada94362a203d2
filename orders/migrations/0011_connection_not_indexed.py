# Synced records' connection is provenance, not a lookup path: no index (issue 19, as syncapp 0004).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0023_filekey_one_index'),
        ('orders', '0010_order_event_job'),
    ]

    operations = [
        migrations.AlterField(
            model_name='order',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='orderline',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='shipment',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
    ]
