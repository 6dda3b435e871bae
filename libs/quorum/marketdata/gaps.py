"""Gaps in stored candles: found in SQL against the expected calendar, repaired from the exchange's REST API.

What the exchange returns inside a gap is stored (not published: downstream state is rebuilt from the
database); what it does not have either (a real outage) is reported as unrepairable.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quorum.clock import Clock
from quorum.marketdata.backfill import SeriesReport, fetch_page
from quorum.marketdata.backoff import Backoff, Sleep
from quorum.marketdata.store import write_candles
from quorum.marketdata.validation import CandleValidator, Rejections, SeriesId
from quorum.times import ceil_open, floor_open, last_closed_open, timeframe_step

log = logging.getLogger("quorum.market_data.backfill")

_GAPS = text("""
    WITH missing AS (
        SELECT g AS ts FROM generate_series(CAST(:start AS timestamptz), CAST(:end AS timestamptz),
                                            CAST(:step AS interval)) AS g
        WHERE NOT EXISTS (SELECT 1 FROM candles c WHERE c.exchange = :exchange AND c.symbol = :symbol
                                                    AND c.timeframe = :timeframe AND c.ts = g)
    ), islands AS (
        SELECT ts, ts - CAST(:step AS interval) * row_number() OVER (ORDER BY ts) AS island FROM missing
    )
    SELECT min(ts) AS first, max(ts) AS last FROM islands GROUP BY island ORDER BY first
""")


async def find_gaps(conn: AsyncConnection, exchange: str, symbol: str, timeframe: str, start: datetime,
                    end: datetime) -> list[tuple[datetime, datetime]]:
    """Missing candles between ``start`` and ``end`` (open times, inclusive), as ``(first, last)`` open times
    of each run of consecutive missing candles; computed in SQL against the expected calendar."""
    first, last = ceil_open(start, timeframe), floor_open(end, timeframe)
    if first > last:
        return []
    rows = await conn.execute(_GAPS, {"start": first, "end": last, "step": timeframe_step(timeframe),
                                      "exchange": exchange, "symbol": symbol, "timeframe": timeframe})
    return [(r.first, r.last) for r in rows]


@dataclass
class SeriesRepair:
    exchange: str
    symbol: str
    timeframe: str
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    repaired: list[tuple[datetime, datetime]] = field(default_factory=list)  # (first, last) now stored
    unrepairable: list[tuple[datetime, datetime]] = field(default_factory=list)  # the exchange has none either
    inserted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    retries: int = 0


@dataclass
class RepairReport:
    series: list[SeriesRepair] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.series)

    def get(self, symbol: str, timeframe: str) -> SeriesRepair:
        return next(s for s in self.series if (s.symbol, s.timeframe) == (symbol, timeframe))


async def repair_gaps(
    exchange: Any,
    engine: AsyncEngine,
    *,
    exchange_id: str,
    series: Sequence[tuple[str, str]],
    start: datetime,
    end: datetime | None,
    clock: Clock,
    page_limit: int = 1000,
    max_retries: int = 8,
    sleep: Sleep = asyncio.sleep,
    seed: int = 0,
) -> RepairReport:
    """Re-fetch every gap between ``start`` and ``end`` (default: the last closed candle) from REST.

    What the exchange returns inside a gap is stored; what it does not have (real outages) is reported as
    unrepairable. Each gap costs at most ``ceil(length / page_limit)`` requests, so it always terminates.
    """
    report = RepairReport()
    backoff = Backoff(clock, sleep, max_retries, rng=random.Random(seed))
    now = clock.now()
    for symbol, timeframe in series:
        rep = SeriesRepair(exchange_id, symbol, timeframe)
        report.series.append(rep)
        sr = SeriesReport(exchange_id, symbol, timeframe)  # collects fetch statistics
        step = timeframe_step(timeframe)
        last = last_closed_open(now, timeframe) if end is None else min(end, last_closed_open(now, timeframe))
        async with engine.connect() as conn:
            rep.gaps = await find_gaps(conn, exchange_id, symbol, timeframe, start, last)
        for first, gap_last in rep.gaps:
            validator = CandleValidator(SeriesId(exchange_id, symbol, timeframe), Rejections())
            cursor = first
            while cursor <= gap_last:
                wanted = (gap_last - cursor) // step + 1
                page = await fetch_page(exchange, backoff, sr, validator, since=cursor, last=gap_last,
                                        limit=min(page_limit, wanted), now=now)
                async with engine.begin() as conn:
                    rep.inserted += (await write_candles(conn, page.candles, clock=clock)).inserted
                if page.exhausted or page.fetched == 0:
                    break
                cursor = page.next_since
            rep.rejected += validator.rejections.counts
            async with engine.connect() as conn:
                still = await find_gaps(conn, exchange_id, symbol, timeframe, first, gap_last)
            rep.unrepairable += still
            rep.repaired += _complement((first, gap_last), still, step)
        rep.retries = sr.retries
        if rep.unrepairable:
            log.info("%s %s %s: the exchange has no candles for %s", exchange_id, symbol, timeframe,
                     ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%H:%M}" for a, b in rep.unrepairable))
    return report


def _complement(span: tuple[datetime, datetime], holes: list[tuple[datetime, datetime]],
                step: timedelta) -> list[tuple[datetime, datetime]]:
    """The runs of ``span`` not covered by ``holes`` (sorted, inside ``span``)."""
    out, cursor = [], span[0]
    for a, b in holes:
        if a > cursor:
            out.append((cursor, a - step))
        cursor = b + step
    if cursor <= span[1]:
        out.append((cursor, span[1]))
    return out

