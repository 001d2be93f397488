"""Currency exponents, boundary rounding and exact allocation of amounts (pure).

Money is :class:`~decimal.Decimal` in major units everywhere in the domain; it is rounded
*once*, half-up, to the currency's ISO 4217 exponent (0, 2 or 3 places) when an outgoing body
is built. Sums in a body must still add up after that rounding, so totals are rounded first
and their parts are distributed with :func:`allocate` (largest remainder), never rounded one by
one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final

#: ISO 4217 minor-unit exponents that are not 2 (everything else: :data:`DEFAULT_EXPONENT`).
CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
            ),
            0,
        ),
        **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
        **dict.fromkeys(("CLF", "UYW"), 4),
    }
)
DEFAULT_EXPONENT: Final = 2
ZERO: Final = Decimal(0)


def currency_exponent(currency: str | None) -> int:
    """Minor-unit exponent of an ISO 4217 code (2 when unknown or absent)."""
    if not currency:
        return DEFAULT_EXPONENT
    return CURRENCY_EXPONENTS.get(currency.strip().upper(), DEFAULT_EXPONENT)


def quantum(exponent: int) -> Decimal:
    """The smallest unit: ``Decimal("0.01")`` for exponent 2, ``Decimal("1")`` for 0."""
    return Decimal(1).scaleb(-exponent)


def round_money(value: Decimal, exponent: int) -> Decimal:
    """Half-up to ``exponent`` places (the only rounding money ever gets)."""
    return value.quantize(quantum(exponent), rounding=ROUND_HALF_UP)


def to_json_number(value: Decimal, exponent: int) -> int | float:
    """A rounded amount as a JSON number: an int for 0-decimal currencies, else a float whose
    shortest representation has at most ``exponent`` decimals (``12.345``, ``0.001``)."""
    rounded = round_money(value, exponent)
    if exponent == 0:
        return int(rounded)
    return float(rounded)


def format_amount(value: Decimal, exponent: int) -> str:
    """``"12.345"``, ``"1250"``, ``"0.85"``: text with exactly the currency's decimals."""
    return f"{round_money(value, exponent):.{exponent}f}"


def allocate(total: Decimal, weights: Sequence[Decimal], exponent: int) -> list[Decimal]:
    """Split ``total`` (rounded to ``exponent``) into parts proportional to ``weights`` whose
    rounded values sum to it exactly (largest remainder; ties go to the earlier part).

    Zero or empty weights split evenly. Negative weights are treated as zero.
    """
    n = len(weights)
    if n == 0:
        return []
    q = quantum(exponent)
    target = round_money(total, exponent)
    w = [max(x, ZERO) for x in weights]
    wsum = sum(w, ZERO)
    if wsum == 0:
        w = [Decimal(1)] * n
        wsum = Decimal(n)
    exact = [target * x / wsum for x in w]
    floors = [e.quantize(q, rounding=ROUND_FLOOR) for e in exact]
    left = int((target - sum(floors, ZERO)) / q)
    order = sorted(range(n), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[: max(left, 0)]:
        floors[i] += q
    return floors
