"""Posts every fill as a balanced, hash-chained journal transaction and keeps the projections (balances per
account, positions, equity) in the same database transaction: load the slice (``store.py``), decide
(``quorum.ledger.decide``), write the records, emit. The journal is only ever inserted into — the database
refuses UPDATE, DELETE and TRUNCATE on it — and the projections can be rebuilt from it and compared
(``quorum ledger rebuild``); ``quorum ledger verify`` re-walks the hash chain.

Equity is marked to market on every candle of a held symbol (and at every fill), with its peak and
drawdown, as a time series for dashboards.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict
from quorum import telemetry
from quorum.db.tables import equity
from quorum.domain.ledger import Line
from quorum.ledger import LedgerParams, decide, open_book, post_transaction
from quorum.ledger.decide import opening_txn_id
from quorum.runtime.handling import Context, Handler
from quorum.runtime.outcomes import emit_outcome
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import TradingMode
from sqlalchemy import select

from .store import PostgresLedgerStore


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_LEDGER_", extra="ignore", frozen=True)

    http_port: int = 8108

    def ledger_params(self) -> LedgerParams:
        return LedgerParams(self.chain_key.get_secret_value().encode(), self.quote_currency,
                            self.paper_starting_cash)


async def post(ctx: Context, mode: TradingMode, txn_id: UUID, ts: datetime, description: str, lines: Iterable[Line],
               source_event_id: UUID | None, *, chain_key: SecretStr) -> bool:
    """Append one transaction to ``mode``'s chain (keyed: ``QUORUM_CHAIN_KEY``); False if it was posted before
    (idempotent by txn id)."""
    book = await PostgresLedgerStore.load_chain(ctx.conn, mode, txn_id)
    outcome = post_transaction(book, mode, txn_id, ts, description, lines, source_event_id,
                               chain_key=chain_key.get_secret_value().encode())
    await PostgresLedgerStore.write(ctx.conn, outcome.records)
    await emit_outcome(ctx, outcome, chain_key=chain_key)
    return bool(outcome.records)


class LedgerService(Service):
    NAME = "ledger"
    settings: LedgerSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.params = self.settings.ledger_params()
        self.store = PostgresLedgerStore(self.settings.quote_currency)

    def handlers(self) -> dict[str, Handler]:
        return {"ledger-fills": self.on_message, "ledger-candles": self.on_message}

    async def on_start(self) -> None:
        """Open the paper book once: starting cash credited from equity."""
        async def open_(ctx: Context) -> None:
            book = await self.store.load_chain(ctx.conn, TradingMode.PAPER, opening_txn_id(TradingMode.PAPER))
            outcome = open_book(book, self.params, ctx.clock.now())
            await self.store.write(ctx.conn, outcome.records)
            await emit_outcome(ctx, outcome, chain_key=self.settings.chain_key)
            marked = await self.store.load_marks(ctx.conn, [TradingMode.PAPER])
            last = (await ctx.conn.execute(select(equity.c.equity, equity.c.peak_equity, equity.c.drawdown).where(
                equity.c.mode == TradingMode.PAPER.value).order_by(equity.c.ts.desc()).limit(1))).first()
            cash = marked.cash(TradingMode.PAPER, self.params.quote_currency)
            figures = tuple(last) if last is not None else (cash, cash, Decimal(0))  # never marked: the opening cash

            def show() -> None:  # the trading gauges say where the book stands before the first message
                telemetry.ledger_book(marked, self.params)
                telemetry.equity_marked(TradingMode.PAPER, *figures)

            ctx.after_commit.append(show)

        await self.transact(open_)

    async def on_message(self, ctx: Context) -> None:
        """Load -> decide -> write + emit (``quorum.ledger.decide``)."""
        book = await self.store.load(ctx.conn, ctx.message)
        outcome = decide(book, ctx.message, self.params, ctx.clock.now())
        await self.store.write(ctx.conn, outcome.records)
        await emit_outcome(ctx, outcome, chain_key=self.settings.chain_key)
        ctx.after_commit.append(lambda: telemetry.ledger_book(outcome.state, self.params))
