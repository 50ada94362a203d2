# Natural keys unique by constraint (no varchar_pattern_ops twin on PostgreSQL); connection not indexed (issue 19).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0023_filekey_one_index'),
        ('orders', '0010_order_event_job'),
        ('syncapp', '0004_natural_keys_one_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='order',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='order',
            name='order_id',
            field=models.CharField(max_length=100),
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
        migrations.AlterField(
            model_name='shipment',
            name='shipment_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AddConstraint(
            model_name='order',
            constraint=models.UniqueConstraint(fields=('order_id',), name='order_order_id_key'),
        ),
        migrations.AddConstraint(
            model_name='shipment',
            constraint=models.UniqueConstraint(fields=('shipment_id',), name='shipment_shipment_id_key'),
        ),
    ]
