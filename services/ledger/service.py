"""Posts every fill as a balanced, hash-chained journal transaction and keeps the projections (balances per
account, positions, equity) in the same database transaction. The journal is only ever inserted into — the
database refuses UPDATE, DELETE and TRUNCATE on it — and the projections can be rebuilt from it and
compared (``quorum ledger rebuild``); ``quorum ledger verify`` re-walks the hash chain.

Equity is marked to market on every candle of a held symbol (and at every fill), with its peak and
drawdown, as a time series for dashboards.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import equity, ledger_balances, ledger_entries, ledger_transactions, positions
from quorum.domain.ledger import (
    GENESIS_HASH,
    Line,
    ParsedFill,
    Position,
    account,
    check_balanced,
    fill_lines,
    opening_balance,
    position_effect,
    txn_hash,
)
from quorum.events.fills import OrderFilled
from quorum.events.ledger import EquityMarked, Posting, TransactionPosted
from quorum.events.market_data import CandleClosed
from quorum.ids import stable_uuid
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Side, TradingMode, split_symbol, timeframe_seconds
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_LEDGER_", extra="ignore", frozen=True)

    http_port: int = 8108


async def post(ctx: Context, mode: TradingMode, txn_id: UUID, ts: datetime, description: str, lines: list[Line],
               source_event_id: UUID | None, *, chain_key: SecretStr) -> bool:
    """Append one transaction to ``mode``'s chain (keyed: ``QUORUM_CHAIN_KEY``); False if it was posted before
    (idempotent by txn id)."""
    check_balanced(lines)
    await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"ledger:{mode.value}"})
    if (await ctx.conn.execute(select(ledger_transactions.c.txn_id)
                               .where(ledger_transactions.c.txn_id == txn_id))).first():
        return False
    prev = (await ctx.conn.execute(
        select(ledger_transactions.c.hash).where(ledger_transactions.c.mode == mode.value)
        .order_by(ledger_transactions.c.seq.desc()).limit(1)
    )).scalar_one_or_none() or GENESIS_HASH
    digest = txn_hash(prev, str(txn_id), ts.isoformat(), description, lines, key=chain_key.get_secret_value().encode())
    await ctx.conn.execute(insert(ledger_transactions).values(
        txn_id=txn_id, mode=mode.value, ts=ts, description=description, source_event_id=source_event_id,
        prev_hash=prev, hash=digest,
    ))
    await ctx.conn.execute(insert(ledger_entries), [
        {"txn_id": txn_id, "account": ln.account, "currency": ln.currency, "amount": ln.amount} for ln in lines
    ])
    for ln in lines:
        stmt = insert(ledger_balances).values(account=ln.account, currency=ln.currency, amount=ln.amount,
                                              updated_at=ts)
        await ctx.conn.execute(stmt.on_conflict_do_update(index_elements=["account"], set_={
            "amount": ledger_balances.c.amount + ln.amount, "updated_at": ts}))
    ctx.emit(TransactionPosted(
        txn_id=txn_id, mode=mode, ts=ts, description=description,
        postings=tuple(Posting(account=ln.account, currency=ln.currency, amount=ln.amount) for ln in lines),
    ), key=str(txn_id), event_time=ts)
    return True


class LedgerService(Service):
    NAME = "ledger"
    settings: LedgerSettings

    def handlers(self) -> dict[str, Handler]:
        return {"ledger-fills": self.on_fill, "ledger-candles": self.on_candle}

    async def on_start(self) -> None:
        """Open the paper book once: starting cash credited from equity."""
        mode, ccy, amount = TradingMode.PAPER, self.settings.quote_currency, self.settings.paper_starting_cash

        async def open_book(ctx: Context) -> None:
            await post(ctx, mode, stable_uuid("opening-balance", mode.value), ctx.clock.now(),
                       f"opening balance {amount} {ccy}", opening_balance(mode, ccy, amount), None,
                       chain_key=self.settings.chain_key)

        await self.transact(open_book)

    async def on_fill(self, ctx: Context) -> None:
        f: OrderFilled = ctx.message.payload
        base, quote = split_symbol(f.symbol)
        row = (await ctx.conn.execute(select(positions).where(
            positions.c.mode == f.mode.value, positions.c.symbol == f.symbol).with_for_update())).first()
        pos = Position() if row is None else Position(row.quantity, row.avg_cost, row.realized_pnl, row.fees_paid)
        effect = position_effect(ParsedFill(base, quote, f.side, f.quantity, f.quantity * f.price, f.fee,
                                            f.fee_currency, Decimal(0)))
        realized = pos.realized_by(effect[1], effect[2]) if f.side is Side.SELL else Decimal(0)
        lines = fill_lines(f.mode, f.symbol, f.side, f.quantity, f.price, f.fee, f.fee_currency, realized)
        desc = f"{f.side.value} {f.quantity} {f.symbol} @ {f.price} ({f.client_order_id})"
        if not await post(ctx, f.mode, stable_uuid("fill", f.fill_id), f.ts, desc, lines, ctx.message.event_id,
                          chain_key=self.settings.chain_key):
            return
        pos = pos.apply(*effect)
        values = {"mode": f.mode.value, "symbol": f.symbol, "quantity": pos.quantity, "avg_cost": pos.avg_cost,
                  "realized_pnl": pos.realized_pnl, "fees_paid": pos.fees_paid, "mark_price": f.price,
                  "updated_at": f.ts}
        await ctx.conn.execute(insert(positions).values(values).on_conflict_do_update(
            index_elements=["mode", "symbol"], set_=values))
        await self._mark_equity(ctx, f.mode, f.ts)

    async def on_candle(self, ctx: Context) -> None:
        """Mark every book holding this symbol at the candle's close."""
        c: CandleClosed = ctx.message.payload
        close_ts = c.ts + timedelta(seconds=timeframe_seconds(c.timeframe))
        marked = (await ctx.conn.execute(update(positions).where(
            positions.c.symbol == c.symbol, positions.c.quantity != 0,
        ).values(mark_price=c.close).returning(positions.c.mode))).scalars().all()
        for mode in sorted(set(marked)):
            await self._mark_equity(ctx, TradingMode(mode), close_ts)

    async def _mark_equity(self, ctx: Context, mode: TradingMode, ts: datetime) -> None:
        """Equity = quote cash + holdings at their mark; peak and drawdown follow."""
        cash_account = account(mode, "cash", self.settings.quote_currency)
        cash = (await ctx.conn.execute(select(func.coalesce(func.sum(ledger_balances.c.amount), 0))
                                       .where(ledger_balances.c.account == cash_account))).scalar_one()
        held = (await ctx.conn.execute(select(func.coalesce(func.sum(positions.c.quantity * positions.c.mark_price), 0))
                                       .where(positions.c.mode == mode.value))).scalar_one()
        value = Decimal(cash) + Decimal(held)
        prev_peak = (await ctx.conn.execute(select(func.max(equity.c.peak_equity))
                                            .where(equity.c.mode == mode.value))).scalar_one()
        peak = max(value, prev_peak or value)
        values = {"mode": mode.value, "ts": ts, "equity": value, "peak_equity": peak,
                  "drawdown": (peak - value) / peak if peak else Decimal(0)}
        await ctx.conn.execute(insert(equity).values(values).on_conflict_do_update(
            index_elements=["mode", "ts"], set_=values))
        ctx.emit(EquityMarked(mode=mode, ts=ts, equity=value, peak_equity=peak, drawdown=values["drawdown"]),
                 key=f"equity:{mode.value}:{ts.isoformat()}", event_time=ts)
