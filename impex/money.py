"""Money as people read it: the currency's minor units (2 decimals for most, from Babel's copy of CLDR), grouped
thousands, the code after the amount; stored values and files keep their own precision."""

from decimal import Decimal

from babel.numbers import get_currency_precision


def money_text(amount: Decimal | None, currency: str | None = None, *, code: bool = True) -> str:
    """Write an amount with its currency's minor units (more only if the stored value has them) and its code."""
    if amount is None or amount == "":
        return "-"
    amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    currency = (currency or "").strip().upper()
    minor = get_currency_precision(currency) if currency else 2
    # Never hide a digit the record holds (a unit price of 0.0125), but write 436.6000 as 436.60.
    places = max(minor, -min(amount.normalize().as_tuple().exponent, 0))
    text = f"{amount:,.{places}f}"
    return f"{text} {currency}" if code and currency else text
