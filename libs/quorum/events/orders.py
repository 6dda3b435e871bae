"""Order family: risk's verdict on an intent, the OMS's orders and the venue's answers."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, Field

from quorum.events.base import Payload
from quorum.types import (
    Exchange,
    NonNegativeDecimal,
    OrderStatus,
    OrderType,
    PositiveDecimal,
    Side,
    Symbol,
    TradingMode,
)


class OrderIntentApproved(Payload):
    """Risk sized an intent and let it through."""

    FAMILY = "orders"
    ROUTING = ("exchange", "symbol")

    decision_id: UUID
    exchange: Exchange
    symbol: Symbol
    side: Side
    order_type: OrderType = OrderType.MARKET
    quantity: PositiveDecimal
    reference_price: PositiveDecimal
    reference_ts: AwareDatetime = Field(description="open time of the candle the decision was made on")
    checks: dict[str, str] = Field(default_factory=dict, description="check name -> outcome")


class OrderIntentRefused(Payload):
    """Risk refused an intent; ``reason_code`` says which check failed."""

    FAMILY = "orders"
    ROUTING = ("exchange", "symbol")

    decision_id: UUID
    exchange: Exchange
    symbol: Symbol
    side: Side
    reason_code: str
    detail: str = ""


class SubmitOrder(Payload):
    """Command from the OMS to a venue adapter."""

    FAMILY = "venue"
    ROUTING = ("venue", "symbol")
    KIND = "command"

    venue: str
    mode: TradingMode
    client_order_id: str
    exchange: Exchange
    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: PositiveDecimal
    limit_price: PositiveDecimal | None = None
    reference_ts: AwareDatetime


class OrderRejected(Payload):
    """The venue refused an order."""

    FAMILY = "venue"
    ROUTING = ("venue", "symbol")

    venue: str
    client_order_id: str
    symbol: Symbol
    reason_code: str
    detail: str = ""


class OrderUpdated(Payload):
    """The OMS's view of an order after a state change (the order's history is the stream of these)."""

    FAMILY = "orders"
    ROUTING = ("exchange", "symbol")

    client_order_id: str
    decision_id: UUID
    mode: TradingMode
    exchange: Exchange
    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: PositiveDecimal
    status: OrderStatus
    previous_status: OrderStatus | None
    filled_quantity: NonNegativeDecimal = Field(default=0)
    average_price: NonNegativeDecimal | None = None
    fees: NonNegativeDecimal = Field(default=0)
    fee_currency: str | None = None
    quote_spent: NonNegativeDecimal = Field(default=0, description="gross quote notional of all fills")
    reason_code: str | None = None
