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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict
from quorum.clock import Clock
from quorum.db.tables import (
    ledger_balances,
    ledger_transactions,
    positions,
    risk_balances,
    risk_checks,
    risk_daily,
    risk_drawdown,
    risk_kill_switch,
    risk_positions,
    risk_profile_state,
    risk_state,
)
from quorum.domain.ledger import account
from quorum.events.control import (
    BookDifference,
    CancelAllOrders,
    ClearEmergencyHalt,
    CloseAllPositions,
    ControlRefused,
    DrawdownHaltTriggered,
    EmergencyHaltCleared,
    EngageKillSwitch,
    HaltTrading,
    KillSwitchEngaged,
    KillSwitchReleased,
    ReleaseKillSwitch,
    ResumeTrading,
    RiskLedgerDiverged,
    RiskProfileChanged,
    SetRiskProfile,
    TradingHalted,
    TradingResumed,
)
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderIntentApproved, OrderIntentRefused, OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.ids import client_order_id
from quorum.risk import consistency, drawdown, killswitch
from quorum.risk.killswitch import GLOBAL as ALL_SYMBOLS
from quorum.risk.killswitch import KillState
from quorum.risk.profiles import ProfileLimits, RiskConfig
from quorum.risk.sizing import Holding, MarketRules, PortfolioView, TradeIntent, assess
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Action, RiskProfile, Side, TradingMode, split_symbol
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

GLOBAL = "global"
SYSTEM = "SYSTEM:risk"
PORTFOLIO_LOCK = "risk:portfolio"
log = logging.getLogger("quorum.risk")
LEDGER_DIVERGENCE = Gauge(
    "quorum_risk_ledger_divergence",
    "Risk's figure minus the ledger's, for a divergence that persisted over two checks with no order activity "
    "between (0 once they agree again)", ["kind", "asset"])


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_step: Decimal = Field(default=Decimal("0.00001"), gt=0)
    min_notional: Decimal = Field(default=Decimal("10"), ge=0)


class RiskSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_RISK_", extra="ignore", frozen=True)

    http_port: int = 8105
    config: RiskConfig = Field(default_factory=RiskConfig, description="JSON RiskConfig: profiles, actions, ...")
    market_rules: dict[str, Rules] = Field(default_factory=dict, description="per symbol lot step / min notional")
    default_rules: Rules = Field(default_factory=Rules)
    consistency_interval_s: float = Field(default=30.0, ge=0, description="seconds between checks of risk's "
                                          "cash and positions against the ledger's; 0 turns the check off")


