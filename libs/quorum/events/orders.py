"""Order family: risk's verdict on an intent, the OMS's orders and the venue's answers."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from quorum.events.base import Payload
from quorum.types import (
    Exchange,
    Intent,
    NonNegativeDecimal,
    OrderStatus,
    OrderType,
    PositiveDecimal,
    Side,
    Symbol,
    TimeInForce,
    TradingMode,
)


class OrderIntentApproved(Payload):
    """Risk sized an intent and let it through."""

    FAMILY = "orders"
    PRODUCERS = ("risk",)
    ROUTING = ("exchange", "symbol")

    SCHEMA_VERSION = 2

    decision_id: UUID
    exchange: Exchange
    symbol: Symbol
    side: Side
    intent: Intent = Intent.ENTRY
    order_type: OrderType = OrderType.MARKET
    quantity: PositiveDecimal
    reference_price: PositiveDecimal
    reference_ts: AwareDatetime = Field(description="open time of the candle the decision was made on")
    stop_loss: PositiveDecimal | None = Field(default=None, description="protective stop, placed once filled")
    take_profit: PositiveDecimal | None = Field(default=None, description="take-profit, OCO with the stop")
    checks: dict[str, str] = Field(default_factory=dict, description="check name -> outcome")


class OrderIntentRefused(Payload):
    """Risk refused an intent; ``reason_code`` says which check failed."""

    FAMILY = "orders"
    PRODUCERS = ("risk",)
    ROUTING = ("exchange", "symbol")

    decision_id: UUID
    exchange: Exchange
    symbol: Symbol
    side: Side
    reason_code: str
    detail: str = ""


class TradeProposed(Payload):
    """Semi-Auto: an approved intent waits for an operator's approval until ``expires_at``."""

    FAMILY = "orders"
    PRODUCERS = ("oms",)
    ROUTING = ("exchange", "symbol")

    decision_id: UUID
    exchange: Exchange
    symbol: Symbol
    side: Side
    quantity: PositiveDecimal
    reference_price: PositiveDecimal
    stop_loss: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None
    expires_at: AwareDatetime


class SubmitOrder(Payload):
    """Command from the OMS to a venue adapter. Orders sharing an ``oco_group`` are one-cancels-the-others:
    the venue cancels the rest of the group as soon as one of them executes (as Binance's OCO does)."""

    FAMILY = "venue"
    PRODUCERS = ("oms",)
    ROUTING = ("venue", "symbol")
    KIND = "command"
    SCHEMA_VERSION = 2

    venue: str
    mode: TradingMode
    client_order_id: str
    exchange: Exchange
    symbol: Symbol
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    quantity: PositiveDecimal
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    oco_group: str | None = None
    oco_size: int | None = Field(default=None, ge=2, le=10,
                                 description="legs in the OCO group: the venue makes none live before all arrived")
    reference_ts: AwareDatetime

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> SubmitOrder:
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit != (self.limit_price is not None) or needs_stop != (self.stop_price is not None):
            raise ValueError(f"{self.order_type} orders need exactly: "
                             f"{'limit_price ' if needs_limit else ''}{'stop_price' if needs_stop else ''}".strip())
        return self


class CancelOrder(Payload):
    """Command from the OMS to a venue: cancel what is left of an order."""

    FAMILY = "venue"
    PRODUCERS = ("oms",)
    ROUTING = ("venue", "symbol")
    KIND = "command"

    venue: str
    client_order_id: str
    symbol: Symbol
    reason: str = Field(default="", max_length=200)


class _VenueAnswer(Payload):
    """What a venue says about one of our orders."""

    ROUTING = ("venue", "symbol")

    venue: str
    client_order_id: str
    symbol: Symbol


class _VenueEnded(_VenueAnswer):
    """The venue ended the order; ``filled_quantity`` is what had executed by then (the OMS books those fills
    before it takes the terminal state)."""

    reason_code: str
    filled_quantity: NonNegativeDecimal = Field(default=0, description="what had executed before the end")
    ts: AwareDatetime


class OrderAccepted(_VenueAnswer):
    """The venue has the order (resting, or about to match)."""

    FAMILY = "venue"
    PRODUCERS = ("matching",)

    ts: AwareDatetime


class OrderCanceled(_VenueEnded):
    """The venue cancelled what was left of an order (on request, by time in force, or by its OCO partner)."""

    FAMILY = "venue"
    PRODUCERS = ("matching",)


class OrderExpired(_VenueEnded):
    """What was left expired (an unfillable market / IOC remainder, an FOK that could not fill)."""

    FAMILY = "venue"
    PRODUCERS = ("matching",)

    reason_code: str = "EXPIRED"


class OrderRejected(_VenueAnswer):
    """The venue refused an order."""

    FAMILY = "venue"
    PRODUCERS = ("matching",)

    reason_code: str
    detail: str = ""


class OrderUpdated(Payload):
    """The OMS's view of an order after a state change (the order's history is the stream of these)."""

    FAMILY = "orders"
    PRODUCERS = ("oms",)
    ROUTING = ("exchange", "symbol")

    client_order_id: str
    decision_id: UUID | None = Field(default=None, description="None for protective and liquidation orders")
    mode: TradingMode
    exchange: Exchange
    symbol: Symbol
    side: Side
    order_type: OrderType
    purpose: str = "ENTRY"
    quantity: PositiveDecimal
    status: OrderStatus
    previous_status: OrderStatus | None
    filled_quantity: NonNegativeDecimal = Field(default=0)
    average_price: NonNegativeDecimal | None = None
    fees: NonNegativeDecimal = Field(default=0)
    fee_currency: str | None = None
    quote_spent: NonNegativeDecimal = Field(default=0, description="gross quote notional of all fills")
    reason_code: str | None = None
