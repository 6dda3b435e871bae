"""Candles for a backtest or a replay: from files in the shared data format (several files: several series merged in
time order) or from the ``candles`` table, with the same filters (open times inclusive, symbols, timeframe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.db.tables import candles as candles_table
from quorum.events.market_data import CandleClosed
from quorum.marketdata.files import OhlcvFileError, candles, infer_series, read_rows
from quorum.marketdata.validation import Rejections
from quorum.times import to_ms


class DataError(ValueError):
    """The candles asked for cannot be had; the message says which input was wrong, in one line."""


@dataclass(frozen=True)
class Loaded:
    candles: list[CandleClosed]
    rejected: int = 0  # rows the validation skipped


def market_order(found: list[CandleClosed]) -> list[CandleClosed]:
    """By open time, then series: the order the stored candles are replayed in."""
    return sorted(found, key=lambda c: (c.ts, c.exchange, c.symbol, c.timeframe))


def from_files(paths: Sequence[Path], *, now: datetime, start: datetime | None = None, end: datetime | None = None,
               symbols: Sequence[str] = (), timeframe: str | None = None) -> Loaded:
    """Validated candles closed by ``now`` from every file, merged in market order. The series (exchange, symbol,
    timeframe) comes from each file's name, e.g. ``binance_BTCUSDT_1h.csv``."""
    found: list[CandleClosed] = []
    rejections = Rejections()
    for path in paths:
        series = infer_series(path)
        if series is None:
            raise DataError(f"{path}: the name does not say the series; expected e.g. binance_BTCUSDT_1h.csv")
        if (symbols and series.symbol not in symbols) or (timeframe and series.timeframe != timeframe):
            continue
        try:
            rows = read_rows(path)
        except OhlcvFileError as exc:
            raise DataError(str(exc)) from None
        if start is not None or end is not None:
            ts = pl.col("ts").cast(pl.Int64, strict=False)
            rows = rows.filter(ts.is_null() | ((ts >= (to_ms(start) if start else 0))
                                               & (ts <= (to_ms(end) if end is not None else 2**62))))
        found += candles(rows, series, now=now, rejections=rejections)
    return Loaded(market_order(found), rejections.total)


async def stored_candles(conn: AsyncConnection, *, start: datetime | None = None, end: datetime | None = None,
                         symbols: Sequence[str] = (), timeframe: str | None = None) -> list[CandleClosed]:
    """The ``candles`` rows in range, in market order."""
    q = select(candles_table)
    if start is not None:
        q = q.where(candles_table.c.ts >= start)
    if end is not None:
        q = q.where(candles_table.c.ts <= end)
    if symbols:
        q = q.where(candles_table.c.symbol.in_(symbols))
    if timeframe:
        q = q.where(candles_table.c.timeframe == timeframe)
    c = candles_table.c
    rows = (await conn.execute(q.order_by(c.ts, c.exchange, c.symbol, c.timeframe))).all()
    return [CandleClosed(exchange=r.exchange, symbol=r.symbol, timeframe=r.timeframe, ts=r.ts, open=r.open,
                         high=r.high, low=r.low, close=r.close, volume=r.volume) for r in rows]


async def from_database(url: str, *, start: datetime | None = None, end: datetime | None = None,
                        symbols: Sequence[str] = (), timeframe: str | None = None) -> Loaded:
    """``stored_candles`` over a connection of its own."""
    from quorum.db.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return Loaded(await stored_candles(conn, start=start, end=end, symbols=symbols, timeframe=timeframe))
    finally:
        await engine.dispose()


def timeframe_of(found: Sequence[CandleClosed]) -> str:
    """The one timeframe of the candles: the metrics count bars of it."""
    timeframes = sorted({c.timeframe for c in found})
    if len(timeframes) != 1:
        raise DataError(f"the candles have several timeframes ({', '.join(timeframes)}): choose one with --timeframe")
    return timeframes[0]
