"""How the admin shows values: money with its currency's minor units, right-aligned in lists (impex.money), and
times in the hub's one format (DATETIME_FORMAT, config/formats: 2026-12-07 14:05 in TIME_ZONE)."""

from django.contrib import admin
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from impex.money import money_text


def money_display(field: str, *, currency: str | None = None, description: str | None = None):
    """Return a ModelAdmin (or inline) display of a money field, with the currency read by a lookup path
    ("currency", "order__currency"); name it FIELD_money so that lists right-align it (hub/admin.css)."""

    def display(self, obj):
        code = None
        if currency:
            code = obj
            for part in currency.split("__"):
                code = getattr(code, part, None)
        return format_html('<span class="money">{}</span>', money_text(getattr(obj, field), code))

    verbose = description or field.replace("_", " ")
    return admin.display(description=verbose, ordering=field)(display)


def when_text(at) -> str:
    """Write a time as every admin page does (DATETIME_FORMAT, in the hub's time zone); "-" for none."""
    if at is None:
        return "-"
    return date_format(timezone.localtime(at), "DATETIME_FORMAT")
