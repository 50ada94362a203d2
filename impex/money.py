"""Money as people read it: the currency's minor units (2 decimals for most), grouped thousands, the code after the
amount; stored values and files keep their own precision."""

from decimal import Decimal

# ISO 4217 currencies whose minor unit is not the cent; every other code (and none) has 2 decimals.
MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF"),
        0,
    ),
    **dict.fromkeys(("XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def money_text(amount: Decimal | None, currency: str | None = None) -> str:
    """Write an amount with its currency's minor units (more only if the stored value has them) and its code."""
    if amount is None or amount == "":
        return "-"
    amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    code = (currency or "").strip().upper()
    # Never hide a digit the record holds (a unit price of 0.0125), but write 436.6000 as 436.60.
    places = max(MINOR_UNITS.get(code, 2), -min(amount.normalize().as_tuple().exponent, 0))
    text = f"{amount:,.{places}f}"
    return f"{text} {code}" if code else text
