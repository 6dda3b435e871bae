"""Market-data family: candles as they close, their corrections, order-book snapshots, source switches."""

from __future__ import annotations

from pydantic import AwareDatetime, Field, model_validator

from quorum.events.base import Frozen, Payload, SeriesPoint
from quorum.types import Exchange, NonNegativeDecimal, PositiveDecimal, Symbol


class _Ohlcv(SeriesPoint):
    """The values of one candle, consistent by construction (shared by closes and corrections)."""

    ROUTING = ("exchange", "symbol", "timeframe")

    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal

    @model_validator(mode="after")
    def _consistent(self) -> _Ohlcv:
        if self.high < self.low:
            raise ValueError("high < low")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError("open/close outside [low, high]")
        return self


class CandleClosed(_Ohlcv):
    """A candle that has closed; ``ts`` is its open time (exchange convention)."""

    FAMILY = "md"
    PRODUCERS = ("market_data",)


class CandleCorrected(_Ohlcv):
    """The exchange revised a candle that was already published: the new values, and the ones replaced.
    Published instead of silently overwriting, so consumers can decide what to recompute."""

    FAMILY = "md"
    PRODUCERS = ("market_data",)

    previous: CandleClosed


class BookLevel(Frozen):
    price: PositiveDecimal
    quantity: PositiveDecimal


class OrderBookSnapshotted(Payload):
    """Top-N levels of a venue's order book at ``ts`` (best first on both sides)."""

    FAMILY = "md"
    PRODUCERS = ("market_data",)
    ROUTING = ("exchange", "symbol")

    exchange: Exchange
    symbol: Symbol
    ts: AwareDatetime
    depth: int = Field(ge=1, le=1000)
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]

    @model_validator(mode="after")
    def _sorted(self) -> OrderBookSnapshotted:
        if any(a.price >= b.price for a, b in zip(self.bids[1:], self.bids, strict=False)):  # (next, previous)
            raise ValueError("bids must be strictly descending")
        if any(a.price <= b.price for a, b in zip(self.asks[1:], self.asks, strict=False)):
            raise ValueError("asks must be strictly ascending")
        if self.bids and self.asks and self.bids[0].price >= self.asks[0].price:
            raise ValueError("crossed book: best bid >= best ask")
        return self


class DataSourceSwitched(Payload):
    """A symbol's feed moved to another source (persistent failure, or back to the recovered primary)."""

    FAMILY = "md"
    PRODUCERS = ("market_data",)
    ROUTING = ("symbol",)

    symbol: Symbol
    from_source: str
    to_source: str
    reason: str
