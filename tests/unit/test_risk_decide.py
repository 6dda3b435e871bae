"""Risk's decisions without infrastructure: arrange a book, feed one message, assert the events and the new book."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

from quorum.clock import TestClock
from quorum.events.base import new_envelope
from quorum.events.control import (
    CloseAllPositions,
    ControlRefused,
    DrawdownHaltTriggered,
    EngageKillSwitch,
    HaltTrading,
    KillSwitchEngaged,
    ReleaseKillSwitch,
    ResumeTrading,
    SetRiskProfile,
    TradingHalted,
)
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderIntentApproved, OrderIntentRefused, OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.ids import client_order_id
from quorum.outcome import Audit, Outcome
from quorum.risk.book import RiskBook, RiskPosition
from quorum.risk.decide import RiskCheckRecorded, RiskParams, decide
from quorum.risk.profiles import DrawdownAction, RiskConfig
from quorum.types import Action, CouncilMode, Intent, OrderStatus, OrderType, RiskProfile, Side, TradingMode

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
PARAMS = RiskParams()
SYMBOL = "BTC/USDT"


def message(payload: Any) -> Any:
    return new_envelope(payload, clock=TestClock(T0), source="test", key=uuid4(), event_time=T0)


def run(book: RiskBook, payload: Any, params: RiskParams = PARAMS) -> tuple[Outcome[RiskBook], Any]:
    env = message(payload)
    return decide(book, env, params, T0), env


def decision(action: Action = Action.BUY, intent: Intent = Intent.ENTRY, price: str = "100",
             stop: str | None = "95", fraction: str = "1") -> DecisionMade:
    return DecisionMade(exchange="binance", symbol=SYMBOL, timeframe="1h", ts=T0, mode=CouncilMode.SOLO,
                        action=action, intent=intent, fraction=Decimal(fraction), confidence=0.9, threshold=0.4,
                        votes=(), feature_set="fs", price=Decimal(price),
                        stop_loss=Decimal(stop) if stop else None)


def update(coid: str, side: Side, filled: str, price: str, fee: str = "0", status: OrderStatus = OrderStatus.FILLED,
           fee_currency: str | None = "USDT") -> OrderUpdated:
    qty = Decimal(filled)
    return OrderUpdated(client_order_id=coid, mode=TradingMode.PAPER, exchange="binance", symbol=SYMBOL, side=side,
                        order_type=OrderType.MARKET, quantity=max(qty, Decimal("0.001")), status=status,
                        previous_status=OrderStatus.ACCEPTED, filled_quantity=qty,
                        average_price=Decimal(price) if qty else None, fees=Decimal(fee), fee_currency=fee_currency,
                        quote_spent=qty * Decimal(price))


def candle(close: str) -> CandleClosed:
    c = Decimal(close)
    return CandleClosed(exchange="binance", symbol=SYMBOL, timeframe="1h", ts=T0, open=c, high=c, low=c, close=c,
                        volume=Decimal(10))


def holding(qty: str, cost: str, cash: str = "9000", **kw: Any) -> RiskBook:
    pos = RiskPosition("binance", SYMBOL, Decimal(qty), Decimal(cost), last_price=Decimal("100"), **kw)
    return RiskBook(cash=Decimal(cash), positions={pos.key: pos})


def payloads(outcome: Outcome[RiskBook]) -> list[Any]:
    return [e.payload for e in outcome.events]


def test_an_approved_entry_reserves_its_cost_and_fees_and_names_the_pending_order() -> None:
    out, env = run(RiskBook(cash=Decimal(10000)), decision())
    [approved] = payloads(out)
    assert isinstance(approved, OrderIntentApproved) and approved.side is Side.BUY
    pos = out.state.position("binance", SYMBOL)
    reserve = approved.quantity * Decimal(100) * (1 + PARAMS.config.fee_rate)
    assert pos.reserved_cash == reserve and out.state.cash == Decimal(10000) - reserve
    assert pos.pending_client_order_id == client_order_id(env.event_id)
    [check] = [r for r in out.records if isinstance(r, RiskCheckRecorded)]
    assert check.approved and check.quantity == approved.quantity


def test_a_hold_decision_changes_nothing_and_says_nothing() -> None:
    book = RiskBook(cash=Decimal(10000))
    out, _ = run(book, decision(action=Action.HOLD, intent=Intent.NONE))
    assert out.state is book and out.events == () and out.records == ()


def test_a_buy_while_halted_is_refused_with_a_reason_code_and_the_check_is_recorded() -> None:
    halted, _ = run(RiskBook(cash=Decimal(10000)), HaltTrading(actor="USER:t", reason="maintenance"))
    out, _ = run(halted.state, decision())
    [refused] = payloads(out)
    assert isinstance(refused, OrderIntentRefused) and refused.reason_code
    assert out.state.cash == Decimal(10000)
    assert [r.approved for r in out.records if isinstance(r, RiskCheckRecorded)] == [False]


def test_the_first_look_of_a_day_fixes_its_starting_equity() -> None:
    out, _ = run(RiskBook(cash=Decimal(10000)), decision())
    assert list(out.state.day_starts.values()) == [Decimal(10000)]
    again, _ = run(out.state, decision(price="101"))
    assert again.state.day_starts == out.state.day_starts


def test_a_filled_buy_releases_its_reservation_and_books_cost_with_the_quote_fee() -> None:
    approved, env = run(RiskBook(cash=Decimal(10000)), decision())
    coid = client_order_id(env.event_id)
    out, _ = run(approved.state, update(coid, Side.BUY, "1", "100", fee="0.1"))
    pos = out.state.position("binance", SYMBOL)
    assert pos.quantity == 1 and pos.cost == Decimal("100.1") and pos.reserved_cash == 0
    assert pos.pending_client_order_id is None
    assert out.state.cash == Decimal(10000) - Decimal("100.1")


def test_a_base_currency_fee_on_a_buy_reduces_the_quantity_held_not_the_cash() -> None:
    out, _ = run(RiskBook(cash=Decimal(1000)), update("Qx", Side.BUY, "1", "100", fee="0.001", fee_currency="BTC"))
    pos = out.state.position("binance", SYMBOL)
    assert pos.quantity == Decimal("0.999") and out.state.cash == Decimal(900) and pos.cost == Decimal(100)


def test_a_non_terminal_update_settles_nothing() -> None:
    book = holding("1", "100")
    out, _ = run(book, update("Qx", Side.SELL, "0.5", "110", status=OrderStatus.PARTIALLY_FILLED))
    assert out.state is book


def test_a_profitable_sell_takes_cost_pro_rata_and_resets_the_losing_streak() -> None:
    out, _ = run(holding("2", "200"), update("S1", Side.SELL, "1", "120", fee="0.12"))
    pos = out.state.position("binance", SYMBOL)
    assert pos.quantity == 1 and pos.cost == 100
    assert out.state.cash == Decimal(9000) + Decimal(120) - Decimal("0.12")
    assert out.events == ()


def test_a_losing_streak_engages_the_kill_switch_automatically_and_audits_it() -> None:
    params = RiskParams(config=RiskConfig(kill_after_consecutive_losses=2))
    book = holding("4", "400")
    for _ in range(2):
        out, _ = run(book, update("S", Side.SELL, "1", "90"), params)
        book = out.state
    engaged = [p for p in payloads(out) if isinstance(p, KillSwitchEngaged)]
    assert engaged and all(p.automatic for p in engaged)
    assert SYMBOL in book.kill.state.symbols and SYMBOL in book.kill.automatic
    assert any(isinstance(r, Audit) and r.action == "kill_switch_engage" for r in out.records)


def test_releasing_a_kill_switch_forgets_its_automatic_flag_and_streak() -> None:
    engaged, _ = run(RiskBook(cash=Decimal(1)), EngageKillSwitch(actor="USER:t", reason="x", symbol=SYMBOL))
    assert SYMBOL in engaged.state.kill.state.symbols
    released, _ = run(engaged.state, ReleaseKillSwitch(actor="USER:t", reason="ok", symbol=SYMBOL))
    assert released.state.kill.state.symbols == frozenset() and released.state.kill.automatic == frozenset()


def test_a_candle_of_a_symbol_not_held_is_ignored_cheaply() -> None:
    book = RiskBook(cash=Decimal(10000))
    out, _ = run(book, candle("50"))
    assert out.state is book


def test_a_drawdown_breach_latches_an_emergency_halt_and_runs_the_configured_action() -> None:
    params = RiskParams(config=RiskConfig(drawdown_action=DrawdownAction.MARKET_CLOSE_ALL_AND_HALT,
                                          market_close_acknowledged=True))
    peak, _ = run(holding("100", "10000", cash="0"), candle("100"), params)
    out, _ = run(peak.state, candle("50"), params)
    kinds = [type(p) for p in payloads(out)]
    assert kinds == [DrawdownHaltTriggered, TradingHalted, CloseAllPositions]
    assert out.state.emergency and out.state.halted and out.state.drawdown.breached
    later, _ = run(out.state, candle("40"), params)
    assert later.events == ()  # latched: one breach, one halt


def test_resume_is_refused_during_an_emergency_halt() -> None:
    params = RiskParams(config=RiskConfig(drawdown_action=DrawdownAction.HALT_ONLY))
    peak, _ = run(holding("100", "10000", cash="0"), candle("100"), params)
    breached, _ = run(peak.state, candle("50"), params)
    out, _ = run(breached.state, ResumeTrading(actor="USER:t", reason="go"), params)
    [refused] = payloads(out)
    assert isinstance(refused, ControlRefused) and refused.reason_code == "EMERGENCY_HALT"
    assert out.state.halted


def test_switching_the_risk_profile_reports_the_previous_one() -> None:
    out, _ = run(RiskBook(cash=Decimal(1)), SetRiskProfile(actor="USER:t", reason="calm", profile=RiskProfile.LOW))
    [changed] = payloads(out)
    assert changed.previous is RiskProfile.MEDIUM and changed.profile is RiskProfile.LOW
    assert out.state.active_profile(RiskProfile.MEDIUM) is RiskProfile.LOW


def test_the_same_message_on_the_same_book_decides_the_same_way() -> None:
    env = message(decision())
    book = RiskBook(cash=Decimal(10000))
    assert decide(book, env, PARAMS, T0) == decide(book, env, PARAMS, T0)
