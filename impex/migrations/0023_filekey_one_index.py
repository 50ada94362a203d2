# A FULL file's key ledger keeps only the index on its file (issue 19: the unique (file, key) index cost a third of the ledger).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('impex', '0022_chunk_leased_work'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='filekey',
            name='filekey_key',
        ),
    ]
