"""One BSPK connection per company name and one Kore connection per integration id (files are routed by them)."""

from django.core.management.base import CommandError
from django.db import migrations, models


def refuse_shared_names(apps, schema_editor):
    """Stop with the clashing connections listed, rather than a bare IntegrityError from the constraints."""
    Connection = apps.get_model("impex", "Connection")
    clashes = []
    for convention, field, label in (
        ("bspk", "company_name", "BSPK company name"),
        ("kore", "integration_id", "Kore integration id"),
    ):
        shared = (
            Connection.objects.filter(convention=convention)
            .exclude(**{field: ""})
            .values(field)
            .annotate(n=models.Count("id"))
            .filter(n__gt=1)
            .values_list(field, flat=True)
        )
        for value in sorted(shared):
            codes = Connection.objects.filter(convention=convention, **{field: value}).order_by("code")
            clashes.append(f"{label} '{value}': {', '.join(c.code for c in codes)}")
    if clashes:
        raise CommandError(
            "Each BSPK company name and Kore integration id must belong to one connection, but these connections "
            "share one, so their files would all go to one of them:\n  "
            + "\n  ".join(clashes)
            + "\nGive each its own (in the admin, or with python manage.py impex_connection CODE --company NAME "
            "or --integration ID), then run migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [("impex", "0002_builtin_descriptors")]

    operations = [
        migrations.AlterField(
            model_name="connection",
            name="contacts",
            field=models.TextField(
                blank=True,
                default="",
                help_text="E-mail addresses told about errors, separated by commas or semicolons.",
            ),
        ),
        migrations.AlterField(
            model_name="connection",
            name="inbox",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Folder path, s3://bucket/prefix or sftp://[user@]host[:port]/path; empty: IMPEX_ROOT/<code>/inbox.",
                max_length=500,
            ),
        ),
        migrations.RunPython(refuse_shared_names, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="connection",
            constraint=models.UniqueConstraint(
                condition=models.Q(("convention", "bspk"), models.Q(("company_name", ""), _negated=True)),
                fields=("company_name",),
                name="connection_bspk_company_once",
                violation_error_message="Another BSPK connection already has this company name.",
            ),
        ),
        migrations.AddConstraint(
            model_name="connection",
            constraint=models.UniqueConstraint(
                condition=models.Q(("convention", "kore"), models.Q(("integration_id", ""), _negated=True)),
                fields=("integration_id",),
                name="connection_kore_integration_once",
                violation_error_message="Another Kore connection already has this integration id.",
            ),
        ),
    ]
