"""BSPK files of one TYPE go in by their timestamps: keep the newest applied per TYPE, filled from the ledger."""

import re

from django.db import migrations, models

# TYPE_VERSION_CompanyName_YYYYMMDDHHMM.csv, as impex.naming parses it (kept here: migrations stay as written).
_BSPK_NAME = re.compile(r"^(?P<type>[^_]+)_[^_]+_[^_]+_(?P<stamp>\d{12})\.csv$")


def fill_from_ledger(apps, schema_editor):
    """Set each BSPK connection's newest applied timestamp per TYPE from the names it has imported."""
    Connection = apps.get_model("impex", "Connection")
    ConnectionState = apps.get_model("impex", "ConnectionState")
    ImportedFileName = apps.get_model("impex", "ImportedFileName")
    for conn in Connection.objects.filter(convention="bspk").only("pk"):
        newest: dict[str, str] = {}
        names = ImportedFileName.objects.filter(connection=conn).values_list("name", flat=True)
        for name in names.iterator(chunk_size=5000):
            match = _BSPK_NAME.match(name)
            if match and newest.get(match["type"], "") < match["stamp"]:
                newest[match["type"]] = match["stamp"]
        if newest:
            state, _ = ConnectionState.objects.get_or_create(connection=conn)
            ConnectionState.objects.filter(pk=state.pk).update(last_applied_timestamps=newest)


class Migration(migrations.Migration):
    dependencies = [
        ("impex", "0017_location_help"),
    ]

    operations = [
        migrations.AddField(
            model_name="connectionstate",
            name="last_applied_timestamps",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(fill_from_ledger, migrations.RunPython.noop),
    ]
