"""Location and URL fields say where a local folder may lie and which hosts may be called (SPEC 13)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0016_job_sweeper_export_run_lease'),
    ]

    operations = [
        migrations.AlterField(
            model_name='connection',
            name='archive_folder',
            field=models.CharField(blank=True, default='', help_text='Where imported files are moved: a folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path; empty: IMPEX_ROOT/<code>/archive. A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS.', max_length=500),
        ),
        migrations.AlterField(
            model_name='connection',
            name='error_folder',
            field=models.CharField(blank=True, default='', help_text='Where rejected files are moved, each with a .reason.txt beside it; empty: IMPEX_ROOT/<code>/error. A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS.', max_length=500),
        ),
        migrations.AlterField(
            model_name='connection',
            name='inbox',
            field=models.CharField(blank=True, default='', help_text='Folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path; empty: IMPEX_ROOT/<code>/inbox. A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS.', max_length=500),
        ),
        migrations.AlterField(
            model_name='connection',
            name='outbox',
            field=models.CharField(blank=True, default='', help_text="Where scheduled exports of this connection's groups are written; empty: IMPEX_ROOT/<code>/outbox. A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS.", max_length=500),
        ),
        migrations.AlterField(
            model_name='datagroup',
            name='destination',
            field=models.CharField(blank=True, default='', help_text="Where scheduled exports are written: a folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path; empty: the connection's outbox, or IMPEX_ROOT/outbox/<code> without a connection. A local folder must lie under IMPEX_ROOT or IMPEX_ALLOWED_LOCAL_ROOTS; an SFTP host must be listed in SFTP_HOSTS.", max_length=500),
        ),
        migrations.AlterField(
            model_name='webhooksubscription',
            name='url',
            field=models.URLField(help_text='Where events are POSTed (http:// or https://): a public address, unless the host is listed in IMPEX_ALLOWED_HOSTS_OUTBOUND.', max_length=2000),
        ),
    ]
