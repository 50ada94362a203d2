"""Location and URL fields say where a local folder may lie and which hosts may be called (SPEC 13)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0005_feed_event_id_per_connection'),
    ]

    operations = [
        migrations.AlterField(
            model_name='exporter',
            name='destination',
            field=models.CharField(blank=True, default='', help_text="file: a folder, s3://bucket/prefix or sftp://host/path; empty: the outbox of the order's connection (or IMPEX_ROOT/orders/outbox). A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS.", max_length=500),
        ),
        migrations.AlterField(
            model_name='exporter',
            name='url',
            field=models.URLField(blank=True, default='', help_text='webhook: where the order is POSTed: a public address, unless the host is listed in IMPEX_ALLOWED_HOSTS_OUTBOUND.', max_length=2000),
        ),
    ]
