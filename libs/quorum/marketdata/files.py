"""OHLCV files in the ``shared/data/ohlcv`` format (``ts,open,high,low,close,volume``; ts = open time in UTC
epoch milliseconds), as CSV or Parquet. Prices are read as text so every digit survives into Decimal."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl
from pydantic import ValidationError

from quorum.events.market_data import CandleClosed
from quorum.types import timeframe_seconds

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_NAME = re.compile(
    r"^(?P<exchange>[a-z0-9]+)_(?P<base>[A-Z0-9]+?)(?P<quote>USDT|USDC|USD|BTC|ETH|EUR)_(?P<tf>\d+[mhdw])$"
)


class OhlcvFileError(ValueError):
    """The file cannot be used at all (missing, wrong columns); single bad rows are rejected, not fatal."""


@dataclass(frozen=True)
class SeriesId:
    exchange: str
    symbol: str
    timeframe: str


def infer_series(path: Path) -> SeriesId | None:
    """``binance_BTCUSDT_1h.csv`` -> (binance, BTC/USDT, 1h); None when the name does not say."""
    m = _NAME.match(path.stem)
    if not m:
        return None
    return SeriesId(m["exchange"], f"{m['base']}/{m['quote']}", m["tf"])


def read_rows(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise OhlcvFileError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            df = pl.read_parquet(path).cast({c: pl.String for c in COLUMNS if c != "ts"}, strict=False)
        else:
            df = pl.read_csv(path, schema_overrides={c: pl.String for c in COLUMNS}, infer_schema=False)
    except Exception as exc:  # noqa: BLE001 - polars raises many types for malformed files
        raise OhlcvFileError(f"{path}: unreadable: {exc}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise OhlcvFileError(f"{path}: missing columns {missing}; expected header {','.join(COLUMNS)}")
    return df.select(COLUMNS).cast({"ts": pl.String})


@dataclass
class Rejections:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def candles(
    df: pl.DataFrame, series: SeriesId, *, now: datetime, rejections: Rejections, after: datetime | None = None
) -> Iterator[CandleClosed]:
    """Validated candles in file order. Bad rows are counted by reason and skipped; they never stop the
    stream. Only candles that have closed by ``now`` are produced (a forming candle is not a fact yet)."""
    step = timedelta(seconds=timeframe_seconds(series.timeframe))
    last: datetime | None = after
    for ts_raw, o, h, lo, c, v in df.iter_rows():
        try:
            ts = datetime.fromtimestamp(int(ts_raw) / 1000, UTC)
        except (TypeError, ValueError, OverflowError):
            rejections.add("bad_timestamp")
            continue
        if after is not None and ts <= after:
            continue  # already published before a restart
        if last is not None and ts <= last:
            rejections.add("non_monotonic_time")
            continue
        if ts + step > now:
            rejections.add("not_closed_or_future")
            continue
        try:
            values = [Decimal(x) for x in (o, h, lo, c, v)]
        except (InvalidOperation, TypeError):
            rejections.add("not_a_number")
            continue
        if any(not x.is_finite() for x in values):
            rejections.add("not_finite")
            continue
        try:
            candle = CandleClosed(exchange=series.exchange, symbol=series.symbol, timeframe=series.timeframe, ts=ts,
                                  open=values[0], high=values[1], low=values[2], close=values[3], volume=values[4])
        except ValidationError as exc:
            rejections.add(_reason(exc))
            continue
        last = ts
        yield candle


def _reason(exc: ValidationError) -> str:
    text = str(exc)
    if "high < low" in text:
        return "high_below_low"
    if "outside [low, high]" in text:
        return "open_close_outside_range"
    if "must be > 0" in text or "must be >= 0" in text:
        return "negative_or_zero"
    return "invalid"
