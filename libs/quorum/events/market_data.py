"""Market-data family: candles as they close."""

from __future__ import annotations

from pydantic import model_validator

from quorum.events.base import SeriesPoint
from quorum.types import NonNegativeDecimal, PositiveDecimal


class CandleClosed(SeriesPoint):
    """A candle that has closed; ``ts`` is its open time (exchange convention)."""

    FAMILY = "md"
    ROUTING = ("exchange", "symbol", "timeframe")

    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal

    @model_validator(mode="after")
    def _consistent(self) -> CandleClosed:
        if self.high < self.low:
            raise ValueError("high < low")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError("open/close outside [low, high]")
        return self
