"""Template filters that write values as the admin shows them everywhere: {{ order.total|money:order.currency }}."""

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

from impex.money import money_text

register = template.Library()


@register.filter
def money(amount, currency=None):
    """Write an amount with its currency's minor units and code (436.6000, "EUR" -> "436.60 EUR")."""
    return money_text(amount, currency)


@register.filter(needs_autoescape=True)
def breakable(text, autoescape=True):
    """Let a long column name (parent_customer_id) wrap after its underscores in a narrow table header."""
    escaped = conditional_escape(text) if autoescape else str(text)
    return mark_safe(escaped.replace("_", "_<wbr>"))
