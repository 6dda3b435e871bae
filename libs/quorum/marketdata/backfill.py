"""REST backfill: page an exchange's OHLCV history into ``candles``, resumably.

History goes to the database only: a backfill publishes nothing. Years of old candles on the bus would make
every consumer recompute the past (and the live pipeline reads history from the database anyway). Revised
candles are recorded in ``candle_corrections`` and returned in the report; publishing ``CandleCorrected`` is
the caller's decision (``keys.correction_key`` gives the id it must use).

Every row is validated with ``CandleValidator``'s rules (``bulk.accepted_frame``). Each page is one transaction
(``store``): COPY into a temporary staging table, one set-based merge into ``candles``, the corrections, and the
checkpoint. A crash between pages therefore resumes exactly after the last committed page, and re-running a
finished range inserts nothing. Event ids are the replay's (``keys.candle_key``), so a candle has one id
whichever path stored it first. Finding and repairing holes is ``gaps``; retries are ``backoff``.

I/O goes through an injected ccxt async exchange and an SQLAlchemy ``AsyncEngine``; time through a ``Clock``
(and waits through an injected ``sleep``), so tests drive every path deterministically.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ccxt.async_support as ccxt
import polars as pl
from sqlalchemy.ext.asyncio import AsyncEngine

from quorum.clock import Clock
from quorum.events.market_data import CandleCorrected
from quorum.marketdata.backoff import Backoff, Sleep
from quorum.marketdata.bulk import accepted_frame, rows_frame
from quorum.marketdata.store import load_checkpoint, save_checkpoint, write_candles
from quorum.marketdata.validation import CandleValidator, Rejections, SeriesId
from quorum.times import candle_close, ceil_open, floor_open, from_ms, last_closed_open, timeframe_step, to_ms

log = logging.getLogger("quorum.market_data.backfill")


# ---- reports and progress ------------------------------------------------------------------------------------

@dataclass
class SeriesReport:
    exchange: str
    symbol: str
    timeframe: str
    resumed_from: datetime | None = None
    fetched: int = 0
    inserted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    corrections: list[CandleCorrected] = field(default_factory=list)
    pages: int = 0
    retries: int = 0
    completed: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe}"

    @property
    def corrected(self) -> int:
        return len(self.corrections)


@dataclass
class BackfillReport:
    series: list[SeriesReport] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.series)

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.series)

    @property
    def rejected(self) -> Counter[str]:
        return sum((s.rejected for s in self.series), Counter())

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.series)

    def get(self, symbol: str, timeframe: str) -> SeriesReport:
        return next(s for s in self.series if (s.symbol, s.timeframe) == (symbol, timeframe))


@dataclass(frozen=True)
class Progress:
    series: str
    pages: int
    rows_written: int
    rows_per_s: float | None  # None until some time has passed
    eta_s: float | None  # an upper bound: the exchange may have fewer candles than the calendar
    next_since: datetime


def format_progress(p: Progress) -> str:
    """One terminal line, e.g. ``binance BTC/USDT 1m  page 12  12,000 rows  4,321 rows/s  ETA 0:03:05``."""
    rate = "-" if p.rows_per_s is None else f"{p.rows_per_s:,.0f}"
    eta = "-" if p.eta_s is None else str(timedelta(seconds=round(p.eta_s)))
    return (f"{p.series}  page {p.pages}  {p.rows_written:,} rows  {rate} rows/s  ETA {eta}  "
            f"next {p.next_since:%Y-%m-%d %H:%M}")


# ---- fetching ------------------------------------------------------------------------------------------------

@dataclass
class Page:
    candles: pl.DataFrame  # accepted, COPY-ready
    fetched: int  # rows inside the requested window (accepted or rejected)
    next_since: datetime  # where the next page starts
    exhausted: bool  # the exchange has nothing after this page (yet)


async def fetch_page(exchange: Any, backoff: Backoff, report: SeriesReport, validator: CandleValidator, *,
                     since: datetime, last: datetime, limit: int, now: datetime) -> Page:
    """One ``fetch_ohlcv`` page, cut to [since, last] and validated; rows outside the window are not counted.
    (The gap repair reads its pages through here too.)"""
    s = validator.series
    rows = await backoff.call(exchange, lambda: exchange.fetch_ohlcv(s.symbol, s.timeframe, since=to_ms(since),
                                                                      limit=limit), report)
    since_ms, last_ms = to_ms(since), to_ms(last)
    stamps = [r[0] for r in rows if isinstance(r[0], int)]
    window = [r for r in rows if not isinstance(r[0], int) or since_ms <= r[0] <= last_ms]
    candles = accepted_frame(rows_frame(window), validator, now=now)
    newest = max(stamps, default=None)  # rows past ``last`` are not stored, so never resume beyond it
    next_since = since if newest is None else max(since, candle_close(from_ms(min(newest, last_ms)), s.timeframe))
    return Page(candles, len(window), next_since, exhausted=len(rows) < limit or next_since == since)


# ---- backfill ------------------------------------------------------------------------------------------------

async def backfill(
    exchange: Any,
    engine: AsyncEngine,
    *,
    exchange_id: str,
    series: Sequence[tuple[str, str]],
    since: datetime,
    until: datetime | None,
    clock: Clock,
    page_limit: int = 1000,
    progress: Callable[[Progress], None] | None = None,
    max_retries: int = 8,
    sleep: Sleep = asyncio.sleep,
    seed: int = 0,
    resume: bool = True,
) -> BackfillReport:
    """Fetch ``(symbol, timeframe)`` series from ``since`` (or where a previous run stopped) up to ``until``
    (open time, inclusive; default and ceiling: the last candle closed by ``clock``) into ``candles``.

    Transient exchange errors are retried (``max_retries`` per request); a symbol the exchange does not list is
    reported in its series' ``error`` and the others go on; anything else propagates, after the pages already
    committed, so a re-run resumes. ``resume=False`` re-fetches from ``since`` regardless of checkpoints (to
    pick up late corrections; stored candles are never duplicated).
    """
    report = BackfillReport()
    backoff = Backoff(clock, sleep, max_retries, rng=random.Random(seed))
    await backoff.call(exchange, exchange.load_markets, SeriesReport(exchange_id, "*", "*"))
    for symbol, timeframe in series:
        sr = SeriesReport(exchange_id, symbol, timeframe)
        report.series.append(sr)
        try:
            await _backfill_series(exchange, engine, backoff, sr, since=since, until=until, clock=clock,
                                   page_limit=page_limit, progress=progress, resume=resume)
        except ccxt.BadSymbol as exc:
            sr.error = f"not listed: {exc}"
            log.warning("%s: skipped, %s", sr.label, sr.error)
    return report


async def _backfill_series(exchange: Any, engine: AsyncEngine, backoff: Backoff, sr: SeriesReport, *,
                           since: datetime, until: datetime | None, clock: Clock, page_limit: int,
                           progress: Callable[[Progress], None] | None, resume: bool) -> None:
    s = SeriesId(sr.exchange, sr.symbol, sr.timeframe)
    step = timeframe_step(s.timeframe)
    now = clock.now()
    last = last_closed_open(now, s.timeframe)
    if until is not None:
        last = min(last, floor_open(until, s.timeframe))
    async with engine.connect() as conn:
        cp = await load_checkpoint(conn, s)
    cursor = ceil_open(since, s.timeframe)
    written, rejected_before = (cp.rows_written, cp.rows_rejected) if cp else (0, 0)
    if resume and cp is not None and cp.next_since > cursor:
        cursor = sr.resumed_from = cp.next_since
    validator = CandleValidator(s, Rejections())
    started, start_cursor = clock.now(), cursor
    log.info("%s: backfilling %s -> %s", sr.label, cursor, last)
    while cursor <= last:
        page = await fetch_page(exchange, backoff, sr, validator, since=cursor, last=last, limit=page_limit,
                                now=now)
        done = page.exhausted or page.next_since > last
        async with engine.begin() as conn:
            result = await write_candles(conn, page.candles, clock=clock)
            await save_checkpoint(conn, s, next_since=page.next_since, written=written + result.inserted,
                                  rejected=rejected_before + validator.rejections.total, completed=done)
        written += result.inserted
        sr.pages += 1
        sr.fetched += page.fetched
        sr.inserted += result.inserted
        sr.corrections.extend(result.corrections)
        sr.rejected = Counter(validator.rejections.counts)
        cursor = page.next_since
        if progress is not None:
            progress(_progress(sr, clock, started, start_cursor, cursor, last, step))
        if done:
            break
    sr.completed = True
    if sr.pages == 0:  # nothing left to fetch: still record that the series is complete up to here
        async with engine.begin() as conn:
            await save_checkpoint(conn, s, next_since=cursor, written=written, rejected=rejected_before,
                                  completed=True)
    log.info("%s: %d fetched, %d inserted, %d rejected %s, %d corrected, %d pages, %d retries", sr.label,
             sr.fetched, sr.inserted, sum(sr.rejected.values()), dict(sr.rejected), sr.corrected, sr.pages,
             sr.retries)


def _progress(sr: SeriesReport, clock: Clock, started: datetime, start: datetime, cursor: datetime,
              last: datetime, step: timedelta) -> Progress:
    elapsed = (clock.now() - started).total_seconds()
    rate = sr.fetched / elapsed if elapsed > 0 else None
    remaining = max(0, (last - cursor) // step + 1)
    eta = remaining / rate if rate else None
    return Progress(sr.label, sr.pages, sr.inserted, rate, eta, cursor)

