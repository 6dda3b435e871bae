"""The console's read models: what one chart shows (a symbol's candles with its fills and the open position's
entry, stop and target) and which markets have candles to chart. Reads only."""

from __future__ import annotations

from datetime import timedelta

from quorum.db.tables import candles, fills, orders, positions
from quorum.types import TERMINAL_STATUSES
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schemas import CandleOut, ChartFillOut, ChartOut, LevelOut, MarketOut

RECENT = timedelta(days=30)  # markets that had a candle within this of the newest one
PROTECTIVE_PRICE = {"STOP_LOSS": orders.c.stop_price, "TAKE_PROFIT": orders.c.limit_price}


async def markets(conn: AsyncConnection) -> list[MarketOut]:
    """Symbol and timeframe pairs with recent candles (through the time index, not a scan of every candle)."""
    newest = (await conn.execute(select(func.max(candles.c.ts)))).scalar_one()
    if newest is None:
        return []
    c = candles.c
    rows = (await conn.execute(select(c.symbol, c.timeframe, func.max(c.ts).label("last_ts"))
                               .where(c.ts >= newest - RECENT).group_by(c.symbol, c.timeframe)
                               .order_by(c.symbol, c.timeframe))).all()
    return [MarketOut.model_validate(r, from_attributes=True) for r in rows]


async def chart(conn: AsyncConnection, mode: str, symbol: str, timeframe: str, limit: int) -> ChartOut:
    c = candles.c
    bars = (await conn.execute(select(c.ts, c.open, c.high, c.low, c.close)
                               .where(c.symbol == symbol, c.timeframe == timeframe)
                               .order_by(c.ts.desc()).limit(limit))).all()[::-1]
    out = ChartOut(symbol=symbol, timeframe=timeframe,
                   candles=[CandleOut.model_validate(b, from_attributes=True) for b in bars])
    if not bars:
        return out
    f = fills.c
    out.fills = [ChartFillOut.model_validate(r, from_attributes=True) for r in (await conn.execute(
        select(f.ts, f.side, f.quantity, f.price).where(f.symbol == symbol, f.mode == mode, f.ts >= bars[0].ts)
        .order_by(f.ts))).all()]
    held = (await conn.execute(select(positions.c.quantity, positions.c.avg_cost).where(
        positions.c.mode == mode, positions.c.symbol == symbol))).first()
    if held is not None and held.quantity != 0:
        out.levels.append(LevelOut(kind="ENTRY", price=held.avg_cost))
    o = orders.c
    finished = [s.value for s in TERMINAL_STATUSES]
    for kind, price in PROTECTIVE_PRICE.items():
        rows = (await conn.execute(select(o.client_order_id, price.label("price")).where(
            o.symbol == symbol, o.mode == mode, o.purpose == kind, o.status.notin_(finished),
            price.is_not(None)))).all()
        out.levels += [LevelOut(kind=kind, price=r.price, client_order_id=r.client_order_id) for r in rows]
    return out