class RiskService(Service):
    NAME = "risk"
    settings: RiskSettings

    def __init__(self, settings: RiskSettings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self._order_updates = 0  # committed order updates: the order activity the consistency check watches
        self.ledger_checks = 0  # comparisons with the ledger done so far

    def handlers(self) -> dict[str, Handler]:
        return {"risk-decisions": self.on_decision, "risk-orders": self.on_order_update,
                "risk-control": self.on_control, "risk-candles": self.on_candle}

    def tasks(self) -> list[Any]:
        return [self._watch_ledger] if self.settings.consistency_interval_s > 0 else []

    @property
    def config(self) -> RiskConfig:
        return self.settings.config

    def rules(self, symbol: str) -> MarketRules:
        r = self.settings.market_rules.get(symbol, self.settings.default_rules)
        return MarketRules(lot_step=r.lot_step, min_notional=r.min_notional)

    # --- state access ---------------------------------------------------------------------------------------
    @staticmethod
    async def _lock_portfolio(ctx: Context) -> None:
        """First in every handler that writes risk's rows; held until the transaction ends."""
        await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": PORTFOLIO_LOCK})

    async def _halt_row(self, ctx: Context) -> Any:
        return (await ctx.conn.execute(select(risk_state).where(risk_state.c.scope == GLOBAL))).first()

    async def _set_halt(self, ctx: Context, halted: bool, actor: str, reason: str, emergency: bool = False) -> None:
        values = {"scope": GLOBAL, "halted": halted, "emergency": emergency, "reason": reason, "updated_by": actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(risk_state).values(values).on_conflict_do_update(
            index_elements=["scope"], set_=values))

    async def _profile(self, ctx: Context) -> RiskProfile:
        row = (await ctx.conn.execute(select(risk_profile_state.c.profile)
                                      .where(risk_profile_state.c.scope == GLOBAL))).scalar_one_or_none()
        return RiskProfile(row) if row else self.settings.risk_profile

    async def _limits(self, ctx: Context) -> ProfileLimits:
        return self.config.profiles[await self._profile(ctx)]

    async def _cash(self, ctx: Context) -> Decimal:
        """Quote cash, seeded with the paper starting balance the first time."""
        ccy = self.settings.quote_currency
        await ctx.conn.execute(insert(risk_balances).values(currency=ccy, amount=self.settings.paper_starting_cash)
                               .on_conflict_do_nothing())
        q = select(risk_balances.c.amount).where(risk_balances.c.currency == ccy).with_for_update()
        return (await ctx.conn.execute(q)).scalar_one()

    async def _add_cash(self, ctx: Context, delta: Decimal) -> None:
        await ctx.conn.execute(update(risk_balances).where(risk_balances.c.currency == self.settings.quote_currency)
                               .values(amount=risk_balances.c.amount + delta))

    async def _position_row(self, ctx: Context, exchange: str, symbol: str) -> Any:
        await ctx.conn.execute(insert(risk_positions).values(exchange=exchange, symbol=symbol, quantity=0, cost=0,
                                                             reserved_cash=0).on_conflict_do_nothing())
        q = select(risk_positions).where(risk_positions.c.exchange == exchange, risk_positions.c.symbol == symbol)
        return (await ctx.conn.execute(q.with_for_update())).one()

    async def _kill_state(self, ctx: Context) -> KillState:
        rows = (await ctx.conn.execute(select(risk_kill_switch))).all()
        engaged = {r.scope for r in rows if r.engaged}
        return KillState(global_engaged=ALL_SYMBOLS in engaged, symbols=frozenset(engaged - {ALL_SYMBOLS}),
                         losing_streaks={r.scope: r.losing_streak for r in rows if r.losing_streak},
                         reasons={r.scope: r.reason for r in rows if r.engaged})

    async def _save_kill_state(self, ctx: Context, state: KillState, actor: str, automatic: frozenset[str]) -> None:
        scopes = set(state.losing_streaks) | set(state.symbols) | ({ALL_SYMBOLS} if state.global_engaged else set())
        await ctx.conn.execute(delete(risk_kill_switch).where(risk_kill_switch.c.scope.not_in(scopes or {""})))
        for scope in sorted(scopes):
            engaged = state.global_engaged if scope == ALL_SYMBOLS else scope in state.symbols
            values = {"engaged": engaged, "losing_streak": state.losing_streaks.get(scope, 0),
                      "reason": state.reasons.get(scope, ""), "updated_by": actor, "updated_at": ctx.clock.now()}
            await ctx.conn.execute(insert(risk_kill_switch).values(scope=scope, automatic=scope in automatic, **values)
                                   .on_conflict_do_update(index_elements=["scope"], set_={
                                       **values, **({"automatic": True} if scope in automatic else {})}))

    async def _portfolio(self, ctx: Context, day: datetime) -> PortfolioView:
        cash = await self._cash(ctx)
        rows = (await ctx.conn.execute(select(risk_positions))).all()
        holdings = {r.symbol: Holding(symbol=r.symbol, quantity=r.quantity, mark_price=r.last_price,
                                      reserved=r.reserved_cash, pending=r.pending_client_order_id is not None)
                    for r in rows}
        view = PortfolioView(cash=cash, holdings=holdings, day_start_equity=Decimal(0))
        start = await self._day_start(ctx, day, view.equity)
        halt = await self._halt_row(ctx)
        kill = await self._kill_state(ctx)
        return PortfolioView(cash=cash, holdings=holdings, day_start_equity=start, halted=bool(halt and halt.halted),
                             kill_global=kill.global_engaged, killed_symbols=kill.symbols)

    async def _day_start(self, ctx: Context, ts: datetime, equity: Decimal) -> Decimal:
        day = ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        await ctx.conn.execute(insert(risk_daily).values(day=day, start_equity=equity).on_conflict_do_nothing())
        return (await ctx.conn.execute(select(risk_daily.c.start_equity).where(risk_daily.c.day == day))).scalar_one()

    # --- decisions ----------------------------------------------------------------------------------------
    async def on_decision(self, ctx: Context) -> None:
        d: DecisionMade = ctx.message.payload
        if d.action is Action.HOLD:
            return
        decision_id = ctx.message.event_id
        await self._lock_portfolio(ctx)
        await self._cash(ctx)
        await self._position_row(ctx, d.exchange, d.symbol)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == d.exchange, risk_positions.c.symbol == d.symbol).values(last_price=d.price))
        portfolio = await self._portfolio(ctx, d.ts)
        verdict = assess(
            TradeIntent(symbol=d.symbol, action=d.action, intent=d.intent, fraction=d.fraction, price=d.price,
                        confidence=d.confidence, stop_loss=d.stop_loss, take_profit=d.take_profit, atr=d.atr),
            portfolio, await self._limits(ctx), self.rules(d.symbol), self.config)
        checks = verdict.checks_dict()
        await ctx.conn.execute(insert(risk_checks).values(
            decision_id=decision_id, exchange=d.exchange, symbol=d.symbol, side=verdict.side.value,
            outcome="APPROVED" if verdict.approved else "REFUSED", reason_code=verdict.reason_code,
            quantity=verdict.quantity, checks=checks,
        ).on_conflict_do_nothing())
        if not verdict.approved:
            ctx.emit(OrderIntentRefused(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                        side=verdict.side, reason_code=verdict.reason_code or "UNKNOWN"))
            return
        assert verdict.quantity is not None
        reserve = verdict.quantity * d.price * (1 + self.config.fee_rate) if verdict.side is Side.BUY else Decimal(0)
        await self._add_cash(ctx, -reserve)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == d.exchange, risk_positions.c.symbol == d.symbol,
        ).values(pending_client_order_id=client_order_id(decision_id), reserved_cash=reserve))
        ctx.emit(OrderIntentApproved(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                     side=verdict.side, intent=d.intent, quantity=verdict.quantity,
                                     reference_price=d.price, reference_ts=d.ts, stop_loss=verdict.stop_loss,
                                     take_profit=verdict.take_profit, checks=checks))

    # --- settlement -----------------------------------------------------------------------------------------
    async def on_order_update(self, ctx: Context) -> None:
        """Settle a finished order: release its reservation (if risk made one), book what actually executed,
        and feed a completed sell's profit or loss to the kill switch's losing streak."""
        o: OrderUpdated = ctx.message.payload
        ctx.after_commit.append(self._count_order_update)
        if not o.status.is_terminal:
            return
        await self._lock_portfolio(ctx)
        await self._cash(ctx)  # seeds the balance the first time
        pos = await self._position_row(ctx, o.exchange, o.symbol)
        base, quote = split_symbol(o.symbol)
        fee_quote = o.fees if o.fee_currency in (None, quote) else Decimal(0)
        fee_base = o.fees if o.fee_currency == base else Decimal(0)
        release = pos.reserved_cash if pos.pending_client_order_id == o.client_order_id else Decimal(0)
        pending = None if pos.pending_client_order_id == o.client_order_id else pos.pending_client_order_id
        if o.side is Side.BUY:
            qty = pos.quantity + o.filled_quantity - fee_base
            cost = pos.cost + o.quote_spent + fee_quote
            cash_delta = -(o.quote_spent + fee_quote)
            pnl = None
        else:
            sold = min(o.filled_quantity, pos.quantity)
            share = pos.cost * sold / pos.quantity if pos.quantity > 0 else Decimal(0)
            qty, cost = pos.quantity - sold, pos.cost - share
            cash_delta = o.quote_spent - fee_quote - fee_base * (o.average_price or 0)
            pnl = cash_delta - share if o.filled_quantity > 0 else None
        await self._add_cash(ctx, release + cash_delta)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == o.exchange, risk_positions.c.symbol == o.symbol,
        ).values(quantity=qty, cost=cost, pending_client_order_id=pending,
                 reserved_cash=pos.reserved_cash - release))
        if pnl is not None:
            await self._record_trade(ctx, o.symbol, pnl)

    async def _record_trade(self, ctx: Context, symbol: str, pnl: Decimal) -> None:
        state, tripped = killswitch.record_closed_trade(await self._kill_state(ctx), symbol, pnl,
                                                       self.config.kill_after_consecutive_losses)
        await self._save_kill_state(ctx, state, SYSTEM, frozenset(tripped))
        for scope in tripped:
            reason = state.reasons.get(scope, "losing streak")
            ctx.emit(KillSwitchEngaged(actor=SYSTEM, reason=reason,
                                       symbol=None if scope == ALL_SYMBOLS else scope, automatic=True),
                     key=f"auto-kill:{scope}")
            await self._audit(ctx, SYSTEM, "kill_switch_engage", "CONFIRMED", {"scope": scope, "reason": reason,
                                                                              "automatic": True})

    # --- marks and drawdown -----------------------------------------------------------------------------------
    async def on_candle(self, ctx: Context) -> None:
        """Mark a held symbol and check the portfolio's drawdown against the active profile's limit."""
        c: CandleClosed = ctx.message.payload
        mine = (risk_positions.c.exchange == c.exchange, risk_positions.c.symbol == c.symbol,
                (risk_positions.c.quantity > 0) | (risk_positions.c.reserved_cash > 0))
        if (await ctx.conn.execute(select(risk_positions.c.symbol).where(*mine))).first() is None:
            return  # not held: nothing to mark, and no lock taken (most candles)
        await self._lock_portfolio(ctx)
        held = (await ctx.conn.execute(update(risk_positions).where(*mine).values(last_price=c.close)
                                       .returning(risk_positions.c.symbol))).first()
        if held is None:
            return
        portfolio = await self._portfolio(ctx, c.ts)
        row = (await ctx.conn.execute(select(risk_drawdown).where(risk_drawdown.c.scope == GLOBAL)
                                      .with_for_update())).first()
        before = drawdown.DrawdownState(row.peak, row.equity, row.breached) if row else None
        limits = await self._limits(ctx)
        state, breached = drawdown.observe(before, portfolio.equity, limits.max_drawdown_pct)
        values = {"peak": state.peak, "equity": state.equity, "breached": state.breached,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(risk_drawdown).values(scope=GLOBAL, **values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        if breached:
            await self._emergency(ctx, state, limits)

    async def _emergency(self, ctx: Context, state: drawdown.DrawdownState, limits: ProfileLimits) -> None:
        action = self.config.drawdown_action
        plan = drawdown.halt_plan(action)
        reason = (f"drawdown {state.drawdown_pct:.2f}% from peak {state.peak} breached the "
                  f"{limits.max_drawdown_pct}% limit")
        await self._set_halt(ctx, True, SYSTEM, reason, emergency=True)
        ctx.emit(DrawdownHaltTriggered(peak=state.peak, equity=state.equity, drawdown_pct=state.drawdown_pct,
                                       limit_pct=limits.max_drawdown_pct, action=action.value))
        ctx.emit(TradingHalted(actor=SYSTEM, reason=reason))
        if plan.close_positions:
            ctx.emit(CloseAllPositions(actor=SYSTEM, reason=reason))
        elif plan.cancel_orders:
            ctx.emit(CancelAllOrders(actor=SYSTEM, reason=reason))
        await self._audit(ctx, SYSTEM, "drawdown_halt", "CONFIRMED", {
            "action": action.value, "peak": str(state.peak), "equity": str(state.equity),
            "drawdown_pct": str(state.drawdown_pct)})

    # --- controls -------------------------------------------------------------------------------------------
    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        await self._lock_portfolio(ctx)
        handler = {
            HaltTrading: self._halt, ResumeTrading: self._resume, SetRiskProfile: self._set_profile,
            EngageKillSwitch: self._kill, ReleaseKillSwitch: self._kill, ClearEmergencyHalt: self._clear,
        }[type(cmd)]
        await handler(ctx, cmd)

    async def _halt(self, ctx: Context, cmd: HaltTrading) -> None:
        row = await self._halt_row(ctx)
        await self._set_halt(ctx, True, cmd.actor, cmd.reason, emergency=bool(row and row.emergency))
        ctx.emit(TradingHalted(actor=cmd.actor, reason=cmd.reason))

    async def _resume(self, ctx: Context, cmd: ResumeTrading) -> None:
        row = await self._halt_row(ctx)
        if row is not None and row.emergency:
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="EMERGENCY_HALT",
                                    detail="an emergency halt is lifted only by clearing it (with confirmation)"))
            return
        await self._set_halt(ctx, False, cmd.actor, cmd.reason)
        ctx.emit(TradingResumed(actor=cmd.actor, reason=cmd.reason))

    async def _clear(self, ctx: Context, cmd: ClearEmergencyHalt) -> None:
        row = await self._halt_row(ctx)
        if row is None or not row.emergency:
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="NO_EMERGENCY_HALT",
                                    detail="there is no emergency halt to clear"))
            return
        dd = (await ctx.conn.execute(select(risk_drawdown).where(risk_drawdown.c.scope == GLOBAL))).first()
        if dd is not None:
            cleared = drawdown.clear(drawdown.DrawdownState(dd.peak, dd.equity, dd.breached))
            await ctx.conn.execute(update(risk_drawdown).where(risk_drawdown.c.scope == GLOBAL).values(
                peak=cleared.peak, equity=cleared.equity, breached=False, updated_at=ctx.clock.now()))
        await self._set_halt(ctx, False, cmd.actor, cmd.reason)
        ctx.emit(EmergencyHaltCleared(actor=cmd.actor, reason=cmd.reason))

    async def _kill(self, ctx: Context, cmd: EngageKillSwitch | ReleaseKillSwitch) -> None:
        state = await self._kill_state(ctx)
        if isinstance(cmd, EngageKillSwitch):
            state = killswitch.engage(state, cmd.symbol, cmd.reason or "operator")
            confirmation: Any = KillSwitchEngaged(actor=cmd.actor, reason=cmd.reason, symbol=cmd.symbol)
        else:
            state = killswitch.release(state, cmd.symbol)
            confirmation = KillSwitchReleased(actor=cmd.actor, reason=cmd.reason, symbol=cmd.symbol)
        await self._save_kill_state(ctx, state, cmd.actor, frozenset())
        ctx.emit(confirmation)

    async def _set_profile(self, ctx: Context, cmd: SetRiskProfile) -> None:
        previous = await self._profile(ctx)
        values = {"scope": GLOBAL, "profile": cmd.profile.value, "updated_by": cmd.actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(risk_profile_state).values(values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        ctx.emit(RiskProfileChanged(actor=cmd.actor, reason=cmd.reason, profile=cmd.profile, previous=previous))

    async def _audit(self, ctx: Context, actor: str, action: str, status: str, details: dict[str, Any]) -> None:
        await record_audit(ctx, actor=actor, action=action, mode=self.settings.trading_mode.value,
                           risk_profile=(await self._profile(ctx)).value, status=status, details=details,
                           key=f"{ctx.message.event_id}:{action}", chain_key=self.settings.chain_key)

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
