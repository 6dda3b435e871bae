"""OHLCV files in the ``shared/data/ohlcv`` format (``ts,open,high,low,close,volume``; ts = open time in UTC
epoch milliseconds), as CSV or Parquet. Prices are read as text so every digit survives into Decimal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from quorum.events.market_data import CandleClosed
from quorum.marketdata.validation import CandleValidator, Rejections, SeriesId
from quorum.times import to_ms

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_NAME = re.compile(
    r"^(?P<exchange>[a-z0-9]+)_(?P<base>[A-Z0-9]+?)(?P<quote>USDT|USDC|USD|BTC|ETH|EUR)_(?P<tf>\d+[mhdw])$"
)


class OhlcvFileError(ValueError):
    """The file cannot be used at all (missing, wrong columns); single bad rows are rejected, not fatal."""


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


def candles(
    df: pl.DataFrame, series: SeriesId, *, now: datetime, rejections: Rejections, after: datetime | None = None
) -> Iterator[CandleClosed]:
    """Validated candles in file order, skipping those at or before ``after`` (published before a restart).
    Bad rows are counted by reason and skipped; only candles closed by ``now`` are produced."""
    validator = CandleValidator(series, rejections, last=after)
    after_ms = None if after is None else to_ms(after)
    for ts_raw, o, h, lo, c, v in df.iter_rows():
        if after_ms is not None and ts_raw is not None and str(ts_raw).isdigit() and int(ts_raw) <= after_ms:
            continue
        candle = validator.check(ts_raw, o, h, lo, c, v, now=now)
        if candle is not None:
            yield candle
