"""Adapter around ``quorum.risk``: builds the portfolio view from its own projection, asks for a verdict,
records every check, and publishes approval or refusal. It also marks held positions on every candle to
track the drawdown (an emergency halt runs the configured action), keeps the kill switches (manual, and
automatic after a losing streak) and owns the active risk profile.

Cash is reserved when a buy is approved and settled when its order ends, so two approvals can never spend
the same cash. Every terminal order is settled — protective and liquidation orders too, not only the ones
risk approved — so the projection follows what was really executed.

The four consumers run concurrently and share rows (balances, positions, drawdown, halt, kill switches) that
each reaches in its own order (a candle locks its position before the cash, a decision the cash first), so
every handler that writes them takes one transaction lock on the portfolio first: they queue, never deadlock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Gauge
from pydantic import Field
from quorum import telemetry
from quorum.clock import Clock
from quorum.db.tables import ledger_balances, ledger_transactions, positions, risk_balances, risk_positions
from quorum.domain.ledger import account
from quorum.events.control import BookDifference, RiskLedgerDiverged
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.risk import consistency
from quorum.risk.book import day_of
from quorum.risk.decide import decide
from quorum.risk.profiles import RiskConfig
from quorum.risk.settings import RiskSettingsBase
from quorum.runtime.handling import Context, Handler
from quorum.runtime.outcomes import emit_outcome
from quorum.runtime.service import Service
from quorum.types import Action, TradingMode
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .store import PostgresRiskStore

log = logging.getLogger("quorum.risk")
LEDGER_DIVERGENCE = Gauge(
    "quorum_risk_ledger_divergence",
    "Risk's figure minus the ledger's, for a divergence that persisted over two checks with no order activity "
    "between (0 once they agree again)", ["kind", "asset"])


class RiskSettings(RiskSettingsBase):
    http_port: int = 8105
    consistency_interval_s: float = Field(default=30.0, ge=0, description="seconds between checks of risk's "
                                          "cash and positions against the ledger's; 0 turns the check off")


class RiskService(Service):
    NAME = "risk"
    settings: RiskSettings

    def __init__(self, settings: RiskSettings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self._order_updates = 0  # committed order updates: the order activity the consistency check watches
        self.params = self.settings.params()
        self.store = PostgresRiskStore(self.settings.quote_currency, self.settings.paper_starting_cash)
        self.ledger_checks = 0  # comparisons with the ledger done so far

    def handlers(self) -> dict[str, Handler]:
        return {"risk-decisions": self.on_decision, "risk-orders": self.on_order_update,
                "risk-control": self.on_control, "risk-candles": self.on_candle}

    def tasks(self) -> list[Any]:
        return [self._watch_ledger] if self.settings.consistency_interval_s > 0 else []

    @property
    def config(self) -> RiskConfig:
        return self.settings.config


    # --- load -> decide -> save + emit -------------------------------------------------------------------
    async def _apply(self, ctx: Context, days: tuple[datetime, ...] = ()) -> None:
        """One message through the pure decision, under the portfolio lock."""
        await self.store.lock(ctx.conn)
        before = await self.store.load(ctx.conn, days)
        outcome = decide(before, ctx.message, self.params, ctx.clock.now())
        await self.store.save(ctx.conn, before, outcome.state, ctx.clock.now())
        await self.store.write(ctx.conn, outcome.records)
        await emit_outcome(ctx, outcome, chain_key=self.settings.chain_key)
        ctx.after_commit.append(lambda: telemetry.risk_book(outcome.state, self.params))

    async def on_start(self) -> None:
        async def show(ctx: Context) -> None:  # the gauges say where the book stands before the first message
            book = await self.store.load(ctx.conn, ())
            ctx.after_commit.append(lambda: telemetry.risk_book(book, self.params))

        await self.transact(show)

    async def on_decision(self, ctx: Context) -> None:
        d: DecisionMade = ctx.message.payload
        if d.action is Action.HOLD:
            return
        await self._apply(ctx, (day_of(d.ts),))

    async def on_order_update(self, ctx: Context) -> None:
        """Settle a finished order (``quorum.risk.decide.on_order_update``)."""
        o: OrderUpdated = ctx.message.payload
        ctx.after_commit.append(self._count_order_update)
        if o.status.is_terminal:
            await self._apply(ctx)

    async def on_candle(self, ctx: Context) -> None:
        """Mark a held symbol and check the portfolio's drawdown against the active profile's limit."""
        c: CandleClosed = ctx.message.payload
        if await self.store.holds(ctx.conn, c.exchange, c.symbol):  # most candles: not held, no lock taken
            await self._apply(ctx, (day_of(c.ts),))

    async def on_control(self, ctx: Context) -> None:
        await self._apply(ctx)

    # --- consistency with the ledger ------------------------------------------------------------------------
    def _count_order_update(self) -> None:
        self._order_updates += 1

    async def _watch_ledger(self) -> None:
        """Every ``consistency_interval_s``: compare risk's books with the ledger's; a divergence that holds over
        two checks with no order activity between raises ``RiskLedgerDiverged``, sets the gauge and logs."""
        previous: consistency.Check | None = None
        alerted: tuple[consistency.Divergence, ...] = ()
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.consistency_interval_s)
                return
            except TimeoutError:
                pass
            try:
                current = await self._check_ledger()
            except Exception as exc:  # noqa: BLE001 - a database blip must not stop the watcher
                log.warning("consistency check against the ledger failed (%s); trying again next time",
                            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                previous = None  # the next check starts a new pair
                continue
            if current is None:  # no ledger book for this mode (the ledger is not running): nothing to compare
                previous = None
                continue
            found = consistency.review(previous, current, alerted)
            await self._report(found)
            previous, alerted = current, found.alerted
            self.ledger_checks += 1

    async def _check_ledger(self) -> consistency.Check | None:
        assert self.engine is not None
        marker = self._order_updates
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")  # both books at one instant
            async with conn.begin():
                books = await read_books(conn, self.settings.trading_mode, self.settings.quote_currency,
                                         self.settings.paper_starting_cash)
                posted = (await conn.execute(select(func.max(ledger_transactions.c.seq)).where(
                    ledger_transactions.c.mode == self.settings.trading_mode.value))).scalar_one()
        if books is None:
            return None
        return consistency.Check(consistency.compare(*books, self.settings.quote_currency), (marker, posted))

    async def _report(self, found: consistency.Review) -> None:
        for kind, asset in found.cleared:
            LEDGER_DIVERGENCE.labels(kind.value, asset).set(0)
            log.info("risk agrees with the ledger again on %s %s", kind.value, asset)
        for d in found.persistent:
            LEDGER_DIVERGENCE.labels(d.kind.value, d.asset).set(float(d.difference))
        if not found.alert:
            return
        log.warning("risk disagrees with the ledger (no order activity since the last check): %s",
                    "; ".join(f"{d.kind.value} {d.asset}: risk {d.risk}, ledger {d.ledger}" for d in found.persistent))
        alert = RiskLedgerDiverged(mode=self.settings.trading_mode, currency=self.settings.quote_currency,
                                   differences=tuple(BookDifference(kind=d.kind.value, asset=d.asset, risk=d.risk,
                                                                    ledger=d.ledger) for d in found.persistent))

        async def raise_alert(ctx: Context) -> None:
            ctx.emit(alert, key=f"risk-ledger:{ctx.clock.now().isoformat()}")

        await self.transact(raise_alert)


async def read_books(conn: AsyncConnection, mode: TradingMode, currency: str,
                     starting_cash: Decimal) -> tuple[consistency.BookView, consistency.BookView] | None:
    """Risk's books and the ledger's (cash in ``currency``, quantity per symbol), or None while the ledger has not
    opened ``mode``'s book. Risk seeds its cash with ``starting_cash`` on first use, so no row means that."""
    ledger_cash = (await conn.execute(select(ledger_balances.c.amount).where(
        ledger_balances.c.account == account(mode, "cash", currency)))).scalar_one_or_none()
    if ledger_cash is None:
        return None
    cash = (await conn.execute(select(risk_balances.c.amount).where(
        risk_balances.c.currency == currency))).scalar_one_or_none()
    held = (await conn.execute(select(risk_positions.c.symbol, func.sum(risk_positions.c.quantity),
                                      func.sum(risk_positions.c.reserved_cash))
                               .group_by(risk_positions.c.symbol))).all()
    booked = (await conn.execute(select(positions.c.symbol, positions.c.quantity)
                                 .where(positions.c.mode == mode.value))).all()
    mine = consistency.risk_view(starting_cash if cash is None else cash, sum((r[2] for r in held), Decimal(0)),
                                 {r[0]: r[1] for r in held})
    return mine, consistency.BookView(ledger_cash, {r[0]: r[1] for r in booked})
