"""How the admin shows values: money with its currency's minor units, right-aligned in lists (impex.money)."""

from django.contrib import admin
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
