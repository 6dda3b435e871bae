"""Foundation paper matching: a market order fills at the open of the first candle after its decision
candle, plus the taker fee. (The order-book engine with latency and slippage replaces this later.)"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quorum.types import Liquidity, Side


@dataclass(frozen=True)
class FeeSchedule:
    maker: Decimal = Decimal("0.001")
    taker: Decimal = Decimal("0.001")

    def fee(self, notional: Decimal, liquidity: Liquidity) -> Decimal:
        return notional * (self.taker if liquidity is Liquidity.TAKER else self.maker)


@dataclass(frozen=True)
class Execution:
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity


def fill_market_at_open(side: Side, quantity: Decimal, next_open: Decimal, quote: str,
                        fees: FeeSchedule) -> Execution:
    """Whole quantity at the next candle's open; the fee is charged in the quote currency."""
    if quantity <= 0 or next_open <= 0:
        raise ValueError("quantity and price must be positive")
    return Execution(side, quantity, next_open, fees.fee(quantity * next_open, Liquidity.TAKER), quote,
                     Liquidity.TAKER)
