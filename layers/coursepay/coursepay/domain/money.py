"""Money in integer minor units: currency exponents and exact conversions, never floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# PayMob's currencies and their minor-unit exponents. OMR has three decimals (baisa).
CURRENCY_EXPONENTS: dict[str, int] = {
    "EGP": 2,
    "SAR": 2,
    "AED": 2,
    "USD": 2,
    "EUR": 2,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
}


class UnsupportedCurrency(ValueError):
    """A currency code outside the ones this platform prices in."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise UnsupportedCurrency(f"unsupported currency {currency!r}") from None


def to_minor_units(amount: str | Decimal, currency: str) -> int:
    """Convert a decimal amount ("19.99", "4.500") to exact minor units; no sub-unit values."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a decimal amount: {amount!r}")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more than {exponent(currency)} decimals")
    return int(scaled)


def format_amount(minor_units: int, currency: str) -> str:
    """Render minor units as a fixed-point string ("1500.00", "4.500")."""
    places = exponent(currency)
    return f"{Decimal(minor_units).scaleb(-places):.{places}f}"
