# A third naming convention, "patterns" (issue 20): choices and help texts only; existing connections keep theirs.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0023_filekey_one_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='connection',
            name='company_name',
            field=models.CharField(blank=True, default='', help_text='BSPK: CamelCase company name in file names. Not used by Kore or patterns connections.', max_length=100),
        ),
        migrations.AlterField(
            model_name='connection',
            name='convention',
            field=models.CharField(choices=[('bspk', 'BSPK (TYPE_VERSION_Company_YYYYMMDDHHMM.csv)'), ('kore', 'Kore ({source}_{sequence}_{integration}_{API}.{mode})'), ('patterns', "Patterns (names matched by the file patterns of its import groups' descriptors)")], max_length=10),
        ),
        migrations.AlterField(
            model_name='connection',
            name='integration_id',
            field=models.CharField(blank=True, default='', help_text='Kore: integration id in file names. Not used by BSPK or patterns connections.', max_length=100),
        ),
        migrations.AlterField(
            model_name='datadescriptor',
            name='convention',
            field=models.CharField(blank=True, choices=[('bspk', 'BSPK (TYPE_VERSION_Company_YYYYMMDDHHMM.csv)'), ('kore', 'Kore ({source}_{sequence}_{integration}_{API}.{mode})'), ('patterns', "Patterns (names matched by the file patterns of its import groups' descriptors)")], default='', max_length=10),
        ),
    ]
