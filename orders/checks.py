"""Start-up checks: file exporters whose destination the hub now refuses (SPEC 13), by name."""

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError

from impex.checks import refused_locations
from orders.choices import ExporterKind
from orders.models import Exporter


@register(Tags.database)
def exporter_locations_check(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    """Name every file exporter whose destination the hub refuses (migrate and check --database run it)."""
    if not databases:
        return []
    try:
        exporters = Exporter.objects.filter(kind=ExporterKind.FILE).exclude(destination="")
        return refused_locations(exporters, kind="file exporter", fields=("destination",), check_id="orders.W001")
    except DatabaseError:  # not migrated yet: nothing is saved
        return []
