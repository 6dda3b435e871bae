"""The RSI strategy's signals and the momentum baseline's probabilities."""

from __future__ import annotations

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.domain.models import MomentumBaseline
from quorum.domain.strategies import RsiStrategy
from quorum.types import Action

RSI = RsiStrategy()
MODEL = MomentumBaseline()
rsi_values = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


# --- RsiStrategy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rsi", [29.99, 20.0, 0.0])
def test_rsi_below_oversold_is_a_buy(rsi: float) -> None:
    signal = RSI.evaluate({"rsi_14": rsi})

    assert (signal.action, signal.reason_codes) == (Action.BUY, ("RSI_OVERSOLD",))


@pytest.mark.parametrize("rsi", [70.01, 80.0, 100.0])
def test_rsi_above_overbought_is_a_sell(rsi: float) -> None:
    signal = RSI.evaluate({"rsi_14": rsi})

    assert (signal.action, signal.reason_codes) == (Action.SELL, ("RSI_OVERBOUGHT",))


@pytest.mark.parametrize("rsi", [30.0, 50.0, 70.0])
def test_rsi_between_the_thresholds_inclusive_is_a_hold_with_no_confidence(rsi: float) -> None:
    signal = RSI.evaluate({"rsi_14": rsi})

    assert (signal.action, signal.confidence, signal.reason_codes) == (Action.HOLD, 0.0, ("RSI_NEUTRAL",))


@pytest.mark.parametrize("features", [{"rsi_14": None}, {}, {"rsi_7": 10.0}], ids=["none", "missing", "other-period"])
def test_rsi_warm_up_is_a_hold(features: dict[str, float | None]) -> None:
    signal = RSI.evaluate(features)

    assert (signal.action, signal.confidence, signal.reason_codes) == (Action.HOLD, 0.0, ("WARMUP",))


def test_strategy_reads_the_rsi_of_its_own_period() -> None:
    signal = RsiStrategy(period=7).evaluate({"rsi_7": 10.0, "rsi_14": 90.0})

    assert signal.action is Action.BUY
    assert signal.producer == "rsi"


def test_custom_thresholds_move_the_decision_boundaries() -> None:
    strict = RsiStrategy(oversold=20.0, overbought=80.0)

    assert strict.evaluate({"rsi_14": 25.0}).action is Action.HOLD
    assert strict.evaluate({"rsi_14": 75.0}).action is Action.HOLD
    assert strict.evaluate({"rsi_14": 19.0}).action is Action.BUY


def test_confidence_starts_at_one_half_past_the_threshold_and_grows_with_the_distance() -> None:
    assert RSI.evaluate({"rsi_14": 29.999999}).confidence == pytest.approx(0.5, abs=1e-6)
    assert RSI.evaluate({"rsi_14": 15.0}).confidence == pytest.approx(1.0)
    assert RSI.evaluate({"rsi_14": 85.0}).confidence == pytest.approx(1.0)
    assert RSI.evaluate({"rsi_14": 0.0}).confidence == 1.0  # capped


@seed(20240101)
@settings(max_examples=200, deadline=None)
@given(rsi=rsi_values)
def test_confidence_is_always_a_probability_and_action_follows_the_thresholds(rsi: float) -> None:
    signal = RSI.evaluate({"rsi_14": rsi})

    assert 0.0 <= signal.confidence <= 1.0
    expected = Action.BUY if rsi < 30 else Action.SELL if rsi > 70 else Action.HOLD
    assert signal.action is expected
    assert (signal.confidence >= 0.5) is (signal.action is not Action.HOLD)


@seed(20240102)
@settings(max_examples=200, deadline=None)
@given(a=rsi_values, b=rsi_values)
def test_more_extreme_rsi_never_lowers_confidence_on_the_same_side(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    s_lo, s_hi = RSI.evaluate({"rsi_14": lo}), RSI.evaluate({"rsi_14": hi})

    if s_lo.action is s_hi.action is Action.BUY:
        assert s_lo.confidence >= s_hi.confidence
    if s_lo.action is s_hi.action is Action.SELL:
        assert s_hi.confidence >= s_lo.confidence


# --- MomentumBaseline -------------------------------------------------------------------------------------

@pytest.mark.parametrize("features", [{"close_over_ema": None}, {}, {"rsi_14": 50.0}],
                         ids=["none", "missing", "other-features"])
def test_baseline_returns_none_during_warm_up(features: dict[str, float | None]) -> None:
    assert MODEL.predict(features) is None


def test_baseline_is_exactly_one_half_when_close_equals_ema() -> None:
    assert MODEL.predict({"close_over_ema": 0.0}) == 0.5


def test_baseline_leans_up_above_the_ema_and_down_below_it() -> None:
    assert MODEL.predict({"close_over_ema": 0.01}) > 0.5 > MODEL.predict({"close_over_ema": -0.01})


def test_baseline_is_strictly_increasing_over_realistic_distances() -> None:
    grid = [i / 1000 for i in range(-300, 301)]
    ps = [MODEL.predict({"close_over_ema": x}) for x in grid]

    assert all(a < b for a, b in zip(ps, ps[1:], strict=False))


def test_baseline_is_symmetric_about_the_ema() -> None:
    for x in (0.001, 0.02, 0.1):
        up, down = MODEL.predict({"close_over_ema": x}), MODEL.predict({"close_over_ema": -x})
        assert up + down == pytest.approx(1.0, abs=1e-15)


@seed(20240103)
@settings(max_examples=200, deadline=None)
@given(a=st.floats(min_value=-1.0, max_value=10.0), b=st.floats(min_value=-1.0, max_value=10.0))
def test_baseline_is_a_monotone_probability_of_close_over_ema(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    p_lo, p_hi = MODEL.predict({"close_over_ema": lo}), MODEL.predict({"close_over_ema": hi})

    assert p_lo is not None and p_hi is not None
    assert 0.0 <= p_lo <= p_hi <= 1.0


def test_a_steeper_slope_is_more_confident_for_the_same_distance() -> None:
    assert MomentumBaseline(slope=80.0).predict({"close_over_ema": 0.01}) > MODEL.predict({"close_over_ema": 0.01})
