"""Feature family: indicator vectors computed from closed candles."""

from __future__ import annotations

from pydantic import AwareDatetime

from quorum.events.base import Payload
from quorum.types import Exchange, PositiveDecimal, Symbol, Timeframe


class FeaturesComputed(Payload):
    """Indicator values at candle ``ts``; ``None`` marks a value still in its warm-up."""

    FAMILY = "features"
    ROUTING = ("exchange", "symbol", "timeframe")

    exchange: Exchange
    symbol: Symbol
    timeframe: Timeframe
    ts: AwareDatetime
    feature_set: str
    close: PositiveDecimal
    values: dict[str, float | None]
