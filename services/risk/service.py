"""Adapter around ``quorum.domain.risk``: loads the portfolio view, asks for a verdict, records every check,
and publishes approval or refusal. Its portfolio is a projection of the OMS's terminal order updates.

Cash is reserved when a buy is approved and settled when its order ends, so two approvals can never spend
the same cash.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import risk_balances, risk_checks, risk_positions, risk_profile_state, risk_state
from quorum.domain.risk import RiskLimits, SymbolView, assess
from quorum.events.control import (
    HaltTrading,
    ResumeTrading,
    RiskProfileChanged,
    SetRiskProfile,
    TradingHalted,
    TradingResumed,
)
from quorum.events.orders import OrderIntentApproved, OrderIntentRefused, OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.ids import client_order_id
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Action, RiskProfile, Side, split_symbol
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

GLOBAL = "global"


class RiskSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_RISK_", extra="ignore", frozen=True)

    http_port: int = 8105
    position_fraction: Decimal = Field(default=Decimal("0.10"), gt=0, le=1)
    lot_step: Decimal = Field(default=Decimal("0.00001"), gt=0)
    min_notional: Decimal = Field(default=Decimal("10"), ge=0)
    fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)


class RiskService(Service):
    NAME = "risk"
    settings: RiskSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        s = self.settings
        self.limits = RiskLimits(s.position_fraction, s.lot_step, s.min_notional, s.fee_rate)

    def handlers(self) -> dict[str, Handler]:
        return {"risk-decisions": self.on_decision, "risk-orders": self.on_order_update,
                "risk-control": self.on_control}

    # --- state access ---------------------------------------------------------------------------------
    async def _halted(self, ctx: Context) -> bool:
        row = (await ctx.conn.execute(select(risk_state.c.halted).where(risk_state.c.scope == GLOBAL))).first()
        return bool(row and row.halted)

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

    async def _position_row(self, ctx: Context, exchange: str, symbol: str):  # noqa: ANN202
        await ctx.conn.execute(insert(risk_positions).values(exchange=exchange, symbol=symbol, quantity=0,
                                                             reserved_cash=0).on_conflict_do_nothing())
        q = select(risk_positions).where(risk_positions.c.exchange == exchange, risk_positions.c.symbol == symbol)
        return (await ctx.conn.execute(q.with_for_update())).one()

    # --- handlers -------------------------------------------------------------------------------------
    async def on_decision(self, ctx: Context) -> None:
        d: DecisionMade = ctx.message.payload
        if d.action is Action.HOLD:
            return
        decision_id = ctx.message.event_id
        cash = await self._cash(ctx)
        pos = await self._position_row(ctx, d.exchange, d.symbol)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == d.exchange, risk_positions.c.symbol == d.symbol).values(last_price=d.price))
        marked = (await ctx.conn.execute(select(func.coalesce(func.sum(
            risk_positions.c.quantity * func.coalesce(risk_positions.c.last_price, 0) + risk_positions.c.reserved_cash
        ), 0)))).scalar_one()
        verdict = assess(
            d.action, d.price, SymbolView(position=pos.quantity, pending=pos.pending_client_order_id is not None),
            cash=cash, equity=cash + marked, halted=await self._halted(ctx), limits=self.limits,
            intent=d.intent, fraction=d.fraction,
        )
        await ctx.conn.execute(insert(risk_checks).values(
            decision_id=decision_id, exchange=d.exchange, symbol=d.symbol, side=verdict.side.value,
            outcome="APPROVED" if verdict.approved else "REFUSED", reason_code=verdict.reason_code,
            quantity=verdict.quantity, checks=verdict.checks,
        ).on_conflict_do_nothing())
        if not verdict.approved:
            ctx.emit(OrderIntentRefused(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                        side=verdict.side, reason_code=verdict.reason_code or "UNKNOWN"))
            return
        assert verdict.quantity is not None
        reserve = verdict.quantity * d.price * (1 + self.limits.fee_rate) if verdict.side is Side.BUY else Decimal(0)
        await self._add_cash(ctx, -reserve)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == d.exchange, risk_positions.c.symbol == d.symbol,
        ).values(pending_client_order_id=client_order_id(decision_id), reserved_cash=reserve))
        ctx.emit(OrderIntentApproved(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                     side=verdict.side, quantity=verdict.quantity, reference_price=d.price,
                                     reference_ts=d.ts, checks=verdict.checks))

    async def on_order_update(self, ctx: Context) -> None:
        """Settle a finished order: release its reservation, book what actually filled."""
        o: OrderUpdated = ctx.message.payload
        if not o.status.is_terminal:
            return
        await self._cash(ctx)  # lock order as in on_decision (balances, then position): no deadlock
        pos = await self._position_row(ctx, o.exchange, o.symbol)
        if pos.pending_client_order_id != o.client_order_id:
            return  # not ours to settle (already settled, or placed before this projection existed)
        _, quote = split_symbol(o.symbol)
        fees_in_quote = o.fees if o.fee_currency in (None, quote) else Decimal(0)
        if o.side is Side.BUY:
            cash_delta, qty_delta = -(o.quote_spent + fees_in_quote), o.filled_quantity
        else:
            cash_delta, qty_delta = o.quote_spent - fees_in_quote, -o.filled_quantity
        await self._add_cash(ctx, pos.reserved_cash + cash_delta)
        await ctx.conn.execute(update(risk_positions).where(
            risk_positions.c.exchange == o.exchange, risk_positions.c.symbol == o.symbol,
        ).values(quantity=risk_positions.c.quantity + qty_delta, pending_client_order_id=None, reserved_cash=0))

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if isinstance(cmd, SetRiskProfile):
            await self._set_profile(ctx, cmd)
            return
        halted = isinstance(cmd, HaltTrading)
        assert halted or isinstance(cmd, ResumeTrading)
        values = {"scope": GLOBAL, "halted": halted, "reason": cmd.reason, "updated_by": cmd.actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(risk_state).values(values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        confirmation = TradingHalted if halted else TradingResumed
        ctx.emit(confirmation(actor=cmd.actor, reason=cmd.reason))

    async def _set_profile(self, ctx: Context, cmd: SetRiskProfile) -> None:
        previous = (await ctx.conn.execute(select(risk_profile_state.c.profile).where(
            risk_profile_state.c.scope == GLOBAL).with_for_update())).scalar_one_or_none()
        values = {"scope": GLOBAL, "profile": cmd.profile.value, "updated_by": cmd.actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(risk_profile_state).values(values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        ctx.emit(RiskProfileChanged(actor=cmd.actor, reason=cmd.reason, profile=cmd.profile,
                                    previous=RiskProfile(previous) if previous else self.settings.risk_profile))
