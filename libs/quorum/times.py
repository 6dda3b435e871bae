"""Candle time, in one place: epoch milliseconds (how exchanges and OHLCV files stamp candles) and the
timeframe grid (which candle a moment falls in, when it closes, which one closed last).

A candle is named by its open time; it closes one timeframe later. Integer arithmetic throughout: a float
``datetime.timestamp() * 1000`` can be a millisecond off and drifts far from the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quorum.types import timeframe_seconds

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # exchanges open weekly candles on Mondays, not on the epoch's Thursday
_MS = timedelta(milliseconds=1)


def to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (floored, so sub-millisecond parts never round up)."""
    return (dt - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds; ``ValueError`` when no datetime has it (years 1..9999 only)."""
    try:
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise ValueError(f"{ms} ms since the epoch is out of datetime's range") from None


def timeframe_step(timeframe: str) -> timedelta:
    """How long one candle of ``timeframe`` lasts: ``'5m'`` -> 5 minutes."""
    return timedelta(seconds=timeframe_seconds(timeframe))


def floor_open(ts: datetime, timeframe: str) -> datetime:
    """The open time of the candle containing ``ts``."""
    origin = _MONDAY if timeframe.endswith("w") else EPOCH
    step = timeframe_step(timeframe)
    return origin + (ts - origin) // step * step


def ceil_open(ts: datetime, timeframe: str) -> datetime:
    """The first open time at or after ``ts``."""
    start = floor_open(ts, timeframe)
    return start if start == ts else start + timeframe_step(timeframe)


def candle_close(ts: datetime, timeframe: str) -> datetime:
    """When the candle opening at ``ts`` closes (its event time)."""
    return ts + timeframe_step(timeframe)


def last_closed_open(now: datetime, timeframe: str) -> datetime:
    """Open time of the newest candle that has closed by ``now``."""
    return floor_open(now, timeframe) - timeframe_step(timeframe)
