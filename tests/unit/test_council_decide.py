"""The council service's decisions without infrastructure: arrange a book, feed a prediction, a fill or a control,
assert the events and the new book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from quorum.council import decide as council
from quorum.council.base import FeatureRow, PredictionView, RiskTag, StrategyInput
from quorum.council.engine import Council, SymbolControl
from quorum.events.control import ControlRefused, CouncilModeChanged, RiskProfileChanged, SetCouncilMode
from quorum.events.fills import OrderFilled
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade, StrategyDisabled
from quorum.ids import client_order_id
from quorum.types import Action, CouncilMode, Intent, Liquidity, RiskProfile, Side, TradingMode

from tests.council_scripts import FlipFlop, Raising

T0 = datetime(2024, 3, 1, tzinfo=UTC)
PARAMS = council.CouncilParams(Council([FlipFlop(name="flip", risk_tag=RiskTag.LOW), Raising(name="broken")]),
                               SymbolControl(CouncilMode.SOLO, 0.4, "flip"))
KEY = ("binance", "BTC/USDT")


def prediction(i: int = 0) -> PredictionMade:
    return PredictionMade(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0 + timedelta(hours=i),
                          model_name="m", model_version="m@1", feature_set="fs", horizon=1, p_up=0.6)


def inp(p: PredictionMade) -> StrategyInput:
    rows = tuple(FeatureRow(p.ts - timedelta(hours=k), Decimal(100), {"rsi_14": 50.0}) for k in reversed(range(3)))
    return StrategyInput(p.exchange, p.symbol, p.timeframe, rows, (PredictionView("m", "m@1", 1, 0.6),))


def decide(book: council.CouncilBook, i: int = 0) -> Any:
    p = prediction(i)
    return council.on_prediction(book, p, inp(p), f"evt-{i}", PARAMS)


def fill(side: Side, qty: str, coid: str, price: str = "100", final: bool = True) -> OrderFilled:
    return OrderFilled(fill_id=f"f-{coid}-{side.value}", venue="paper", mode=TradingMode.PAPER, client_order_id=coid,
                       exchange="binance", symbol="BTC/USDT", side=side, quantity=Decimal(qty), price=Decimal(price),
                       fee=Decimal("0.1"), fee_currency="USDT", liquidity=Liquidity.TAKER, ts=T0, is_final=final)


def test_a_prediction_becomes_one_decision_and_a_failing_strategy_is_disabled_for_the_symbol() -> None:
    out = decide(council.CouncilBook())
    kinds = [type(e.payload) for e in out.events]
    assert kinds == [StrategyDisabled, DecisionMade]
    assert out.state.disabled[KEY] == frozenset({"broken"})
    again = decide(out.state, 1)
    assert [type(e.payload) for e in again.events] == [DecisionMade]  # disabled: it no longer votes


def test_the_decision_record_names_the_emitted_decision_and_the_campaign_before() -> None:
    out = decide(council.CouncilBook())
    [recorded] = [r for r in out.records if isinstance(r, council.DecisionRecorded)]
    assert recorded.decision is out.events[-1] and not recorded.campaign_before.is_open


def test_a_fill_of_the_councils_entry_opens_the_campaign_under_the_decisions_id() -> None:
    out = decide(council.CouncilBook())
    d = out.events[-1].payload
    assert (d.action, d.intent) == (Action.BUY, Intent.ENTRY)
    book = council.remember_origin(out.state, "decision-1", d)
    opened = council.on_fill(book, fill(Side.BUY, "1", client_order_id("decision-1")))
    campaign = opened.state.campaign(*KEY)
    assert campaign.quantity == 1 and campaign.position_id == "decision-1"
    assert campaign.average_cost == Decimal("100.1")


def test_a_stop_loss_fill_closes_the_campaign_and_scores_it() -> None:
    book = council.remember_origin(council.CouncilBook(), "d1", decide(council.CouncilBook()).events[-1].payload)
    opened = council.on_fill(book, fill(Side.BUY, "1", client_order_id("d1"))).state
    closed = council.on_fill(opened, fill(Side.SELL, "1", "S-stop", price="90"))
    assert not closed.state.campaign(*KEY).is_open
    [score] = closed.records
    assert isinstance(score, council.CampaignClosed) and score.closed.position_id == "d1"
    assert score.closed.return_ < 0


def test_a_hold_decision_places_no_order_to_remember() -> None:
    hold = DecisionMade(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, mode=CouncilMode.SOLO,
                        action=Action.HOLD, confidence=0.0, threshold=0.4, votes=(), feature_set="fs",
                        price=Decimal(1))
    book = council.CouncilBook()
    assert council.remember_origin(book, "x", hold) is book


def test_a_mode_change_for_an_unknown_solo_strategy_is_refused() -> None:
    cmd = SetCouncilMode(actor="USER:t", reason="x", exchange="binance", symbol="BTC/USDT", mode=CouncilMode.SOLO,
                         solo_strategy="nope")
    out = council.on_control(council.CouncilBook(), cmd, PARAMS)
    [refused] = [e.payload for e in out.events]
    assert isinstance(refused, ControlRefused) and refused.reason_code == "UNKNOWN_STRATEGY"
    assert out.state.controls == {}


def test_a_mode_change_sets_the_symbols_control_and_can_re_enable_strategies() -> None:
    disabled = decide(council.CouncilBook()).state
    cmd = SetCouncilMode(actor="USER:t", reason="x", exchange="binance", symbol="BTC/USDT", mode=CouncilMode.OFF,
                         reenable_strategies=True)
    out = council.on_control(disabled, cmd, PARAMS)
    assert isinstance(out.events[0].payload, CouncilModeChanged)
    assert out.state.control("binance", "BTC/USDT", PARAMS.default_control).mode is CouncilMode.OFF
    assert KEY not in out.state.disabled
    off = decide(out.state, 2).events[-1].payload
    assert (off.mode, off.action) == (CouncilMode.OFF, Action.HOLD)


def test_the_risk_profile_risk_announces_is_the_one_decisions_carry() -> None:
    changed = RiskProfileChanged(actor="USER:t", reason="calm", profile=RiskProfile.LOW, previous=RiskProfile.MEDIUM)
    book = council.on_control(council.CouncilBook(), changed, PARAMS).state
    assert decide(book).events[-1].payload.risk_profile is RiskProfile.LOW

