# Natural keys unique by constraint (no varchar_pattern_ops twin on PostgreSQL); connection not indexed (issue 19).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0023_filekey_one_index'),
        ('syncapp', '0003_record_source_from_import_history'),
    ]

    operations = [
        migrations.AlterField(
            model_name='customer',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='customer',
            name='customer_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='price',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='pricelist',
            name='code',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='pricelist',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='product',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='product',
            name='product_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='productvariant',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='productvariant',
            name='sku',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='productvariant',
            name='variant_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='specialorder',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='specialorder',
            name='special_order_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='specialorderevent',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='specialorderevent',
            name='event_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='specialorderlineitem',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AlterField(
            model_name='specialorderlineitem',
            name='line_item_id',
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name='stocklevel',
            name='connection',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.connection'),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(fields=('customer_id',), name='customer_customer_id_key'),
        ),
        migrations.AddConstraint(
            model_name='pricelist',
            constraint=models.UniqueConstraint(fields=('code',), name='pricelist_code_key'),
        ),
        migrations.AddConstraint(
            model_name='product',
            constraint=models.UniqueConstraint(fields=('product_id',), name='product_product_id_key'),
        ),
        migrations.AddConstraint(
            model_name='productvariant',
            constraint=models.UniqueConstraint(fields=('variant_id',), name='productvariant_variant_id_key'),
        ),
        migrations.AddConstraint(
            model_name='productvariant',
            constraint=models.UniqueConstraint(fields=('sku',), name='productvariant_sku_key'),
        ),
        migrations.AddConstraint(
            model_name='specialorder',
            constraint=models.UniqueConstraint(fields=('special_order_id',), name='specialorder_special_order_id_key'),
        ),
        migrations.AddConstraint(
            model_name='specialorderevent',
            constraint=models.UniqueConstraint(fields=('event_id',), name='specialorderevent_event_id_key'),
        ),
        migrations.AddConstraint(
            model_name='specialorderlineitem',
            constraint=models.UniqueConstraint(fields=('line_item_id',), name='specialorderlineitem_line_item_id_key'),
        ),
    ]
