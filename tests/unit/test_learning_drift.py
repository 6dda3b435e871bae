"""Drift of a served model: PSI of its inputs against a reference distribution, the rolling error of its expected
returns against the realised ones, and DriftMonitor's alerts (limits, warm-up, cooldown, determinism)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from quorum.learning.dataset import SYMBOL_CODE, Dataset, DatasetSpec
from quorum.learning.drift import (
    FEATURE_DRIFT,
    LIVE,
    PREDICTION_ERROR,
    TRAINING,
    DriftAlert,
    DriftLimits,
    DriftMonitor,
    DriftReference,
    Observation,
    population_stability,
    reference_of,
    reference_of_dataset,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
COLUMNS = ("a", "b")


def _normal(n: int, loc: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=loc, size=(n, len(COLUMNS)))


def _stream(rows: np.ndarray, *, start: int = 0, expected: float | None = None,
            closes: np.ndarray | None = None) -> list[Observation]:
    """One series, hourly: each row a candle's inputs, with the model's expected return and the close."""
    prices = closes if closes is not None else np.full(len(rows), 100.0)
    return [Observation(("binance", "BTC/USDT", "1h"), T0 + (start + i) * HOUR, HOUR, float(prices[i]),
                        dict(zip(COLUMNS, map(float, row), strict=True)), expected)
            for i, row in enumerate(rows)]


def _run(monitor: DriftMonitor, observations: list[Observation]) -> list[DriftAlert]:
    alerts = []
    for obs in observations:
        step = monitor.observe(obs)
        monitor.commit(step)
        if step.alert is not None:
            alerts.append(step.alert)
    return alerts


# --- references and PSI ----------------------------------------------------------------------------------------

def test_quantile_bins_split_the_reference_rows_evenly() -> None:
    ref = reference_of(_normal(2000), COLUMNS, bins=10)

    assert [len(e) for e in ref.edges] == [9, 9]
    assert all(s == pytest.approx(0.1, abs=1e-9) for shares in ref.shares for s in shares)
    assert ref.rows == 2000 and ref.source == TRAINING


def test_a_column_with_few_values_gets_fewer_bins_and_shares_that_still_sum_to_one() -> None:
    X = np.column_stack([np.tile([0.0, 1.0, 1.0, 2.0], 50), np.arange(200.0)])

    ref = reference_of(X, COLUMNS, bins=10)

    assert ref.edges[0] == (1.0, 2.0)
    assert ref.shares[0] == pytest.approx((0.25, 0.5, 0.25))
    assert math.isclose(sum(ref.shares[1]), 1.0)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    ref = reference_of(_normal(5000, seed=1), COLUMNS)

    same = population_stability(ref, _normal(2000, seed=2))
    shifted = population_stability(ref, _normal(2000, loc=1.0, seed=2))

    assert max(same.values()) < 0.02
    assert min(shifted.values()) > 0.25


def test_a_reference_round_trips_through_json() -> None:
    ref = reference_of(_normal(300), COLUMNS, bins=5, source=LIVE)

    assert DriftReference.from_json(ref.to_json()) == ref


def test_a_dataset_reference_covers_its_feature_columns_but_not_the_symbol_code() -> None:
    frame = pl.DataFrame({"ts": np.arange(100), "a": np.linspace(0, 1, 100), "b": np.linspace(5, 6, 100),
                          SYMBOL_CODE: np.tile([0.0, 1.0], 50)})
    ds = Dataset(DatasetSpec(symbols=("BTC/USDT", "ETH/USDT"), symbol_feature=True), frame,
                 ("a", "b", SYMBOL_CODE), "hash")

    ref = reference_of_dataset(ds, bins=4)

    assert ref.columns == COLUMNS and ref.rows == 100 and ref.source == TRAINING


@pytest.mark.parametrize(("X", "message"), [
    (np.ones((5, 2)), "rows >= 10"),
    (np.full((20, 2), np.nan), "NaN"),
    (np.ones((20, 3)), r"\(rows >= 10, 2\)"),
])
def test_a_reference_of_bad_rows_is_refused_saying_why(X: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reference_of(X, COLUMNS, bins=10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"psi_limit": 0}, "positive"), ({"window": 1}, "window 1"), ({"reference_rows": 5}, "reference"),
    ({"cooldown": timedelta(hours=-1)}, "cooldown"),
])
def test_bad_limits_are_refused_saying_which(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftLimits(**kwargs)


# --- the monitor -----------------------------------------------------------------------------------------------

LIMITS = DriftLimits(window=300, error_window=50, reference_rows=500, bins=10, cooldown=timedelta(hours=100))
"""Windows large enough that sampling noise stays well under the PSI limit (about 9 * (1/300 + 1/500) = 0.05)."""


def test_a_stable_stream_raises_no_alert() -> None:
    monitor = DriftMonitor(COLUMNS, LIMITS)

    assert _run(monitor, _stream(_normal(2000, seed=3))) == []
    assert monitor.reference_source == LIVE


def test_a_shifted_feature_distribution_raises_feature_drift_naming_the_feature() -> None:
    rows = _normal(1500, seed=4)
    rows[1000:, 1] += 1.0  # b moves after 1000 rows (the reference is the first 500); a stays put
    monitor = DriftMonitor(COLUMNS, LIMITS)

    alerts = _run(monitor, _stream(rows))

    assert alerts, "the shift went unnoticed"
    first = alerts[0]
    assert first.reasons == (FEATURE_DRIFT,) and list(first.psi) == ["b"] and first.reference == LIVE
    assert first.max_psi is not None and first.max_psi > LIMITS.psi_limit and first.rows == LIMITS.window
    assert T0 + 1000 * HOUR < first.at < T0 + 1300 * HOUR


def test_alerts_are_at_least_a_cooldown_apart_in_candle_time() -> None:
    rows = _normal(1500, seed=5)
    rows[500:] += 3.0
    alerts = _run(DriftMonitor(COLUMNS, LIMITS), _stream(rows))

    gaps = [b.at - a.at for a, b in zip(alerts, alerts[1:], strict=False)]
    assert len(alerts) >= 3 and all(g >= LIMITS.cooldown for g in gaps)


def test_a_training_reference_is_judged_from_the_first_full_window() -> None:
    ref = reference_of(_normal(2000, seed=6), COLUMNS)
    monitor = DriftMonitor(COLUMNS, LIMITS, ref)

    alerts = _run(monitor, _stream(_normal(LIMITS.window + 10, loc=1.5, seed=7)))

    assert alerts[0].at == T0 + (LIMITS.window - 1) * HOUR and alerts[0].reference == TRAINING


def test_the_same_inputs_give_the_same_alerts() -> None:
    rows = _normal(1500, seed=8)
    rows[800:, 0] *= 3

    assert _run(DriftMonitor(COLUMNS, LIMITS), _stream(rows)) == _run(DriftMonitor(COLUMNS, LIMITS), _stream(rows))


def test_observing_changes_nothing_until_committed() -> None:
    ref = reference_of(_normal(2000, seed=9), COLUMNS)
    shifted = _stream(_normal(LIMITS.window, loc=2.0, seed=10))
    monitor = DriftMonitor(COLUMNS, LIMITS, ref)
    _run(monitor, shifted[:-1])

    first, again = monitor.observe(shifted[-1]), monitor.observe(shifted[-1])

    assert first.alert is not None and first.alert == again.alert


def test_rows_still_warming_up_are_left_out() -> None:
    warming = [Observation(("binance", "BTC/USDT", "1h"), T0 + i * HOUR, HOUR, 100.0, {"a": None, "b": 1.0}, None)
               for i in range(1000)]
    monitor = DriftMonitor(COLUMNS, LIMITS)

    assert _run(monitor, warming) == [] and monitor.reference is None


def test_predictions_worse_than_predicting_no_move_raise_prediction_error() -> None:
    rng = np.random.default_rng(11)
    closes = 100 * np.exp(np.cumsum(rng.normal(scale=0.01, size=300)))
    monitor = DriftMonitor(COLUMNS, LIMITS)

    alerts = _run(monitor, _stream(_normal(300, seed=12), expected=0.05, closes=closes))  # +5 % every hour

    assert alerts and alerts[0].reasons == (PREDICTION_ERROR,)
    assert alerts[0].error_ratio is not None and alerts[0].error_ratio > 10 and alerts[0].error_rows == 50


def test_modest_predictions_on_a_random_walk_raise_no_error_alert() -> None:
    rng = np.random.default_rng(13)
    closes = 100 * np.exp(np.cumsum(rng.normal(scale=0.01, size=300)))

    assert _run(DriftMonitor(COLUMNS, LIMITS), _stream(_normal(300, seed=14), expected=0.001, closes=closes)) == []


def test_a_prediction_is_scored_only_by_the_candle_its_horizon_later() -> None:
    """Across a gap (the next candle missing) there is no realised return to score."""
    obs = _stream(_normal(3), expected=0.5, closes=np.array([100.0, 110.0, 121.0]))
    gapped = [obs[0], Observation(obs[1].series, obs[1].ts + HOUR, HOUR, 110.0, obs[1].values, 0.5)]
    monitor = DriftMonitor(COLUMNS, LIMITS)

    monitor.commit(monitor.observe(obs[0]))
    scored = monitor.observe(obs[1])
    assert scored.error == pytest.approx(((0.5 - math.log(1.1)) ** 2, math.log(1.1) ** 2))

    other = DriftMonitor(COLUMNS, LIMITS)
    other.commit(other.observe(gapped[0]))
    assert other.observe(gapped[1]).error is None
