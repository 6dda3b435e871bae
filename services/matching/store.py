"""The paper venue's book in PostgreSQL: per message, the slice of (exchange, symbol) it is about, under that
symbol's advisory lock — the engine (``matching_state``), the open orders with what their fills executed
(``paper_orders``, ``paper_fills``), the message's own order id, and for a sell the base its fills hold — and the
stored candles and snapshots a catch-up applies. Saved: the engine when the decision changed it, then the
decision's records in order.

The slice gives the answers the whole book would: outputs only ever concern the open orders of the engine's
symbol, and only a sell's balance check reads what is held (so it is read for a sell only, and never written:
it is what ``paper_fills`` add up to)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from quorum.db.tables import candles, matching_state, order_book_snapshots, paper_fills, paper_orders
from quorum.domain.position import held_after
from quorum.events.base import Envelope
from quorum.events.market_data import CandleClosed, OrderBookSnapshotted
from quorum.events.orders import CancelOrder, SubmitOrder
from quorum.matching import MatchingEngine
from quorum.matching.venue import (
    OPEN,
    FillRecorded,
    Key,
    MarketEvent,
    MarketWindow,
    OrderOpened,
    OrderStatusSet,
    StoredBook,
    StoredCandle,
    VenueBook,
    VenueOrder,
    VenueParams,
)
from quorum.outcome import Outcome
from quorum.times import from_ms, to_ms
from quorum.types import OrderStatus, Side, split_symbol, timeframe_seconds
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

OPEN_STATUSES = tuple(sorted(s.value for s in OPEN))
DAY = timedelta(days=1)  # candles are at most a day long: their close is within a day of their open


@dataclass(frozen=True)
class PostgresVenueStore:
    params: VenueParams

    async def load(self, conn: AsyncConnection, message: Envelope[Any]) -> VenueBook:
        p = message.payload
        finished: dict[str, str] = {}
        if isinstance(p, SubmitOrder | CancelOrder):
            row = (await conn.execute(select(paper_orders.c.exchange, paper_orders.c.status).where(
                paper_orders.c.client_order_id == p.client_order_id))).first()
            if isinstance(p, SubmitOrder):
                key = (p.exchange, p.symbol)
            elif row is None:
                return VenueBook()  # never reached this venue: nothing to cancel
            else:
                key = (row.exchange, p.symbol)
            if row is not None:
                finished[p.client_order_id] = row.exchange  # unless it is among the open orders loaded below
        elif isinstance(p, CandleClosed | OrderBookSnapshotted):
            key = (p.exchange, p.symbol)
        else:
            return VenueBook()
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"matching:{key[0]}:{key[1]}"})
        engine = await self._engine(conn, key)
        engines = {} if engine is None else {key: engine}
        commands = isinstance(p, SubmitOrder | CancelOrder)
        orders = await self._open_orders(conn, key) if commands or (engine and engine.has_live_orders) else {}
        finished = {coid: ex for coid, ex in finished.items() if coid not in orders}
        held = {key: await self._held(conn, key)} if isinstance(p, SubmitOrder) and p.side is Side.SELL else {}
        return VenueBook(engines, orders, finished, held)

    async def _engine(self, conn: AsyncConnection, key: Key) -> MatchingEngine | None:
        row = (await conn.execute(select(matching_state.c.state).where(
            matching_state.c.exchange == key[0], matching_state.c.symbol == key[1]))).first()
        return None if row is None else MatchingEngine.from_dict(row.state, self.params.engine)

    @staticmethod
    async def _open_orders(conn: AsyncConnection, key: Key) -> dict[str, VenueOrder]:
        rows = (await conn.execute(select(paper_orders.c.client_order_id, paper_orders.c.status,
                                          paper_orders.c.command).where(
            paper_orders.c.exchange == key[0], paper_orders.c.symbol == key[1],
            paper_orders.c.status.in_(OPEN_STATUSES)))).all()
        if not rows:
            return {}
        filled: dict[str, Decimal] = {}
        for coid, fill in (await conn.execute(select(paper_fills.c.client_order_id, paper_fills.c.fill).where(
                paper_fills.c.client_order_id.in_([r.client_order_id for r in rows])))).all():
            filled[coid] = filled.get(coid, Decimal(0)) + Decimal(fill["quantity"])
        return {r.client_order_id: VenueOrder(Envelope[SubmitOrder].model_validate(r.command).payload,
                                              OrderStatus(r.status), filled.get(r.client_order_id, Decimal(0)))
                for r in rows}

    @staticmethod
    async def _held(conn: AsyncConnection, key: Key) -> Decimal:
        """What the venue's own fills of this symbol hold."""
        base, _ = split_symbol(key[1])
        held = Decimal(0)
        for (fill,) in (await conn.execute(select(paper_fills.c.fill).join(
                paper_orders, paper_orders.c.client_order_id == paper_fills.c.client_order_id).where(
                paper_orders.c.exchange == key[0], paper_orders.c.symbol == key[1]))).all():
            held = held_after(held, Side(fill["side"]), Decimal(fill["quantity"]), Decimal(fill["fee"]),
                              fill["fee_currency"], base)
        return held

    @staticmethod
    async def market(conn: AsyncConnection, windows: Iterable[MarketWindow]) -> list[MarketEvent]:
        """The stored candles (by their close) and snapshots of each window; with ``everything`` off only the
        newest few (the decision keeps the latest of each)."""
        out: list[MarketEvent] = []
        for w in windows:
            end = from_ms(w.until)
            cq = select(candles).where(candles.c.exchange == w.exchange, candles.c.symbol == w.symbol,
                                       candles.c.ts <= end)
            bq = select(order_book_snapshots).where(order_book_snapshots.c.exchange == w.exchange,
                                                    order_book_snapshots.c.symbol == w.symbol,
                                                    order_book_snapshots.c.ts <= end)
            if w.everything:
                since = from_ms(w.after)
                cq, bq = cq.where(candles.c.ts > since - DAY), bq.where(order_book_snapshots.c.ts > since)
            else:
                cq = cq.order_by(candles.c.ts.desc()).limit(8)
                bq = bq.order_by(order_book_snapshots.c.ts.desc()).limit(1)
            for c in (await conn.execute(cq)).all():
                seconds = timeframe_seconds(c.timeframe)
                out.append(StoredCandle(to_ms(c.ts) + seconds * 1000, seconds, c.open, c.high, c.low, c.close,
                                        c.volume))
            for b in (await conn.execute(bq)).all():
                out.append(StoredBook(to_ms(b.ts), _levels(b.bids), _levels(b.asks)))
        return out

    @staticmethod
    async def save(conn: AsyncConnection, before: VenueBook, outcome: Outcome[VenueBook], now: datetime) -> None:
        for (exchange, symbol), engine in outcome.state.engines.items():
            if before.engines.get((exchange, symbol)) is not engine:
                values = {"state": engine.to_dict(), "updated_at": now}
                await conn.execute(insert(matching_state).values(exchange=exchange, symbol=symbol, **values)
                                   .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))
        await write(conn, outcome.records)


async def write(conn: AsyncConnection, records: Sequence[Any]) -> None:
    """Orders, their latest status (one write per order) and fills."""
    status = {r.client_order_id: r.status for r in records if isinstance(r, OrderStatusSet)}
    for r in records:
        if isinstance(r, OrderOpened):
            cmd = r.command.payload
            await conn.execute(insert(paper_orders).values(
                client_order_id=cmd.client_order_id, exchange=cmd.exchange, symbol=cmd.symbol,
                status=status.pop(cmd.client_order_id, OrderStatus.SUBMITTED).value,
                command=r.command.model_dump(mode="json"), reference_ts=cmd.reference_ts,
            ).on_conflict_do_nothing())
        elif isinstance(r, FillRecorded):
            f = r.fill
            await conn.execute(insert(paper_fills).values(
                fill_id=f.fill_id, client_order_id=f.client_order_id, fill=f.model_dump(mode="json"), ts=f.ts,
            ).on_conflict_do_nothing())
    for coid, s in status.items():
        await conn.execute(update(paper_orders).where(paper_orders.c.client_order_id == coid).values(status=s.value))


def _levels(rows: Iterable[Sequence[Any]]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in rows)
