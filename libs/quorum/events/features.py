"""Feature family: indicator vectors computed from closed candles."""

from __future__ import annotations

from quorum.events.base import SeriesPoint
from quorum.types import PositiveDecimal


class FeaturesComputed(SeriesPoint):
    """Indicator values at candle ``ts``; ``None`` marks a value still in its warm-up."""

    FAMILY = "features"
    PRODUCERS = ("features",)
    ROUTING = ("exchange", "symbol", "timeframe")

    feature_set: str
    close: PositiveDecimal
    values: dict[str, float | None]
