"""The learning loop on real candles, in seconds: a training job twice gives the same metrics and registers a
challenger each time; with a champion, the challenger is compared with it on the same folds; ``quorum train`` and
``quorum evaluate`` as a user runs them (real subprocesses, a local MLflow store in a temporary folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from quorum.backtest.data import from_files
from quorum.learning.bootstrap import ensure_champion
from quorum.learning.dataset import DatasetSpec
from quorum.learning.families import ModelSpec
from quorum.learning.promotion import CHALLENGER, CHAMPION, LearningSettings
from quorum.learning.registry import Registry
from quorum.learning.search import SPACES, SearchBudget
from quorum.learning.train import FoldPlan, TrainingRequest, train

from tests.support import data_file

pytestmark = pytest.mark.integration

FILES = [data_file("ohlcv", "binance_BTCUSDT_1h.csv"), data_file("ohlcv", "binance_ETHUSDT_1h.csv")]
START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 5, 1, tzinfo=UTC)
REQUEST = TrainingRequest(
    dataset=DatasetSpec(start=START, end=END, symbol_feature=True),
    model=ModelSpec(family="lightgbm", task="classification", params={"n_estimators": 40}),
    folds=FoldPlan(train_days=60, test_days=20, embargo_bars=24, warmup_days=10))


@pytest.fixture(scope="module")
def candles() -> list:
    return from_files(FILES, now=datetime(2100, 1, 1, tzinfo=UTC), start=START, end=END).candles


def test_the_same_job_twice_gives_the_same_metrics_and_two_challenger_versions(candles: list,
                                                                               tmp_path: Path) -> None:
    registry = Registry.local(tmp_path)
    seen: list = []

    first = train(REQUEST, candles, registry, code_version="test", progress=seen.append)
    second = train(REQUEST, candles, registry, code_version="test")

    assert first.summary()["oos"] == second.summary()["oos"]
    assert first.summary()["strategy"] == second.summary()["strategy"]
    assert first.dataset.content_hash == second.dataset.content_hash
    assert (first.version.version, second.version.version) == ("1", "2")
    versions = {v.version: v for v in registry.versions("quorum-global")}
    assert versions["2"].aliases == (CHALLENGER,) and versions["1"].aliases == ()
    assert versions["2"].tags["dataset_hash"] == first.dataset.content_hash
    assert versions["2"].metrics["oos_direction_accuracy"] == first.score.metrics["direction_accuracy"]
    assert set(first.strategy) == {"BTC/USDT", "ETH/USDT"} and first.strategy_skipped is None
    assert len(first.score.folds) == 2 and [p.stage for p in seen][0] == "dataset" and seen[-1].percent == 100
    assert first.verdict.failed and not first.promoted  # the seed's gates (500 trades, Sharpe 2) are far off
    model, _ = registry.load("quorum-global@challenger")
    assert model.feature_set == REQUEST.dataset.feature_set.version


def test_a_challenger_is_scored_against_the_champion_retrained_on_the_same_folds(candles: list,
                                                                                 tmp_path: Path) -> None:
    registry = Registry.local(tmp_path)
    lenient = LearningSettings(require_gates=False, auto_promote=True)
    baseline = train(REQUEST, candles, registry, code_version="test", settings=lenient)
    registry.set_alias("quorum-global", CHAMPION, baseline.version.version)
    other = REQUEST.model_copy(update={"model": ModelSpec(family="xgboost", task="classification",
                                                          params={"n_estimators": 40})})

    challenger = train(other, candles, registry, code_version="test", settings=lenient)

    assert challenger.score.champion is not None
    assert challenger.score.champion["mse"] == baseline.score.metrics["mse"]  # the champion's family, same rows
    names = {c.name: c for c in challenger.verdict.checks}
    assert "the champion's" in names["beats_champion"].detail
    aliases = {v.version: v.aliases for v in registry.versions("quorum-global")}
    assert CHALLENGER in aliases[challenger.version.version]
    assert (CHAMPION in aliases[challenger.version.version]) is challenger.verdict.promote


def _quorum(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_MLFLOW_")}
    return subprocess.run([sys.executable, "-m", "quorum.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_quorum_train_then_evaluate_on_unseen_candles_from_the_command_line(tmp_path: Path) -> None:
    data = [a for f in FILES for a in ("--data", str(f))]

    trained = _quorum("train", *data, "--from", "2022-01-01", "--to", "2022-04-30T23:00", "--param",
                      "n_estimators=40", "--train-days", "60", "--test-days", "20", "--no-backtest", "--json",
                      cwd=tmp_path)
    evaluated = _quorum("evaluate", "--model", "quorum-global@challenger", "--data", str(FILES[0]), "--from",
                        "2021-06-01", "--to", "2021-08-31", cwd=tmp_path)
    refused = _quorum("evaluate", "--model", "quorum-global@champion", "--data", str(FILES[0]), cwd=tmp_path)
    bad = _quorum("train", "--data", str(FILES[0]), "--family", "lightgbm", "--param", "nope=1", cwd=tmp_path)

    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["aliases"] == ["challenger"] and summary["strategy_skipped"] == "not asked for"
    assert (tmp_path / ".quorum" / "mlflow" / "mlflow.db").is_file() and not (tmp_path / "mlruns").exists()
    assert evaluated.returncode == 0, evaluated.stderr
    found = json.loads(evaluated.stdout)
    assert found["symbols"] == ["BTC/USDT"] and found["rows_scored"] > 1000
    assert found["start"] > "2021-06-01" and found["end"] < "2021-09-01"  # the warm-up (480-bar EMA) left out
    assert {"mse", "naive_mse", "direction_accuracy", "always_up_accuracy", "brier"} <= set(found)
    assert set(found["backtest"]) == {"council", "fee", "strategy", "buy_and_hold"}
    assert refused.returncode == 2 and "has no alias 'champion'" in refused.stderr
    assert bad.returncode == 2 and "unknown lightgbm params ['nope']" in bad.stderr


def test_a_first_start_trains_one_champion_and_later_starts_keep_it(tmp_path: Path) -> None:
    registry = Registry.local(tmp_path / "state")
    said: list[str] = []

    first = ensure_champion(registry, FILES[0].parents[1], code_version="test", say=said.append)
    again = ensure_champion(registry, FILES[0].parents[1], code_version="test", say=said.append)
    without = ensure_champion(Registry.local(tmp_path / "other"), tmp_path / "no-data", code_version="test",
                              say=said.append)

    assert first is not None and again is not None and first.version == again.version == "1"
    assert set(first.aliases) == {CHALLENGER, CHAMPION}
    assert first.tags["promotion"].startswith("failed: ")  # promoted anyway: there was no champion to beat
    assert without is None and "NO TRAINED MODEL" in said[-1]
    assert sum("training" in line for line in said) == 1


def test_a_search_budget_tunes_on_rows_before_the_first_test_window_and_is_reproducible(candles: list,
                                                                                        tmp_path: Path) -> None:
    registry = Registry.local(tmp_path)
    request = REQUEST.model_copy(update={"search": SearchBudget(trials=3), "strategy_backtest": False,
                                         "folds": FoldPlan(train_days=90, test_days=15)})

    first = train(request, candles, registry, code_version="test")
    second = train(request, candles, registry, code_version="test")

    assert first.search is not None and first.search == second.search
    assert first.search.until == first.score.folds[0].fold.test_start
    assert set(SPACES[request.model.family]) <= set(first.search.params)
    assert first.score.metrics == second.score.metrics
    assert json.loads(first.version.tags["search"])["params"] == first.search.params


def test_per_coin_specialists_challenge_the_global_champion_and_are_served_as_one_version(candles: list,
                                                                                          tmp_path: Path) -> None:
    from quorum.events.features import FeaturesComputed
    from quorum.learning.specialists import Specialists
    from quorum.learning.train import served

    registry = Registry.local(tmp_path)
    lenient = LearningSettings(require_gates=False)
    global_model = train(REQUEST.model_copy(update={"strategy_backtest": False}), candles, registry,
                         code_version="test", settings=lenient)
    registry.set_alias("quorum-global", CHAMPION, global_model.version.version)
    specialists = REQUEST.model_copy(update={"model": REQUEST.model.model_copy(update={"per_symbol": True})})

    result = train(specialists, candles, registry, code_version="test", settings=lenient)
    model, info = registry.load(f"quorum-global:{result.version.version}")

    assert result.score.champion is not None and result.score.champion["mse"] == global_model.score.metrics["mse"]
    assert result.score.metrics["rows"] == global_model.score.metrics["rows"]  # the same test rows
    assert isinstance(model, Specialists) and sorted(model.members) == [0, 1]
    assert info.tags["symbols"] == "BTC/USDT,ETH/USDT" and info.aliases == (CHALLENGER,)
    assert set(result.strategy) == {"BTC/USDT", "ETH/USDT"}  # the council backtest ran the bundle per asset
    predictor = served(model, info)
    row = result.dataset.frame.row(-1, named=True)
    values = {c: row[c] for c in model.member_columns}
    made = {s: predictor.predict_features(FeaturesComputed(
        exchange="binance", symbol=s, timeframe="1h", ts=START, feature_set=model.feature_set, close=100,
        values=values))
        for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}
    assert made["BTC/USDT"] == model.members[0].predict_one(values)
    assert made["ETH/USDT"] == model.members[1].predict_one(values)
    assert made["BTC/USDT"] != made["ETH/USDT"] and made["SOL/USDT"] is None  # not trained on: no opinion


def test_a_position_policy_is_backtested_with_the_council_following_it_and_left_to_an_operator(
        candles: list, tmp_path: Path) -> None:
    registry = Registry.local(tmp_path)
    request = REQUEST.model_copy(update={"model_name": "quorum-policy", "model": ModelSpec(
        family="sharpe_policy", params={"hidden_size": 8, "epochs": 30, "patience": 10})})

    result = train(request, candles, registry, code_version="test", settings=LearningSettings(auto_promote=True))

    assert result.score.metrics["mse"] is None and result.score.metrics["rows"] > 0
    assert set(result.strategy) == {"BTC/USDT", "ETH/USDT"}
    trips = [r.walk_forward["oos"]["metrics"]["round_trips"] for r in result.strategy.values()]
    assert sum(trips) > 0  # the council's policy follower traded on the targets
    assert "beats_naive_mse" in result.verdict.failed and not result.promoted
    model, info = registry.load("quorum-policy@challenger")
    assert info.tags["family"] == "sharpe_policy" and model.spec.family == "sharpe_policy"


def test_a_meta_learner_goes_through_the_same_job_and_gate_and_registers_as_one_version(candles: list,
                                                                                      tmp_path: Path) -> None:
    from quorum.learning.stacking import Stacked

    registry = Registry.local(tmp_path)
    baseline = train(REQUEST.model_copy(update={"strategy_backtest": False}), candles, registry, code_version="test")
    registry.set_alias("quorum-global", CHAMPION, baseline.version.version)
    request = REQUEST.model_copy(update={"model": ModelSpec(family="meta", task="classification")})

    result = train(request, candles, registry, code_version="test")
    model, info = registry.load(f"quorum-global:{result.version.version}")

    assert result.score.metrics["rows"] == baseline.score.metrics["rows"]  # the same folds and test rows
    assert result.score.champion is not None and {c.name for c in result.verdict.checks} == {
        "beats_naive_mse", "beats_champion", "validation_gates"}
    assert isinstance(model, Stacked) and [f.value for f, _ in model.bases] == ["lightgbm", "random_forest"]
    assert info.tags["family"] == "meta" and set(result.strategy) == {"BTC/USDT", "ETH/USDT"}
