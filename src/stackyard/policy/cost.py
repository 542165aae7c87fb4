"""Cost: each component instance's declared monthly cost, summed per environment with the
delta a plan makes. Decimal arithmetic throughout; amounts travel as strings ("12.50")."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")


def amount(value: Decimal) -> str:
    """A decimal amount as text, to the cent."""
    return str(value.quantize(CENT))


def plan_cost(
    desired: Mapping[str, tuple[Decimal, str]], current: Mapping[str, tuple[Decimal, str]]
) -> dict[str, Any]:
    """``cost`` of a plan: ``desired``/``current`` map each instance uid to (monthly, currency).

    ``monthly_total`` is the environment's total after the plan, ``delta`` the change.
    """
    currencies = {c for _, c in desired.values()} | {c for _, c in current.values()}
    currency = (
        sorted(currencies)[0] if len(currencies) == 1 else ("USD" if not currencies else "mixed")
    )
    total = sum((m for m, _ in desired.values()), Decimal(0))
    before = sum((m for m, _ in current.values()), Decimal(0))
    return {
        "monthly_total": amount(total),
        "delta": amount(total - before),
        "currency": currency,
        "by_resource": {uid: amount(m) for uid, (m, _) in sorted(desired.items())},
    }


def split(total: Decimal, ways: int) -> list[Decimal]:
    """Split an amount into ``ways`` parts to the cent, the parts adding up exactly."""
    if ways <= 0:
        return []
    base = (total / ways).quantize(CENT, rounding="ROUND_DOWN")
    parts = [base] * ways
    rest = total - base * ways
    i = 0
    while rest >= CENT:
        parts[i] += CENT
        rest -= CENT
        i += 1
    return parts
