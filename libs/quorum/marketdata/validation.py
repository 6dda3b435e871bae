"""Candle validation shared by every source (file replay, REST backfill, live feeds).

A bad record is rejected with a reason and counted; it never raises and never stops the stream.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from quorum.events.market_data import CandleClosed
from quorum.times import from_ms, timeframe_step

PRICES = ("open", "high", "low", "close", "volume")  # a candle's values, in OHLCV row order


@dataclass(frozen=True)
class SeriesId:
    exchange: str
    symbol: str
    timeframe: str


@dataclass
class Rejections:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def to_decimal(x: object) -> Decimal:
    """Exact for text; floats (ccxt's OHLCV) go through their shortest repr, i.e. the exchange's digits."""
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(str(x)) if not isinstance(x, Decimal) else x


@dataclass
class CandleValidator:
    """Checks one series' records in arrival order. ``last`` is the newest accepted open time."""

    series: SeriesId
    rejections: Rejections = field(default_factory=Rejections)
    last: datetime | None = None

    @property
    def step(self) -> timedelta:
        return timeframe_step(self.series.timeframe)

    def check(self, ts_ms: object, o: object, h: object, lo: object, c: object, v: object, *,
              now: datetime) -> CandleClosed | None:
        """The candle, or None after recording why it was rejected. ``now`` decides what has closed."""
        try:
            ts = from_ms(int(str(ts_ms)))
        except (TypeError, ValueError):
            return self._reject("bad_timestamp")
        if self.last is not None and ts <= self.last:
            return self._reject("non_monotonic_time")
        if ts + self.step > now:
            return self._reject("not_closed_or_future")
        try:
            values = [to_decimal(x) for x in (o, h, lo, c, v)]
        except (InvalidOperation, TypeError, ValueError):
            return self._reject("not_a_number")
        if any(not x.is_finite() for x in values):
            return self._reject("not_finite")
        s = self.series
        try:
            candle = CandleClosed(exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe, ts=ts,
                                  open=values[0], high=values[1], low=values[2], close=values[3], volume=values[4])
        except ValidationError as exc:
            return self._reject(_reason(exc))
        self.last = ts
        return candle

    def _reject(self, reason: str) -> None:
        self.rejections.add(reason)
        return None


def _reason(exc: ValidationError) -> str:
    text = str(exc)
    if "high < low" in text:
        return "high_below_low"
    if "outside [low, high]" in text:
        return "open_close_outside_range"
    if "must be > 0" in text or "must be >= 0" in text:
        return "negative_or_zero"
    return "invalid"
