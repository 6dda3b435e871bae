"""The ledger's book in PostgreSQL: per message, the slice its decision reads — a fill: its position (locked),
the mode's other positions with their marks, quote cash, the chain's head, whether its transaction was posted
and the equity peak, under the mode's advisory lock; a candle: the non-flat positions of its symbol (locked)
and, for their modes, the rest of what equity needs. Written: the decision's records (the journal is only ever
inserted into; balances move by the lines' amounts, so the slice is never written back whole)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from quorum.db.tables import equity, ledger_balances, ledger_entries, ledger_transactions, positions
from quorum.domain.ledger import Position, account
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.ledger import EquityPoint, Holding, JournalTransaction, LedgerBook, MarkMoved, PositionSaved
from quorum.ledger.decide import fill_txn_id
from quorum.types import TradingMode
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class PostgresLedgerStore:
    quote_currency: str

    @staticmethod
    async def lock(conn: AsyncConnection, mode: TradingMode) -> None:
        """One writer per chain: the head read here stays the head until this transaction ends."""
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"ledger:{mode.value}"})

    async def load(self, conn: AsyncConnection, message: Envelope[Any]) -> LedgerBook:
        p = message.payload
        if isinstance(p, OrderFilled):
            return await self.load_fill(conn, p)
        if isinstance(p, CandleClosed):
            return await self.load_candle(conn, p)
        return LedgerBook()

    @staticmethod
    async def load_chain(conn: AsyncConnection, mode: TradingMode, txn_id: UUID) -> LedgerBook:
        """What posting ``txn_id`` alone needs: the chain's head and whether it is on the chain already."""
        await PostgresLedgerStore.lock(conn, mode)
        head = (await conn.execute(
            select(ledger_transactions.c.hash).where(ledger_transactions.c.mode == mode.value)
            .order_by(ledger_transactions.c.seq.desc()).limit(1))).scalar_one_or_none()
        posted = (await conn.execute(select(ledger_transactions.c.hash).where(
            ledger_transactions.c.txn_id == txn_id))).scalar_one_or_none()
        return LedgerBook(last_hash={} if head is None else {mode: head},
                          posted={} if posted is None else {txn_id: posted})

    async def load_fill(self, conn: AsyncConnection, f: OrderFilled) -> LedgerBook:
        await conn.execute(select(positions.c.symbol).where(
            positions.c.mode == f.mode.value, positions.c.symbol == f.symbol).with_for_update())
        chain = await self.load_chain(conn, f.mode, fill_txn_id(f.fill_id))
        return await self._marking(conn, [f.mode], chain)

    async def load_candle(self, conn: AsyncConnection, c: CandleClosed) -> LedgerBook:
        modes = (await conn.execute(select(positions.c.mode).where(
            positions.c.symbol == c.symbol, positions.c.quantity != 0).with_for_update())).scalars().all()
        if not modes:
            return LedgerBook()  # most candles: nobody holds the symbol
        return await self._marking(conn, sorted({TradingMode(m) for m in modes}), LedgerBook())

    async def load_marks(self, conn: AsyncConnection, modes: Sequence[TradingMode]) -> LedgerBook:
        """These modes' positions, quote cash and peaks alone (what the metrics show at start)."""
        return await self._marking(conn, modes, LedgerBook())

    async def _marking(self, conn: AsyncConnection, modes: Sequence[TradingMode], book: LedgerBook) -> LedgerBook:
        """Add what marking these modes' equity reads: their positions, quote cash and equity peaks."""
        names = [m.value for m in modes]
        holdings = {(TradingMode(r.mode), r.symbol): Holding(
            Position(r.quantity, r.avg_cost, r.realized_pnl, r.fees_paid), r.mark_price)
            for r in (await conn.execute(select(positions).where(positions.c.mode.in_(names)))).all()}
        cash = [account(m, "cash", self.quote_currency) for m in modes]
        balances = {r.account: r.amount for r in (await conn.execute(
            select(ledger_balances.c.account, ledger_balances.c.amount).where(ledger_balances.c.account.in_(cash))
        )).all()}
        peaks = {TradingMode(r.mode): r.peak for r in (await conn.execute(
            select(equity.c.mode, func.max(equity.c.peak_equity).label("peak")).where(equity.c.mode.in_(names))
            .group_by(equity.c.mode))).all() if r.peak is not None}
        return LedgerBook(balances, holdings, book.last_hash, peaks, book.posted)

    @staticmethod
    async def write(conn: AsyncConnection, records: Iterable[Any]) -> None:
        for r in records:
            if isinstance(r, JournalTransaction):
                await _append(conn, r)
            elif isinstance(r, PositionSaved):
                p = r.holding.position
                values = {"mode": r.mode.value, "symbol": r.symbol, "quantity": p.quantity, "avg_cost": p.avg_cost,
                          "realized_pnl": p.realized_pnl, "fees_paid": p.fees_paid, "mark_price": r.holding.mark,
                          "updated_at": r.ts}
                await conn.execute(insert(positions).values(values).on_conflict_do_update(
                    index_elements=["mode", "symbol"], set_=values))
            elif isinstance(r, MarkMoved):
                await conn.execute(update(positions).where(positions.c.symbol == r.symbol, positions.c.quantity != 0)
                                   .values(mark_price=r.price))
            elif isinstance(r, EquityPoint):
                values = {"mode": r.mode.value, "ts": r.ts, "equity": r.equity, "peak_equity": r.peak,
                          "drawdown": r.drawdown}
                await conn.execute(insert(equity).values(values).on_conflict_do_update(
                    index_elements=["mode", "ts"], set_=values))


async def _append(conn: AsyncConnection, t: JournalTransaction) -> None:
    await conn.execute(insert(ledger_transactions).values(
        txn_id=t.txn_id, mode=t.mode.value, ts=t.ts, description=t.description, source_event_id=t.source_event_id,
        prev_hash=t.prev_hash, hash=t.hash))
    await conn.execute(insert(ledger_entries), [
        {"txn_id": t.txn_id, "account": ln.account, "currency": ln.currency, "amount": ln.amount} for ln in t.lines])
    for ln in t.lines:
        stmt = insert(ledger_balances).values(account=ln.account, currency=ln.currency, amount=ln.amount,
                                              updated_at=t.ts)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["account"], set_={
            "amount": ledger_balances.c.amount + ln.amount, "updated_at": t.ts}))
