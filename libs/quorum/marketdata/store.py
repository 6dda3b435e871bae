"""Storing REST pages of candles: COPY into a staging table, one set-based merge into ``candles``, revisions
recorded as corrections, and the per-series backfill checkpoint, all in the caller's transaction."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.clock import Clock
from quorum.db.tables import backfill_checkpoints, candle_corrections
from quorum.db.tables import candles as candles_t
from quorum.events.base import new_envelope
from quorum.events.market_data import CandleClosed, CandleCorrected
from quorum.marketdata.keys import correction_key
from quorum.marketdata.validation import PRICES, SeriesId

SOURCE = "market_data"  # the service that owns ``candles``; ids and envelopes name it as their source
COLUMNS = tuple(candles_t.c.keys())  # exchange, symbol, timeframe, ts, open, high, low, close, volume, event_id


@dataclass
class PageWrite:
    inserted: int
    corrections: list[CandleCorrected]


_MERGE = text(f"""
    INSERT INTO candles ({", ".join(COLUMNS)}) SELECT {", ".join(COLUMNS)} FROM candles_staging
    ON CONFLICT DO NOTHING
""")
_CHANGED = " OR ".join(f"c.{p} IS DISTINCT FROM s.{p}" for p in PRICES)  # numerically: 58184 = 58184.0
_SAME_KEY = "c.exchange = s.exchange AND c.symbol = s.symbol AND c.timeframe = s.timeframe AND c.ts = s.ts"
# One primary-key lookup per staged row (OFFSET 0 keeps the planner from turning it into a hash join that reads
# all of ``candles``: the staging table has no statistics).
_REVISED = text(f"""
    SELECT s.exchange, s.symbol, s.timeframe, s.ts, {", ".join(f"c.{p} AS prev_{p}, s.{p}" for p in PRICES)}
    FROM candles_staging s CROSS JOIN LATERAL (SELECT * FROM candles c WHERE {_SAME_KEY} OFFSET 0) c
    WHERE {_CHANGED} ORDER BY s.ts
""")
_APPLY_REVISIONS = text(f"""
    UPDATE candles c SET {", ".join(f"{p} = s.{p}" for p in PRICES)} FROM candles_staging s
    WHERE c.ts = ANY(CAST(:ts AS timestamptz[])) AND s.ts = ANY(CAST(:ts AS timestamptz[])) AND {_SAME_KEY}
""")


async def write_candles(conn: AsyncConnection, frame: pl.DataFrame, *, clock: Clock) -> PageWrite:
    """COPY accepted candles (``accepted_frame``) into a staging table and merge them into ``candles``, in the
    caller's transaction.

    New candles are inserted; identical ones are skipped; existing ones with different values are corrections:
    recorded (previous and corrected values) and applied. The COPY is CSV that polars writes in one call:
    binary COPY of Python records spends its time encoding Decimals one by one (see bench/backfill_ingest.py).
    """
    await conn.execute(text("CREATE TEMP TABLE candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DROP"))
    if frame.is_empty():
        return PageWrite(0, [])
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None and driver.is_in_transaction(), "COPY must run inside the caller's transaction"
    csv = frame.select(COLUMNS).write_csv(include_header=False).encode()
    await driver.copy_to_table("candles_staging", source=io.BytesIO(csv), columns=COLUMNS, format="csv")
    inserted = (await conn.execute(_MERGE)).rowcount
    corrections: list[CandleCorrected] = []
    if inserted < frame.height:  # some existed already: were any of them revised?
        corrections = [_correction(row) for row in (await conn.execute(_REVISED)).mappings()]
        if corrections:
            await conn.execute(_APPLY_REVISIONS, {"ts": sorted({c.ts for c in corrections})})
            await conn.execute(insert(candle_corrections), [
                {"exchange": c.exchange, "symbol": c.symbol, "timeframe": c.timeframe, "ts": c.ts,
                 "previous": _values_json(c.previous), "corrected": _values_json(c),
                 "event_id": new_envelope(c, clock=clock, source=SOURCE, key=correction_key(c)).event_id}
                for c in corrections
            ])
    return PageWrite(inserted, corrections)


def _correction(row: Any) -> CandleCorrected:
    series = {k: row[k] for k in ("exchange", "symbol", "timeframe", "ts")}
    previous = CandleClosed(**series, **{p: row[f"prev_{p}"] for p in PRICES})
    return CandleCorrected(**series, **{p: row[p] for p in PRICES}, previous=previous)


def _values_json(c: CandleClosed | CandleCorrected) -> dict[str, str]:
    return {p: str(getattr(c, p)) for p in PRICES}


# ---- checkpoints ---------------------------------------------------------------------------------------------

async def load_checkpoint(conn: AsyncConnection, s: SeriesId) -> Any:
    """The series' ``backfill_checkpoints`` row, or None before its first page."""
    return (await conn.execute(select(backfill_checkpoints).where(
        backfill_checkpoints.c.exchange == s.exchange, backfill_checkpoints.c.symbol == s.symbol,
        backfill_checkpoints.c.timeframe == s.timeframe))).first()


async def save_checkpoint(conn: AsyncConnection, s: SeriesId, *, next_since: datetime, written: int,
                          rejected: int, completed: bool) -> None:
    values = {"exchange": s.exchange, "symbol": s.symbol, "timeframe": s.timeframe, "next_since": next_since,
              "rows_written": written, "rows_rejected": rejected, "completed": completed,
              "updated_at": func.now()}
    stmt = insert(backfill_checkpoints).values(values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["exchange", "symbol", "timeframe"], set_=values))
