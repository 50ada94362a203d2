"""Times as the order pages show them: 2026-12-07 14:05 in the hub's time zone (TIME_ZONE); money is impex.money's."""

from django.utils import timezone
from django.utils.formats import date_format

# The one format of a date and time on the order pages (the templates' |date:"Y-m-d H:i" says the same).
WHEN_FORMAT = "Y-m-d H:i"


def when(at) -> str:
    """Show a time as 2026-12-07 14:05 in the hub's time zone; "-" for none."""
    if at is None:
        return "-"
    return date_format(timezone.localtime(at), WHEN_FORMAT)
