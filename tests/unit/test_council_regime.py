"""Strategies restricted by market regime: they abstain outside their regimes, every decision records the regime it
saw, and the regime rule is part of the configuration (its hash)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError
from quorum.backtest.config import RunnerConfig
from quorum.clock import TestClock
from quorum.council import decide as council
from quorum.council.base import FeatureRow, RiskTag, StrategyInput
from quorum.council.engine import Council, Filtered, Outcome, SymbolControl, regime_seen
from quorum.council.settings import CouncilConfig
from quorum.council.strategies import TrendRegime, parse_strategies
from quorum.events.base import decode, new_envelope
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade
from quorum.learning.regime import Regime, RegimeRule
from quorum.types import Action, CouncilMode, RiskProfile

from tests.council_scripts import Fixed, Raising

TS = datetime(2024, 1, 1, tzinfo=UTC)
TRENDING_UP = {"close_over_ema_480": 0.05, "ema_slope_480_60": 3e-4, "atr_14_z100": 0.0, "rv_20": 0.005}
RANGING = {**TRENDING_UP, "close_over_ema_480": 0.0}
WARMING_UP = {**TRENDING_UP, "close_over_ema_480": None}
COUNCIL = SymbolControl(CouncilMode.COUNCIL, 0.4)


def inp(values: dict[str, float | None]) -> StrategyInput:
    return StrategyInput("binance", "BTC/USDT", "1h", (FeatureRow(TS, Decimal(100), values),))


def trend_follower(**kw: object) -> Fixed:
    return Fixed(name="trend_only", direction=Action.BUY, confidence=0.9, risk_tag=RiskTag.LOW,
                 regimes=(Regime.TRENDING_UP,), **kw)


def decide(c: Council, values: dict[str, float | None], control: SymbolControl = COUNCIL) -> Outcome:
    return c.decide(inp(values), control=control, profile=RiskProfile.MEDIUM)


def test_a_strategy_restricted_to_trending_up_abstains_when_ranging_and_votes_when_trending_up() -> None:
    c = Council([trend_follower()])

    ranging, trending = decide(c, RANGING), decide(c, TRENDING_UP)

    vote = ranging.votes[0]
    assert (vote.signal.direction, vote.eligible, vote.filtered_reason) == (
        Action.HOLD, False, Filtered.REGIME_EXCLUDED)
    assert vote.signal.reason_codes == ("REGIME_EXCLUDED",)
    assert vote.signal.metadata == {"regime": "ranging"}
    assert (ranging.regime, ranging.action) == (Regime.RANGING, Action.HOLD)
    assert (trending.regime, trending.action) == (Regime.TRENDING_UP, Action.BUY)
    assert trending.votes[0].eligible and trending.votes[0].signal.direction is Action.BUY


def test_an_excluded_strategy_leaves_the_quorum_so_it_does_not_dilute_the_others() -> None:
    c = Council([trend_follower(), Fixed(name="everywhere", direction=Action.BUY, confidence=0.6,
                                         risk_tag=RiskTag.LOW)])

    out = decide(c, RANGING)

    assert out.agreement[Action.BUY] == pytest.approx(0.6)  # not 0.3: the excluded weight is not in the denominator
    assert out.action is Action.BUY


def test_an_excluded_strategy_is_not_asked() -> None:
    c = Council([Raising(name="broken", regimes=(Regime.TRENDING_UP,))])

    out = decide(c, RANGING)

    assert out.failures == ()
    assert out.votes[0].filtered_reason == Filtered.REGIME_EXCLUDED


def test_while_the_regime_warms_up_nobody_is_restricted() -> None:
    out = decide(Council([trend_follower()]), WARMING_UP)

    assert out.regime is None
    assert out.votes[0].eligible and out.action is Action.BUY


def test_in_solo_mode_an_excluded_solo_strategy_holds_and_says_why() -> None:
    out = decide(Council([trend_follower()]), RANGING, SymbolControl(CouncilMode.SOLO, 0.4, "trend_only"))

    assert out.action is Action.HOLD
    assert "SOLO_FILTERED_REGIME_EXCLUDED" in out.reason_codes


def test_the_council_decides_in_the_regime_of_its_own_rule() -> None:
    strict = Council([trend_follower()], regime_rule=RegimeRule(distance_min=0.1))

    assert decide(strict, TRENDING_UP).regime is Regime.RANGING


def test_a_predicted_regime_takes_precedence_over_the_rule() -> None:
    assert regime_seen(RANGING, RegimeRule()) is Regime.RANGING
    assert regime_seen(RANGING, RegimeRule(), predicted=Regime.HIGH_VOLATILITY) is Regime.HIGH_VOLATILITY


# --- the decision records it ----------------------------------------------------------------------------------

def _decision(values: dict[str, float | None]) -> DecisionMade:
    params = council.CouncilParams(Council([trend_follower()]), COUNCIL)
    p = PredictionMade(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=TS, model_name="m",
                       model_version="m@1", feature_set="fs", horizon=1, p_up=0.6)
    out = council.on_prediction(council.CouncilBook(), p, inp(values), "evt-1", params)
    decision = next(e.payload for e in out.events if isinstance(e.payload, DecisionMade))
    assert isinstance(decision, DecisionMade)
    return decision


def test_every_decision_records_the_regime_it_saw_and_the_abstention() -> None:
    ranging, warming = _decision(RANGING), _decision(WARMING_UP)

    assert ranging.regime == "ranging"
    assert (ranging.votes[0].action, ranging.votes[0].eligible, ranging.votes[0].filtered_reason) == (
        Action.HOLD, False, "REGIME_EXCLUDED")
    assert warming.regime is None


def test_a_decision_message_without_a_regime_still_decodes() -> None:
    envelope = new_envelope(_decision(RANGING), clock=TestClock(TS), source="council", key="k")
    raw = json.loads(envelope.to_bytes())
    del raw["payload"]["regime"]  # as a council before this field published it

    decoded = decode(json.dumps(raw).encode())

    assert decoded.payload.regime is None
    assert decoded.schema_version == envelope.schema_version


# --- configuration --------------------------------------------------------------------------------------------

def test_regimes_are_configured_per_strategy_from_json_and_unknown_ones_are_refused() -> None:
    trend, rsi = parse_strategies('[{"type": "trend", "regimes": ["trending_up", "trending_down"]}, {"type": "rsi"}]')

    assert trend.regimes == (Regime.TRENDING_UP, Regime.TRENDING_DOWN)
    assert rsi.regimes is None
    with pytest.raises(ValidationError, match="sideways"):
        parse_strategies('[{"type": "trend", "regimes": ["sideways"]}]')
    with pytest.raises(ValidationError, match="regimes"):
        parse_strategies('[{"type": "trend", "regimes": []}]')


def test_the_configured_rule_reaches_the_council() -> None:
    rule = RegimeRule(atr_z_max=3.0)

    assert CouncilConfig(regime_rule=rule).params().council.regime_rule == rule


def test_the_configuration_hash_changes_with_the_regime_rule_and_with_a_strategys_regimes() -> None:
    default = RunnerConfig.from_env()
    other_rule = RunnerConfig.from_env(council={"regime_rule": {"atr_z_max": 3.0}})
    restricted = RunnerConfig.from_env(council={"strategies": [TrendRegime(regimes=(Regime.TRENDING_UP,))]})
    unrestricted = RunnerConfig.from_env(council={"strategies": [TrendRegime()]})

    assert other_rule.config_hash != default.config_hash
    assert other_rule.config_hash == RunnerConfig.from_env(council={"regime_rule": {"atr_z_max": 3.0}}).config_hash
    assert restricted.config_hash != unrestricted.config_hash
