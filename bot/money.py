"""Money as people read it and as the books keep it: integer micro-dollars (1 USD = 1_000_000).

Dependency-free on purpose: the catalog, the services, both faces and the benchmarks format and
parse amounts here, and nowhere else.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

MICROS_PER_USD = 1_000_000


def usd_to_micros(value: Any) -> int:
    """Parse a USD amount ("0.08", 0.08, 1) into integer micro-dollars without float drift."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a USD amount: {value!r}")
    return int((amount * MICROS_PER_USD).to_integral_value(rounding="ROUND_HALF_UP"))


def micros_to_usd(micros: int) -> str:
    """Format micro-dollars for people: $0.04, $0.048612."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    frac_text = f"{frac:06d}".rstrip("0")
    if len(frac_text) < 2:
        frac_text = frac_text.ljust(2, "0")
    return f"{sign}${whole}.{frac_text}"


def price(micros: int) -> str:
    """A price or one job's cost for people: at most four decimals, at least two ($0.0972, $0.04)."""
    return _rounded(micros, 4)


def total(micros: int) -> str:
    """A sum of money for people (spent, left, budgets): to the cent ($12.35)."""
    return _rounded(micros, 2, fixed=True)


def _rounded(micros: int, places: int, *, fixed: bool = False) -> str:
    step = MICROS_PER_USD // 10**places
    units = (abs(micros) + step // 2) // step  # half up, away from zero
    whole, frac = divmod(units, 10**places)
    text = f"{frac:0{places}d}"
    if not fixed:
        text = text.rstrip("0").ljust(2, "0")
    return f"{'-' if micros < 0 and units else ''}${whole}.{text}"
