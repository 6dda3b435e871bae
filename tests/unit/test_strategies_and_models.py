"""The momentum baseline's probabilities (the RSI strategy's tests moved to test_council_strategies.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.domain.models import MomentumBaseline

MODEL = MomentumBaseline()


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
