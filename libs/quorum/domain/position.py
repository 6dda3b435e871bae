"""The one position calculation: what a fill (or an order's aggregate execution) does to the base asset held
and to quote cash, with the fee in the base asset or in the quote. Risk, the OMS, the paper venue, the
council's campaign and the ledger all fold fills through this, so they can never disagree on what is held.

A fee in the base asset changes what is held (a buy receives less, a sell gives more) and is valued at the
fill's price; a fee in the quote is paid from cash.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quorum.types import Side

ZERO = Decimal(0)


@dataclass(frozen=True)
class FillEffect:
    base: Decimal  # change in the base asset held
    quote: Decimal  # change in quote cash
    fee_quote: Decimal  # the fee, valued in the quote

    @property
    def quantity(self) -> Decimal:
        """The base quantity moved, fee included."""
        return abs(self.base)


def fill_effect(side: Side, quantity: Decimal, notional: Decimal, fee: Decimal, fee_currency: str | None,
                base_currency: str) -> FillEffect:
    """``notional``: quantity x price (for an aggregate, the quote spent or received before fees)."""
    in_base = bool(fee) and fee_currency == base_currency
    fee_base = fee if in_base else ZERO
    fee_cash = ZERO if in_base else fee
    fee_quote = fee * notional / quantity if in_base and quantity else fee_cash
    if side is Side.BUY:
        return FillEffect(quantity - fee_base, -(notional + fee_cash), fee_quote)
    return FillEffect(-(quantity + fee_base), notional - fee_cash, fee_quote)


def held_after(held: Decimal, side: Side, quantity: Decimal, fee: Decimal, fee_currency: str | None,
               base_currency: str) -> Decimal:
    """``held`` after one fill (the price does not matter for the quantity)."""
    return held + fill_effect(side, quantity, quantity, fee, fee_currency, base_currency).base
