"""Risk's book in PostgreSQL: loaded whole (a few rows: one per symbol, scope and the message's day) under the
portfolio lock, saved by writing only what a decision changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from quorum.db.tables import (
    risk_balances,
    risk_checks,
    risk_daily,
    risk_drawdown,
    risk_kill_switch,
    risk_positions,
    risk_profile_state,
    risk_state,
)
from quorum.risk.book import Halt, KillSwitches, ProfileChoice, RiskBook, RiskPosition
from quorum.risk.decide import RiskCheckRecorded
from quorum.risk.drawdown import DrawdownState
from quorum.risk.killswitch import GLOBAL as ALL_SYMBOLS
from quorum.risk.killswitch import KillState
from quorum.types import RiskProfile
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

GLOBAL = "global"
PORTFOLIO_LOCK = "risk:portfolio"


@dataclass(frozen=True)
class PostgresRiskStore:
    quote_currency: str
    starting_cash: Decimal

    @staticmethod
    async def lock(conn: AsyncConnection) -> None:
        """First in every unit of work that writes risk's rows; held until the transaction ends, so handlers that
        reach the rows in different orders queue instead of deadlocking."""
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": PORTFOLIO_LOCK})

    @staticmethod
    async def holds(conn: AsyncConnection, exchange: str, symbol: str) -> bool:
        """Cheap pre-check, without the lock: most candles are of symbols risk does not hold."""
        q = select(risk_positions.c.symbol).where(
            risk_positions.c.exchange == exchange, risk_positions.c.symbol == symbol,
            (risk_positions.c.quantity > 0) | (risk_positions.c.reserved_cash > 0))
        return (await conn.execute(q)).first() is not None

    async def load(self, conn: AsyncConnection, days: Iterable[datetime] = ()) -> RiskBook:
        await conn.execute(insert(risk_balances).values(currency=self.quote_currency, amount=self.starting_cash)
                           .on_conflict_do_nothing())  # seeded with the paper starting balance the first time
        cash = (await conn.execute(select(risk_balances.c.amount).where(
            risk_balances.c.currency == self.quote_currency))).scalar_one()
        positions = {(r.exchange, r.symbol): RiskPosition(r.exchange, r.symbol, r.quantity, r.cost, r.reserved_cash,
                                                          r.pending_client_order_id, r.last_price)
                     for r in (await conn.execute(select(risk_positions))).all()}
        halt = (await conn.execute(select(risk_state).where(risk_state.c.scope == GLOBAL))).first()
        profile = (await conn.execute(select(risk_profile_state).where(risk_profile_state.c.scope == GLOBAL))).first()
        dd = (await conn.execute(select(risk_drawdown).where(risk_drawdown.c.scope == GLOBAL))).first()
        wanted = sorted(set(days))
        starts = {} if not wanted else {r.day: r.start_equity for r in (await conn.execute(
            select(risk_daily).where(risk_daily.c.day.in_(wanted)))).all()}
        return RiskBook(
            cash=cash, positions=positions,
            halt=Halt(halt.halted, halt.emergency, halt.reason, halt.updated_by) if halt else None,
            profile=ProfileChoice(RiskProfile(profile.profile), profile.updated_by) if profile else None,
            kill=await self._kill(conn),
            drawdown=DrawdownState(dd.peak, dd.equity, dd.breached) if dd else None, day_starts=starts)

    @staticmethod
    async def _kill(conn: AsyncConnection) -> KillSwitches:
        rows = (await conn.execute(select(risk_kill_switch))).all()
        engaged = {r.scope for r in rows if r.engaged}
        state = KillState(global_engaged=ALL_SYMBOLS in engaged, symbols=frozenset(engaged - {ALL_SYMBOLS}),
                          losing_streaks={r.scope: r.losing_streak for r in rows if r.losing_streak},
                          reasons={r.scope: r.reason for r in rows if r.engaged})
        return KillSwitches(state, frozenset(r.scope for r in rows if r.automatic))

    async def save(self, conn: AsyncConnection, before: RiskBook, after: RiskBook, now: datetime) -> None:
        if after.cash != before.cash:
            await conn.execute(update(risk_balances).where(risk_balances.c.currency == self.quote_currency)
                               .values(amount=after.cash))
        for key, pos in after.positions.items():
            if before.positions.get(key) != pos:
                values = {"quantity": pos.quantity, "cost": pos.cost, "reserved_cash": pos.reserved_cash,
                          "pending_client_order_id": pos.pending_client_order_id, "last_price": pos.last_price}
                await conn.execute(insert(risk_positions).values(exchange=pos.exchange, symbol=pos.symbol, **values)
                                   .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))
        if after.halt != before.halt and after.halt is not None:
            h = after.halt
            values = {"scope": GLOBAL, "halted": h.halted, "emergency": h.emergency, "reason": h.reason,
                      "updated_by": h.updated_by, "updated_at": now}
            await conn.execute(insert(risk_state).values(values).on_conflict_do_update(
                index_elements=["scope"], set_=values))
        if after.profile != before.profile and after.profile is not None:
            values = {"scope": GLOBAL, "profile": after.profile.profile.value,
                      "updated_by": after.profile.updated_by, "updated_at": now}
            await conn.execute(insert(risk_profile_state).values(values).on_conflict_do_update(
                index_elements=["scope"], set_=values))
        if after.kill != before.kill:
            await self._save_kill(conn, before.kill, after.kill, now)
        if after.drawdown != before.drawdown and after.drawdown is not None:
            d = after.drawdown
            values = {"peak": d.peak, "equity": d.equity, "breached": d.breached, "updated_at": now}
            await conn.execute(insert(risk_drawdown).values(scope=GLOBAL, **values).on_conflict_do_update(
                index_elements=["scope"], set_=values))
        for day, start in after.day_starts.items():
            if day not in before.day_starts:
                await conn.execute(insert(risk_daily).values(day=day, start_equity=start).on_conflict_do_nothing())

    @staticmethod
    async def _save_kill(conn: AsyncConnection, before: KillSwitches, after: KillSwitches, now: datetime) -> None:
        state = after.state
        scopes = KillSwitches.scopes(state)
        tripped = after.automatic - before.automatic
        await conn.execute(delete(risk_kill_switch).where(risk_kill_switch.c.scope.not_in(scopes or {""})))
        for scope in sorted(scopes):
            engaged = state.global_engaged if scope == ALL_SYMBOLS else scope in state.symbols
            values = {"engaged": engaged, "losing_streak": state.losing_streaks.get(scope, 0),
                      "reason": state.reasons.get(scope, ""), "updated_by": after.updated_by, "updated_at": now}
            await conn.execute(insert(risk_kill_switch).values(scope=scope, automatic=scope in tripped, **values)
                               .on_conflict_do_update(index_elements=["scope"], set_={
                                   **values, **({"automatic": True} if scope in tripped else {})}))

    @staticmethod
    async def write(conn: AsyncConnection, records: Iterable[Any]) -> None:
        for r in records:
            if isinstance(r, RiskCheckRecorded):
                await conn.execute(insert(risk_checks).values(
                    decision_id=r.decision_id, exchange=r.exchange, symbol=r.symbol, side=r.side.value,
                    outcome="APPROVED" if r.approved else "REFUSED", reason_code=r.reason_code,
                    quantity=r.quantity, checks=r.checks).on_conflict_do_nothing())
