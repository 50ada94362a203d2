"""Money and times as the admin shows them: an amount with its currency's decimals (two for most, more only where
the value has them), a time as 2026-12-07 14:05 in the hub's time zone (TIME_ZONE)."""

from decimal import Decimal

from django.utils import timezone
from django.utils.formats import date_format

# The one format of a date and time on the order pages (the templates' |date:"Y-m-d H:i" says the same).
WHEN_FORMAT = "Y-m-d H:i"

# ISO 4217 currencies whose minor unit is not the cent; every other currency shows two decimals.
MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV"), 0),
    **dict.fromkeys(("XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def money_places(currency: str) -> int:
    """Return how many decimals the currency's amounts show."""
    return MINOR_UNITS.get((currency or "").upper(), 2)


def money(amount: Decimal | None, currency: str = "", *, code: bool = True) -> str:
    """Show an amount with its currency's decimals ("900.00 EUR"); a finer value keeps its digits ("0.125 EUR")."""
    if amount is None:
        return "-"
    places = money_places(currency)
    exact = Decimal(amount).normalize()
    shown = max(places, -exact.as_tuple().exponent if exact.as_tuple().exponent < 0 else 0)
    text = f"{Decimal(amount):,.{shown}f}"
    return f"{text} {currency}" if code and currency else text


def when(at) -> str:
    """Show a time as 2026-12-07 14:05 in the hub's time zone; "-" for none."""
    if at is None:
        return "-"
    return date_format(timezone.localtime(at), WHEN_FORMAT)
