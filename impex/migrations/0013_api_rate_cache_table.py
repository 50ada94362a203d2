"""The database cache table the API's request rate per token is counted in (settings.CACHES["api_rate"]).

`migrate` makes it, so no deployment step is forgotten; createcachetable skips a table that is there already.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("impex", "0012_change_locations_permission")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
