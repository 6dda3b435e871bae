"""The ledger's journal read back from the database: verify its hash chain, rebuild balances and positions
from it alone, and compare the rebuild with the stored projections (``quorum ledger verify|rebuild``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.db.tables import ledger_balances, ledger_entries, ledger_transactions, positions
from quorum.domain.ledger import Books, JournalEntry, Line, replay, verify_chain
from quorum.types import TradingMode


def journal_statements(mode: TradingMode) -> tuple[Select[Any], Select[Any]]:
    """The mode's transactions in chain order and their lines in posting order (sync and async readers)."""
    txns = select(ledger_transactions).where(ledger_transactions.c.mode == mode.value).order_by(
        ledger_transactions.c.seq)
    entries = select(ledger_entries).join(
        ledger_transactions, ledger_transactions.c.txn_id == ledger_entries.c.txn_id).where(
        ledger_transactions.c.mode == mode.value).order_by(ledger_entries.c.id)
    return txns, entries


def assemble(txns: Iterable[Any], entries: Iterable[Any]) -> list[JournalEntry]:
    lines: dict[object, list[Line]] = defaultdict(list)
    for e in entries:
        lines[e.txn_id].append(Line(e.account, e.currency, e.amount))
    return [JournalEntry(t.seq, str(t.txn_id), t.ts.isoformat(), t.description, tuple(lines[t.txn_id]),
                         t.prev_hash, t.hash) for t in txns]


async def load_journal(conn: AsyncConnection, mode: TradingMode) -> list[JournalEntry]:
    txn_stmt, entry_stmt = journal_statements(mode)
    return assemble((await conn.execute(txn_stmt)).all(), (await conn.execute(entry_stmt)).all())


async def verify(conn: AsyncConnection, mode: TradingMode, *, key: bytes) -> list[str]:
    """Re-walk ``mode``'s chain under the chain key (``QUORUM_CHAIN_KEY``)."""
    return verify_chain(await load_journal(conn, mode), key=key)


async def rebuild(conn: AsyncConnection, mode: TradingMode) -> Books:
    return replay(await load_journal(conn, mode))


async def differences(conn: AsyncConnection, mode: TradingMode) -> list[str]:
    """Where the stored balances and positions differ from the journal's replay (empty: they agree)."""
    books = await rebuild(conn, mode)
    prefix = f"{mode.value.lower()}:"
    stored = {r.account: r.amount for r in (await conn.execute(
        select(ledger_balances).where(ledger_balances.c.account.like(prefix + "%")))).all()}
    out = [f"balance {a}: stored {stored.get(a, Decimal(0))}, journal {books.balances.get(a, Decimal(0))}"
           for a in sorted(set(stored) | set(books.balances))
           if stored.get(a, Decimal(0)) != books.balances.get(a, Decimal(0))]
    rows = {r.symbol: r for r in (await conn.execute(select(positions).where(positions.c.mode == mode.value))).all()}
    for symbol in sorted(set(rows) | set(books.positions)):
        want, row = books.positions.get(symbol), rows.get(symbol)
        got = None if row is None else (row.quantity, row.avg_cost, row.realized_pnl, row.fees_paid)
        expect = None if want is None else (want.quantity, want.avg_cost, want.realized_pnl, want.fees_paid)
        if got != expect:
            out.append(f"position {symbol}: stored {got}, journal {expect}")
    return out


async def restore(conn: AsyncConnection, mode: TradingMode, now: datetime) -> None:
    """Rewrite the projections from the journal (the journal itself is never touched)."""
    books = await rebuild(conn, mode)
    await conn.execute(delete(ledger_balances).where(ledger_balances.c.account.like(f"{mode.value.lower()}:%")))
    for acct, amount in sorted(books.balances.items()):
        await conn.execute(insert(ledger_balances).values(account=acct, currency=acct.rsplit(":", 1)[1],
                                                          amount=amount, updated_at=now))
    marks = {r.symbol: r.mark_price for r in (await conn.execute(
        select(positions.c.symbol, positions.c.mark_price).where(positions.c.mode == mode.value))).all()}
    await conn.execute(delete(positions).where(positions.c.mode == mode.value))
    for symbol, p in sorted(books.positions.items()):
        await conn.execute(insert(positions).values(
            mode=mode.value, symbol=symbol, quantity=p.quantity, avg_cost=p.avg_cost, realized_pnl=p.realized_pnl,
            fees_paid=p.fees_paid, mark_price=marks.get(symbol), updated_at=now))
