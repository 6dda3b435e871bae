"""Risk's behaviour as pure decisions over a ``RiskBook``: approve or refuse a decision (sizing, reservation),
settle a finished order (what really executed, the losing streak), mark held positions and watch the drawdown
(an emergency halt runs the configured action), and the operator's controls.

Cash is reserved when a buy is approved and settled when its order ends, so two approvals can never spend the
same cash. Every terminal order is settled — protective and liquidation orders too — so the book follows what
was really executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from quorum.domain.position import fill_effect
from quorum.events.base import Envelope
from quorum.events.control import (
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
    RiskProfileChanged,
    SetRiskProfile,
    TradingHalted,
    TradingResumed,
)
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderIntentApproved, OrderIntentRefused, OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.ids import client_order_id
from quorum.outcome import Audit, Emit, Outcome
from quorum.risk import drawdown, killswitch
from quorum.risk.book import Halt, ProfileChoice, RiskBook
from quorum.risk.killswitch import GLOBAL as ALL_SYMBOLS
from quorum.risk.profiles import ProfileLimits, RiskConfig
from quorum.risk.sizing import MarketRules, TradeIntent, assess
from quorum.types import Action, RiskProfile, Side, TradingMode, split_symbol

SYSTEM = "SYSTEM:risk"
ZERO = Decimal(0)
DEFAULT_RULES = MarketRules(lot_step=Decimal("0.00001"), min_notional=Decimal("10"))


@dataclass(frozen=True)
class RiskParams:
    config: RiskConfig = field(default_factory=RiskConfig)
    rules: Mapping[str, MarketRules] = field(default_factory=dict)
    default_rules: MarketRules = DEFAULT_RULES
    default_profile: RiskProfile = RiskProfile.MEDIUM
    trading_mode: TradingMode = TradingMode.PAPER

    def rules_for(self, symbol: str) -> MarketRules:
        return self.rules.get(symbol, self.default_rules)

    def limits(self, book: RiskBook) -> ProfileLimits:
        return self.config.profiles[book.active_profile(self.default_profile)]


@dataclass(frozen=True)
class RiskCheckRecorded:
    """The verdict on one decision, check by check (``risk_checks``)."""

    decision_id: Any
    exchange: str
    symbol: str
    side: Side
    approved: bool
    reason_code: str | None
    quantity: Decimal | None
    checks: dict[str, str]


def decide(book: RiskBook, message: Envelope[Any], params: RiskParams, now: datetime) -> Outcome[RiskBook]:
    payload = message.payload
    if isinstance(payload, DecisionMade):
        return on_decision(book, payload, message.event_id, params)
    if isinstance(payload, OrderUpdated):
        return on_order_update(book, payload, message.event_id, params)
    if isinstance(payload, CandleClosed):
        return on_candle(book, payload, message.event_id, params)
    return on_control(book, payload, message.event_id, params)


def _audit(book: RiskBook, params: RiskParams, event_id: Any, actor: str, action: str,
           details: dict[str, Any]) -> Audit:
    return Audit(actor=actor, action=action, mode=params.trading_mode.value,
                 risk_profile=book.active_profile(params.default_profile).value, status="CONFIRMED",
                 details=details, key=f"{event_id}:{action}")


# --- decisions ----------------------------------------------------------------------------------------------

def on_decision(book: RiskBook, d: DecisionMade, decision_id: Any, params: RiskParams) -> Outcome[RiskBook]:
    if d.action is Action.HOLD:
        return Outcome(book)
    book = book.with_position(replace(book.position(d.exchange, d.symbol), last_price=d.price))
    book, portfolio = book.view(d.ts)
    verdict = assess(
        TradeIntent(symbol=d.symbol, action=d.action, intent=d.intent, fraction=d.fraction, price=d.price,
                    confidence=d.confidence, stop_loss=d.stop_loss, take_profit=d.take_profit, atr=d.atr),
        portfolio, params.limits(book), params.rules_for(d.symbol), params.config)
    checks = verdict.checks_dict()
    check = RiskCheckRecorded(decision_id, d.exchange, d.symbol, verdict.side, verdict.approved,
                              verdict.reason_code, verdict.quantity, checks)
    if not verdict.approved:
        refused = OrderIntentRefused(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                     side=verdict.side, reason_code=verdict.reason_code or "UNKNOWN")
        return Outcome(book, (Emit(refused),), (check,))
    assert verdict.quantity is not None
    reserve = verdict.quantity * d.price * (1 + params.config.fee_rate) if verdict.side is Side.BUY else ZERO
    pos = replace(book.position(d.exchange, d.symbol), pending_client_order_id=client_order_id(decision_id),
                  reserved_cash=reserve)
    book = replace(book.with_position(pos), cash=book.cash - reserve)
    approved = OrderIntentApproved(decision_id=decision_id, exchange=d.exchange, symbol=d.symbol,
                                   side=verdict.side, intent=d.intent, quantity=verdict.quantity,
                                   reference_price=d.price, reference_ts=d.ts, stop_loss=verdict.stop_loss,
                                   take_profit=verdict.take_profit, checks=checks)
    return Outcome(book, (Emit(approved),), (check,))


# --- settlement ---------------------------------------------------------------------------------------------

def on_order_update(book: RiskBook, o: OrderUpdated, event_id: Any, params: RiskParams) -> Outcome[RiskBook]:
    """Settle a finished order: release its reservation (if risk made one), book what actually executed, and
    feed a completed sell's profit or loss to the kill switch's losing streak."""
    if not o.status.is_terminal:
        return Outcome(book)
    pos = book.position(o.exchange, o.symbol)
    base, _ = split_symbol(o.symbol)
    mine = pos.pending_client_order_id == o.client_order_id
    release = pos.reserved_cash if mine else ZERO
    effect = fill_effect(o.side, o.filled_quantity, o.quote_spent, o.fees, o.fee_currency, base)
    if o.side is Side.BUY:
        qty, cost, pnl = pos.quantity + effect.base, pos.cost - effect.quote, None
    else:
        sold = min(effect.quantity, pos.quantity)
        share = pos.cost * sold / pos.quantity if pos.quantity > 0 else ZERO
        qty, cost = pos.quantity - sold, pos.cost - share
        pnl = effect.quote - share if o.filled_quantity > 0 else None
    pos = replace(pos, quantity=qty, cost=cost, reserved_cash=pos.reserved_cash - release,
                  pending_client_order_id=None if mine else pos.pending_client_order_id)
    book = replace(book.with_position(pos), cash=book.cash + release + effect.quote)
    if pnl is None:
        return Outcome(book)
    return _record_trade(book, o.symbol, pnl, event_id, params)


def _record_trade(book: RiskBook, symbol: str, pnl: Decimal, event_id: Any,
                  params: RiskParams) -> Outcome[RiskBook]:
    state, tripped = killswitch.record_closed_trade(book.kill.state, symbol, pnl,
                                                   params.config.kill_after_consecutive_losses)
    book = replace(book, kill=book.kill.changed(state, SYSTEM, frozenset(tripped)))
    events, records = [], []
    for scope in tripped:
        reason = state.reasons.get(scope, "losing streak")
        events.append(Emit(KillSwitchEngaged(actor=SYSTEM, reason=reason,
                                             symbol=None if scope == ALL_SYMBOLS else scope, automatic=True),
                           key=f"auto-kill:{scope}"))
        records.append(_audit(book, params, event_id, SYSTEM, "kill_switch_engage",
                              {"scope": scope, "reason": reason, "automatic": True}))
    return Outcome(book, tuple(events), tuple(records))


# --- marks and drawdown -------------------------------------------------------------------------------------

def holds(book: RiskBook, exchange: str, symbol: str) -> bool:
    pos = book.positions.get((exchange, symbol))
    return pos is not None and pos.is_held


def on_candle(book: RiskBook, c: CandleClosed, event_id: Any, params: RiskParams) -> Outcome[RiskBook]:
    """Mark a held symbol and check the portfolio's drawdown against the active profile's limit."""
    if not holds(book, c.exchange, c.symbol):
        return Outcome(book)  # not held: nothing to mark (most candles)
    book = book.with_position(replace(book.position(c.exchange, c.symbol), last_price=c.close))
    book, portfolio = book.view(c.ts)
    limits = params.limits(book)
    state, breached = drawdown.observe(book.drawdown, portfolio.equity, limits.max_drawdown_pct)
    book = replace(book, drawdown=state)
    if not breached:
        return Outcome(book)
    return _emergency(book, state, limits, event_id, params)


def _emergency(book: RiskBook, state: drawdown.DrawdownState, limits: ProfileLimits, event_id: Any,
               params: RiskParams) -> Outcome[RiskBook]:
    action = params.config.drawdown_action
    plan = drawdown.halt_plan(action)
    reason = (f"drawdown {state.drawdown_pct:.2f}% from peak {state.peak} breached the "
              f"{limits.max_drawdown_pct}% limit")
    book = replace(book, halt=Halt(True, True, reason, SYSTEM))
    events = [Emit(DrawdownHaltTriggered(peak=state.peak, equity=state.equity, drawdown_pct=state.drawdown_pct,
                                         limit_pct=limits.max_drawdown_pct, action=action.value)),
              Emit(TradingHalted(actor=SYSTEM, reason=reason))]
    if plan.close_positions:
        events.append(Emit(CloseAllPositions(actor=SYSTEM, reason=reason)))
    elif plan.cancel_orders:
        events.append(Emit(CancelAllOrders(actor=SYSTEM, reason=reason)))
    audit = _audit(book, params, event_id, SYSTEM, "drawdown_halt", {
        "action": action.value, "peak": str(state.peak), "equity": str(state.equity),
        "drawdown_pct": str(state.drawdown_pct)})
    return Outcome(book, tuple(events), (audit,))


# --- controls -----------------------------------------------------------------------------------------------

def on_control(book: RiskBook, cmd: Any, event_id: Any, params: RiskParams) -> Outcome[RiskBook]:
    if isinstance(cmd, HaltTrading):
        return Outcome(replace(book, halt=Halt(True, book.emergency, cmd.reason, cmd.actor)),
                       (Emit(TradingHalted(actor=cmd.actor, reason=cmd.reason)),))
    if isinstance(cmd, ResumeTrading):
        if book.emergency:
            return _refuse(book, cmd, "EMERGENCY_HALT",
                           "an emergency halt is lifted only by clearing it (with confirmation)")
        return Outcome(replace(book, halt=Halt(False, False, cmd.reason, cmd.actor)),
                       (Emit(TradingResumed(actor=cmd.actor, reason=cmd.reason)),))
    if isinstance(cmd, ClearEmergencyHalt):
        if not book.emergency:
            return _refuse(book, cmd, "NO_EMERGENCY_HALT", "there is no emergency halt to clear")
        cleared = drawdown.clear(book.drawdown) if book.drawdown is not None else None
        return Outcome(replace(book, halt=Halt(False, False, cmd.reason, cmd.actor), drawdown=cleared),
                       (Emit(EmergencyHaltCleared(actor=cmd.actor, reason=cmd.reason)),))
    if isinstance(cmd, EngageKillSwitch):
        state = killswitch.engage(book.kill.state, cmd.symbol, cmd.reason or "operator")
        return Outcome(replace(book, kill=book.kill.changed(state, cmd.actor)),
                       (Emit(KillSwitchEngaged(actor=cmd.actor, reason=cmd.reason, symbol=cmd.symbol)),))
    if isinstance(cmd, ReleaseKillSwitch):
        state = killswitch.release(book.kill.state, cmd.symbol)
        return Outcome(replace(book, kill=book.kill.changed(state, cmd.actor)),
                       (Emit(KillSwitchReleased(actor=cmd.actor, reason=cmd.reason, symbol=cmd.symbol)),))
    assert isinstance(cmd, SetRiskProfile), f"risk does not handle {type(cmd).__name__}"
    previous = book.active_profile(params.default_profile)
    return Outcome(replace(book, profile=ProfileChoice(cmd.profile, cmd.actor)),
                   (Emit(RiskProfileChanged(actor=cmd.actor, reason=cmd.reason, profile=cmd.profile,
                                            previous=previous)),))


def _refuse(book: RiskBook, cmd: Any, code: str, detail: str) -> Outcome[RiskBook]:
    return Outcome(book, (Emit(ControlRefused(command_type=cmd.event_type(), reason_code=code, detail=detail)),))
