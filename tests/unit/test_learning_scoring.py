"""Walk-forward scoring of models and the promotion gate: metrics against hand-computed values, purged folds, and
every check of the verdict both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from quorum.backtest.gates import Criterion, CriterionResult, GateReport
from quorum.backtest.walkforward import Fold
from quorum.learning.dataset import Dataset, DatasetSpec
from quorum.learning.promotion import LearningSettings, verdict
from quorum.learning.scoring import ModelScore, is_better, prediction_metrics, splits
from quorum.times import to_ms

T0 = datetime(2022, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_prediction_metrics_match_hand_computed_values() -> None:
    y = np.array([0.02, -0.01, 0.0, 0.03])
    expected = np.array([0.01, 0.01, -0.01, 0.0])
    p_up = np.array([0.7, 0.6, 0.2, 0.55])

    m = prediction_metrics(y, expected, p_up)

    assert m["rows"] == 4
    assert m["mse"] == pytest.approx((0.01**2 + 0.02**2 + 0.01**2 + 0.03**2) / 4)
    assert m["naive_mse"] == pytest.approx((0.02**2 + 0.01**2 + 0 + 0.03**2) / 4)
    assert m["direction_accuracy"] == 0.75  # up/up, up/down (wrong), down/flat (right: flat is not up), up/up
    assert m["always_up_accuracy"] == 0.5
    assert m["brier"] == pytest.approx(((0.3) ** 2 + 0.6**2 + 0.2**2 + 0.45**2) / 4)
    bins = {b["bin"]: b for b in m["reliability"]}
    assert bins["0.5-0.6"]["rows"] == 1 and bins["0.6-0.7"]["rows"] == 1 and bins["0.7-0.8"]["rows"] == 1
    assert bins["0.2-0.3"]["up_rate"] == 0.0


def _dataset(hours: int, horizon: int = 1) -> Dataset:
    ts = [to_ms(T0 + i * HOUR) for i in range(hours)]
    frame = pl.DataFrame({"ts": ts, "symbol": ["BTC/USDT"] * hours, "close": [100.0] * hours,
                          "f": np.arange(hours, dtype=float), "label_return": [0.0] * hours,
                          "label_up": [0] * hours}, schema_overrides={"label_up": pl.Int8})
    return Dataset(DatasetSpec(symbols=("BTC/USDT",), horizon=horizon), frame, ("f",), "hash")


def test_training_rows_whose_label_reaches_the_test_window_are_purged() -> None:
    ds = _dataset(400, horizon=3)
    fold = Fold(T0, T0 + 200 * HOUR, T0 + 200 * HOUR, T0 + 300 * HOUR)  # no embargo: the purge alone

    [split] = splits(ds, [fold])

    # a row at t is labelled by the close of the candle opening at t + 3h, known at t + 4h: it must not be after
    # the test start, so the last training row opens at 196h
    assert split.train[0] == 0 and split.train[-1] == 196
    assert split.test[0] == 200 and split.test[-1] == 299


def test_a_fold_with_too_few_training_rows_is_left_out() -> None:
    ds = _dataset(100)
    fold = Fold(T0, T0 + 10 * HOUR, T0 + 10 * HOUR, T0 + 50 * HOUR)

    assert splits(ds, [fold]) == []


def _score(mse: float, naive: float, accuracy: float, champion: dict | None = None) -> ModelScore:
    return ModelScore((), {"mse": mse, "naive_mse": naive, "direction_accuracy": accuracy}, champion)


def _gate(asset: str, passed: bool) -> GateReport:
    criterion = Criterion("sharpe", "sharpe", ">=", 2.0)
    return GateReport(asset, "h", passed, (CriterionResult(criterion, 2.5 if passed else 0.1, passed),))


def test_a_challenger_that_beats_naive_the_champion_and_the_gates_is_promoted() -> None:
    score = _score(0.9, 1.0, 0.55, champion={"mse": 0.95, "direction_accuracy": 0.52})

    found = verdict(score, {"BTC/USDT": _gate("BTC/USDT", True)}, LearningSettings(), has_champion=True)

    assert found.promote and found.failed == ()


def test_each_failed_check_keeps_the_challenger_and_is_named() -> None:
    score = _score(1.1, 1.0, 0.50, champion={"mse": 0.95, "direction_accuracy": 0.52})
    gates = {"BTC/USDT": _gate("BTC/USDT", True), "ETH/USDT": _gate("ETH/USDT", False)}

    found = verdict(score, gates, LearningSettings(), has_champion=True)

    assert not found.promote
    assert found.failed == ("beats_naive_mse", "beats_champion", "validation_gates")
    detail = {c.name: c.detail for c in found.checks}
    assert "ETH/USDT (sharpe)" in detail["validation_gates"] and "BTC" not in detail["validation_gates"]


def test_without_a_strategy_backtest_the_gates_fail_unless_they_are_not_required() -> None:
    score = _score(0.9, 1.0, 0.55)

    required = verdict(score, {}, LearningSettings(), has_champion=False)
    optional = verdict(score, {}, LearningSettings(require_gates=False), has_champion=False)

    assert required.failed == ("validation_gates",)
    assert optional.promote


def test_the_primary_metric_decides_which_way_is_better() -> None:
    assert is_better("direction_accuracy", {"direction_accuracy": 0.53}, {"direction_accuracy": 0.52})
    assert not is_better("mse", {"mse": 0.2}, {"mse": 0.1})
    assert not is_better("brier", {"brier": None}, {"brier": 0.1})
