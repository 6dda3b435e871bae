"""The Sharpe-trained position policy: its reward is the Sharpe ratio of its own equity curve net of fees, it learns
on real data in seconds, deterministically, and it saves, loads and refuses bad input."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quorum.indicators import FeatureSetSpec
from quorum.indicators.spec import RealizedVolSpec, RocSpec, RsiSpec
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.policy import (
    PolicySpec,
    SharpePolicy,
    episode_reward,
    equity_curve,
    fit_policy,
)

from tests.support import data_file

HOURLY = 8760.0
FEE = 0.001
SMALL = FeatureSetSpec(indicators=(RsiSpec(period=14), RocSpec(period=12), RealizedVolSpec(period=24)), normalize=())
QUICK = PolicySpec(hidden=(8,), epochs=60, patience=15, learning_rate=0.02)


class Rows:
    """BTC/USDT hourly 2022 as the policy takes it: features, next-bar log returns, one episode."""

    def __init__(self) -> None:
        frames = frames_from_files([data_file("ohlcv", "binance_BTCUSDT_1h.csv")])
        ds = build_dataset(frames, DatasetSpec(symbols=("BTC/USDT",), feature_set=SMALL,
                                               start=datetime(2022, 1, 1, tzinfo=UTC),
                                               end=datetime(2023, 1, 1, tzinfo=UTC)))
        self.columns = ds.feature_columns
        self.feature_set = ds.spec.feature_set.version
        self.X = ds.feature_matrix()
        self.returns = ds.frame.get_column("label_return").to_numpy()
        self.episodes = np.zeros(len(self.returns), dtype=np.int64)

    def fit(self, spec: PolicySpec = QUICK) -> SharpePolicy:
        return fit_policy(spec, self.X, self.returns, self.episodes, self.columns, self.feature_set)


@pytest.fixture(scope="module")
def rows() -> Rows:
    return Rows()


@pytest.fixture(scope="module")
def policy(rows: Rows) -> SharpePolicy:
    return rows.fit()


def independent_sharpe(equity: np.ndarray, initial: float) -> float:
    """Plain numpy on the equity curve: bar returns equity[t] / equity[t-1] - 1, population std, annualised."""
    bar = equity / np.r_[initial, equity[:-1]] - 1.0
    return float(bar.mean() / bar.std() * math.sqrt(HOURLY))


# --- the reward ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [None, 3000])
def test_reward_equals_the_sharpe_of_the_equity_curve(rows: Rows, split: int | None) -> None:
    positions = np.random.default_rng(3).uniform(0.0, 1.0, len(rows.returns))
    episodes = None if split is None else (np.arange(len(rows.returns)) >= split).astype(np.int64)

    reward = episode_reward(positions, rows.returns, FEE, HOURLY, episodes=episodes)
    equity = equity_curve(positions, rows.returns, FEE, initial=1000.0, episodes=episodes)

    assert reward == pytest.approx(independent_sharpe(equity, 1000.0), rel=1e-9)


def test_the_trained_policys_reward_is_the_sharpe_of_its_equity_curve(rows: Rows) -> None:
    trained = rows.fit(QUICK.model_copy(update={"validation_fraction": 0.0}))

    equity = equity_curve(trained.positions(rows.X), rows.returns, FEE, episodes=rows.episodes)

    assert trained.training_reward == pytest.approx(independent_sharpe(equity, 1.0), rel=1e-9)


def test_the_equity_curve_starts_flat_and_pays_the_entry_fee() -> None:
    equity = equity_curve(np.array([1.0, 1.0]), np.log(np.array([1.1, 1.0])), FEE, initial=100.0)

    assert equity == pytest.approx([100.0 * (1.1 - FEE), 100.0 * (1.1 - FEE)], rel=1e-12)


def test_fees_lower_the_reward_when_positions_change(rows: Rows) -> None:
    positions = np.random.default_rng(4).uniform(0.0, 1.0, len(rows.returns))

    free = episode_reward(positions, rows.returns, 0.0, HOURLY)
    paid = episode_reward(positions, rows.returns, FEE, HOURLY)

    assert free > paid


def test_a_riskless_series_has_zero_reward(rows: Rows) -> None:
    assert episode_reward(np.zeros(len(rows.returns)), rows.returns, FEE, HOURLY) == 0.0


# --- training --------------------------------------------------------------------------------------------------


def test_training_beats_the_untrained_policy(policy: SharpePolicy) -> None:
    assert policy.best_epoch > 0
    assert policy.training_reward > policy.initial_reward


def test_positions_stay_within_flat_and_fully_long(policy: SharpePolicy, rows: Rows) -> None:
    extreme = np.vstack([rows.X * 1e6, -rows.X * 1e6, rows.X])

    positions = policy.positions(extreme)

    assert positions.min() >= 0.0 and positions.max() <= 1.0


def test_the_same_seed_gives_identical_positions(policy: SharpePolicy, rows: Rows) -> None:
    again = rows.fit()
    other_seed = rows.fit(QUICK.model_copy(update={"seed": QUICK.seed + 1}))

    assert np.array_equal(again.positions(rows.X), policy.positions(rows.X))
    assert not np.array_equal(other_seed.positions(rows.X), policy.positions(rows.X))


def test_the_differential_sharpe_objective_trains_deterministically(rows: Rows) -> None:
    spec = QUICK.model_copy(update={"objective": "differential_sharpe", "epochs": 10})

    first, second = rows.fit(spec), rows.fit(spec)

    assert np.array_equal(first.positions(rows.X), second.positions(rows.X))
    assert first.validation_reward is not None and math.isfinite(first.validation_reward)


def test_save_and_load_give_identical_positions(policy: SharpePolicy, rows: Rows, tmp_path: Path) -> None:
    policy.save(tmp_path / "policy")

    loaded = SharpePolicy.load(tmp_path / "policy")

    assert np.array_equal(loaded.positions(rows.X), policy.positions(rows.X))
    assert (loaded.training_reward, loaded.validation_reward, loaded.feature_columns) == (
        policy.training_reward, policy.validation_reward, policy.feature_columns)


def test_load_refuses_another_kind_of_model(policy: SharpePolicy, tmp_path: Path) -> None:
    policy.save(tmp_path)
    meta = tmp_path / "model.json"
    meta.write_text(meta.read_text().replace('"sharpe_policy"', '"xgboost"'))

    with pytest.raises(ValueError, match="kind"):
        SharpePolicy.load(tmp_path)


def test_position_one_matches_positions_and_waits_for_warm_up(policy: SharpePolicy, rows: Rows) -> None:
    values: dict[str, float | None] = dict(zip(rows.columns, rows.X[100].tolist(), strict=True))

    assert policy.position_one(values) == pytest.approx(float(policy.positions(rows.X[100:101])[0]), rel=1e-12)
    assert policy.position_one({**values, rows.columns[0]: None}) is None
    assert policy.position_one({**values, rows.columns[0]: math.nan}) is None
    with pytest.raises(ValueError, match=rows.columns[1]):
        policy.position_one({k: v for k, v in values.items() if k != rows.columns[1]})


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_training_inputs_are_refused_by_name(rows: Rows) -> None:
    X_nan = rows.X.copy()
    X_nan[5, 0] = np.nan
    r_nan = rows.returns.copy()
    r_nan[5] = np.nan
    split = np.r_[np.zeros(100), np.ones(100), np.zeros(len(rows.returns) - 200)].astype(np.int64)
    cases = [
        ((X_nan, rows.returns, rows.episodes), "X has NaN"),
        ((rows.X, r_nan, rows.episodes), "returns has NaN"),
        ((rows.X, rows.returns[:-1], rows.episodes), r"returns must have shape"),
        ((rows.X, rows.returns, rows.episodes[:-1]), r"episodes must have shape"),
        ((rows.X, rows.returns, split), "not contiguous: the rows of episode 0"),
        ((rows.X, rows.returns, rows.episodes.astype(np.float64)), "integer ids"),
    ]
    for (X, returns, episodes), message in cases:
        with pytest.raises(ValueError, match=message):
            fit_policy(QUICK, X, returns, episodes, rows.columns, rows.feature_set)
    with pytest.raises(ValueError, match="feature_columns"):
        fit_policy(QUICK, rows.X, rows.returns, rows.episodes, rows.columns[:-1], rows.feature_set)


def test_an_episode_too_short_for_validation_is_refused(rows: Rows) -> None:
    with pytest.raises(ValueError, match="too short"):
        fit_policy(QUICK, rows.X[:5], rows.returns[:5], rows.episodes[:5], rows.columns, rows.feature_set)


def test_rewards_refuse_positions_outside_flat_to_long(rows: Rows) -> None:
    with pytest.raises(ValueError, match="positions must lie within"):
        episode_reward(np.full(len(rows.returns), 1.5), rows.returns, FEE, HOURLY)
    with pytest.raises(ValueError, match="positions must have shape"):
        episode_reward(np.ones(3), rows.returns, FEE, HOURLY)


@pytest.mark.parametrize("bad", [{"hidden": (0,)}, {"validation_fraction": 0.9}, {"fee_rate": -0.1},
                                 {"objective": "sortino"}, {"epochs": 0}, {"surprise": 1}])
def test_the_spec_validates_its_ranges(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PolicySpec(**bad)  # type: ignore[arg-type]
