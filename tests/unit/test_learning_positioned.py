"""A position policy through the model interface: trained from a ``ModelSpec``, one episode per symbol, scored by
what it holds (it predicts no return), refused by the gate's MSE check with the reason, saved and loaded by the one
loader, and served as a target position."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from quorum.backtest.walkforward import Fold
from quorum.events.features import FeaturesComputed
from quorum.learning.artifacts import Positioned, fit_model, is_policy, load_model
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Family, ModelSpec
from quorum.learning.promotion import LearningSettings, verdict
from quorum.learning.scoring import score
from quorum.learning.serving import ServedModel

from tests.support import data_file

SPEC = ModelSpec(family=Family.SHARPE_POLICY, params={"hidden_size": 8, "epochs": 20, "patience": 5})
START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ds():  # type: ignore[no-untyped-def]
    frames = frames_from_files([data_file("ohlcv", f"binance_{s}USDT_1h.csv") for s in ("BTC", "ETH")])
    return build_dataset(frames, DatasetSpec(start=START, end=END, symbol_feature=True))


@pytest.fixture(scope="module")
def policy(ds):  # type: ignore[no-untyped-def]
    return fit_model(SPEC, ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy(), ds.feature_columns,
                     ds.spec.feature_set.version)


def test_the_policy_trains_one_episode_per_symbol_without_the_symbol_as_an_input(policy) -> None:  # type: ignore[no-untyped-def]
    assert is_policy(policy) and isinstance(policy, Positioned)
    assert "symbol_code" in policy.feature_columns and "symbol_code" not in policy.policy.feature_columns
    assert policy.spec.family is Family.SHARPE_POLICY and policy.spec.resolved_params()["hidden_size"] == 8
    assert policy.policy.training_reward > policy.policy.initial_reward
    with pytest.raises(ValueError, match="predicts no return"):
        policy.predict(np.zeros((1, len(policy.feature_columns))))


def test_served_it_gives_a_target_position_and_no_prediction(ds, policy) -> None:  # type: ignore[no-untyped-def]
    served = ServedModel(policy, "quorum-policy", "1", None, 1, ds.spec.symbols)
    row = ds.frame.row(-1, named=True)
    values = {c: row[c] for c in policy.policy.feature_columns}
    f = FeaturesComputed(exchange="binance", symbol="ETH/USDT", timeframe="1h", ts=END - timedelta(hours=2),
                         feature_set=ds.spec.feature_set.version, close=100, values=values)

    expected, p_up, target = served.predict_features(f)

    assert (expected, p_up) == (None, None) and 0.0 <= target <= 1.0
    X = ds.feature_matrix()[-1:]
    assert target == pytest.approx(float(policy.positions(X)[0]))
    warming = f.model_copy(update={"values": {**values, policy.policy.feature_columns[0]: None}})
    assert served.predict_features(warming) is None


def test_scored_walk_forward_it_has_no_prediction_metrics_and_the_gate_says_why(ds) -> None:  # type: ignore[no-untyped-def]
    fold = Fold(START, START + timedelta(days=40), START + timedelta(days=40), START + timedelta(days=59))

    scored = score(ds, SPEC, [fold])
    found = verdict(scored, None, LearningSettings(require_gates=False), has_champion=False)

    m = scored.metrics
    assert m["rows"] > 0 and m["mse"] is None and m["direction_accuracy"] is None
    assert 0.0 <= m["mean_position"] <= 1.0 and m["naive_mse"] > 0
    [naive] = [c for c in found.checks if c.name == "beats_naive_mse"]
    assert not naive.passed and "predicts no return" in naive.detail and not found.promote


def test_the_one_loader_reads_it_back_with_its_columns_and_extras(ds, policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    replace(policy, extras={"note": "x"}).save(tmp_path / "p")
    back = load_model(tmp_path / "p")
    X = ds.feature_matrix()[:200]

    assert isinstance(back, Positioned) and back.feature_columns == policy.feature_columns
    assert back.extras == {"note": "x"} and np.array_equal(back.positions(X), policy.positions(X))
