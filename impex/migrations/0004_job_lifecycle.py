"""The job lifecycle: claims with leases, events instead of a log text, chunk offsets, connection state."""

import django.db.models.deletion
import django.utils.timezone
import impex.entities
from pathlib import Path

from django.conf import settings
from django.db import migrations, models
from django.db.models import Max


def forwards(apps, schema_editor):
    """Carry the old state over: job logs become events, pending files queued, applied sequences remembered."""
    ImportJob = apps.get_model("impex", "ImportJob")
    ImportEvent = apps.get_model("impex", "ImportEvent")
    ImportFile = apps.get_model("impex", "ImportFile")
    ImportChunk = apps.get_model("impex", "ImportChunk")
    ConnectionState = apps.get_model("impex", "ConnectionState")
    events = []
    for job in ImportJob.objects.exclude(log="").iterator():
        for line in job.log.splitlines():
            if line.strip():
                events.append(ImportEvent(job_id=job.pk, at=job.created_at, kind="log", message=line))
    ImportEvent.objects.bulk_create(events, batch_size=1000)
    ImportFile.objects.filter(status="pending").update(status="queued")
    # Paths become names inside the hub's storage (IMPEX_ROOT on local disk by default).
    roots = {str(Path(settings.IMPEX_ROOT)) + "/", str(Path(settings.IMPEX_ROOT).resolve()) + "/"}
    for f in ImportFile.objects.filter(path__startswith="/").only("pk", "path").iterator():
        root = next((r for r in roots if f.path.startswith(r)), None)
        if root is not None:
            ImportFile.objects.filter(pk=f.pk).update(path=f.path[len(root) :])
    ImportFile.objects.filter(processed_by__isnull=True).update(processed_by=models.F("job"))
    for chunk in ImportChunk.objects.filter(status="done").iterator():
        ImportChunk.objects.filter(pk=chunk.pk).update(rows_done=chunk.record_count)
    applied = (
        ImportFile.objects.filter(status="imported", job__dry_run=False, sequence__isnull=False)
        .values("connection_id")
        .annotate(last=Max("sequence"))
    )
    for row in applied:
        if row["connection_id"] is not None:
            ConnectionState.objects.update_or_create(
                connection_id=row["connection_id"], defaults={"last_applied_sequence": row["last"]}
            )


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0003_connection_rules'),
    ]

    operations = [
        migrations.CreateModel(
            name='ConnectionState',
            fields=[
                ('connection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='state', serialize=False, to='impex.connection')),
                ('last_applied_sequence', models.PositiveIntegerField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='FileDuplicate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveBigIntegerField(help_text='0-based index of the repeating record.')),
                ('first_row', models.PositiveBigIntegerField(help_text='Row of the record that has the key first.')),
            ],
        ),
        migrations.CreateModel(
            name='ImportEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('level', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('error', 'Error')], default='info', max_length=10)),
                ('kind', models.CharField(max_length=30)),
                ('message', models.TextField()),
                ('worker', models.CharField(blank=True, default='', max_length=200)),
            ],
            options={
                'ordering': ['job', 'at', 'id'],
            },
        ),
        migrations.AddField(
            model_name='importchunk',
            name='first_byte',
            field=models.PositiveBigIntegerField(blank=True, help_text="Where the chunk's first record starts in the file (CSV and TSV).", null=True),
        ),
        migrations.AddField(
            model_name='importchunk',
            name='lease_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='importchunk',
            name='rows_done',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='importfile',
            name='header',
            field=models.JSONField(blank=True, default=list, help_text='The columns the file has, as read when it started.'),
        ),
        migrations.AddField(
            model_name='importfile',
            name='kind',
            field=models.CharField(choices=[('data', 'data file'), ('archive', 'zip archive')], default='data', max_length=10),
        ),
        migrations.AddField(
            model_name='importfile',
            name='processed_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='processed_files', to='impex.importjob'),
        ),
        migrations.AddField(
            model_name='importjob',
            name='attempts',
            field=models.PositiveIntegerField(default=0, help_text='How many times a worker started the job.'),
        ),
        migrations.AddField(
            model_name='importjob',
            name='claimed_by',
            field=models.CharField(blank=True, default='', help_text='The worker that runs the job.', max_length=200),
        ),
        migrations.AddField(
            model_name='importjob',
            name='lease_until',
            field=models.DateTimeField(blank=True, help_text="The worker's claim ends then unless renewed.", null=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='queued_at',
            field=models.DateTimeField(blank=True, help_text='When the job was last handed to the queue.', null=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='retry_at',
            field=models.DateTimeField(blank=True, help_text='A queued job set aside is queued again then.', null=True),
        ),
        migrations.AlterField(
            model_name='datadescriptor',
            name='entity',
            field=models.CharField(choices=impex.entities.entity_choices, max_length=40),
        ),
        migrations.AlterField(
            model_name='importchunk',
            name='claimed_by',
            field=models.CharField(blank=True, default='', max_length=200),
        ),
        migrations.AlterField(
            model_name='importfile',
            name='path',
            field=models.CharField(blank=True, default='', help_text="Where the file is kept, inside the hub's storage.", max_length=1000),
        ),
        migrations.AlterField(
            model_name='importfile',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('waiting', 'Waiting'), ('imported', 'Imported'), ('rejected', 'Rejected'), ('duplicate', 'Duplicate'), ('unpacked', 'Unpacked')], db_index=True, default='queued', max_length=20),
        ),
        migrations.AddIndex(
            model_name='importjob',
            index=models.Index(fields=['status', 'lease_until'], name='importjob_lease'),
        ),
        migrations.AddField(
            model_name='connectionstate',
            name='job',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='impex.importjob'),
        ),
        migrations.AddField(
            model_name='fileduplicate',
            name='file',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='impex.importfile'),
        ),
        migrations.AddField(
            model_name='importevent',
            name='file',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='impex.importfile'),
        ),
        migrations.AddField(
            model_name='importevent',
            name='job',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='impex.importjob'),
        ),
        migrations.AddConstraint(
            model_name='fileduplicate',
            constraint=models.UniqueConstraint(fields=('file', 'index'), name='fileduplicate_key'),
        ),
        migrations.AddIndex(
            model_name='importevent',
            index=models.Index(fields=['job', 'at'], name='importevent_job_at'),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='importjob',
            name='log',
        ),
    ]
