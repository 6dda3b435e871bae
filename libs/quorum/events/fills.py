"""Fill family: executions reported by a venue."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from quorum.events.base import Payload
from quorum.types import Exchange, Liquidity, NonNegativeDecimal, PositiveDecimal, Side, Symbol, TradingMode


class OrderFilled(Payload):
    FAMILY = "fills"
    PRODUCERS = ("matching",)
    ROUTING = ("venue", "symbol")

    fill_id: str
    venue: str
    mode: TradingMode
    client_order_id: str
    exchange: Exchange
    symbol: Symbol
    side: Side
    quantity: PositiveDecimal
    price: PositiveDecimal
    fee: NonNegativeDecimal
    fee_currency: str
    liquidity: Liquidity
    ts: AwareDatetime
    is_final: bool = True
    arrival_mid: PositiveDecimal | None = Field(
        default=None, description="the venue's mid when the order arrived (paper venue): slippage is against it")
