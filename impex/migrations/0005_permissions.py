"""Add the permissions to run imports and to download exports (SPEC section 13)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("impex", "0004_job_lifecycle")]

    operations = [
        migrations.AlterModelOptions(
            name="importjob",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    (
                        "run_import",
                        "Can run imports: upload files and zips, start and re-run jobs, release waits, scan",
                    ),
                    ("export_data", "Can download exports"),
                ],
            },
        ),
    ]
