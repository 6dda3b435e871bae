"""The optimizer's pure parts: the search space as council overrides, the drawdown constraint that rejects a
candidate, the live score and its weight, the study (pruned candidates never best) and its determinism over
real candles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import optuna
import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.optimize import (
    ActivePeriod,
    Evaluation,
    LiveCampaign,
    LiveData,
    LiveScore,
    OptimizerSettings,
    Problem,
    blend,
    campaigns_of,
    council_overrides,
    drawdown_limit,
    live_score,
    open_study,
    params_of,
    plan_folds,
    run_study,
    runner_config,
    score_of,
    search_space,
    sharpe_of_campaigns,
    storage_url,
)
from quorum.council.settings import CouncilConfig
from quorum.risk.profiles import DEFAULT_PROFILES, ProfileLimits
from quorum.types import RiskProfile

from tests.unit.test_runner import stream

T0 = datetime(2024, 1, 1, tzinfo=UTC)
D = timedelta(days=1)
optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- the search space -----------------------------------------------------------------------------------------
def test_a_candidate_is_the_councils_settings_with_the_searched_values_and_reads_back_as_them() -> None:
    base = CouncilConfig()
    values = {"threshold": 0.55, "strategy.rsi.oversold": 25.0, "strategy.macd.weight": 2.5,
              "campaign.final_exit_streak": 5}

    overrides = council_overrides(base, values)
    built = CouncilConfig(**overrides)

    assert built.threshold == 0.55 and built.campaign.final_exit_streak == 5
    assert next(s for s in built.strategies if s.name == "rsi").oversold == 25.0
    assert next(s for s in built.strategies if s.name == "macd").weight == 2.5
    assert params_of(built, values) == values
    untouched = next(s for s in built.strategies if s.name == "bollinger")
    assert untouched == next(s for s in base.strategies if s.name == "bollinger")


def test_the_search_never_changes_the_features_the_council_reads() -> None:
    base = CouncilConfig()
    space = search_space(base)
    low = council_overrides(base, {p.name: p.low for p in space})
    high = council_overrides(base, {p.name: p.high for p in space})

    versions = {runner_config(o, RiskProfile.MEDIUM).feature_set_version for o in ({}, low, high)}
    assert len(versions) == 1
    features = set(runner_config({}, RiskProfile.MEDIUM).feature_set.feature_names)
    for overrides in (low, high):
        for s in CouncilConfig(**overrides).strategies:
            assert set(s.feature_names) <= features, s.name
    assert not any(".period" in p.name for p in space)


def test_a_candidate_decides_for_the_target_profile_in_the_council_and_in_risk() -> None:
    config = runner_config({}, RiskProfile.LOW)

    assert config.council.default_profile is RiskProfile.LOW and config.risk.default_profile is RiskProfile.LOW
    assert config.config_hash != runner_config({}, RiskProfile.HIGH).config_hash


# --- the drawdown constraint ------------------------------------------------------------------------------------
def test_each_profile_has_its_optimizer_drawdown_limit_and_a_missing_one_is_the_profiles_drawdown_limit() -> None:
    limits = {p: DEFAULT_PROFILES[p].optimizer_max_strategy_drawdown for p in RiskProfile}
    assert limits == {RiskProfile.LOW: 10, RiskProfile.MEDIUM: 15, RiskProfile.HIGH: 25}
    assert drawdown_limit(runner_config({}, RiskProfile.LOW), RiskProfile.LOW) == pytest.approx(0.10)

    fields = {**DEFAULT_PROFILES[RiskProfile.MEDIUM].model_dump(), "optimizer_max_strategy_drawdown": None,
              "max_drawdown_pct": "12"}
    assert ProfileLimits(**fields).strategy_drawdown_limit_pct == Decimal(12)
    with pytest.raises(ValueError):
        ProfileLimits(**{**fields, "optimizer_max_strategy_drawdown": "0"})


def evaluation(score: float, drawdown: float, limit: float = 0.10) -> Evaluation:
    return Evaluation("0" * 16, score, score, LiveScore(None, 0), 0.0, drawdown, limit, {"max_drawdown": drawdown})


def test_a_candidate_deeper_than_the_limit_is_rejected_with_the_figures() -> None:
    assert evaluation(1.0, 0.10).feasible and evaluation(1.0, 0.10).rejection is None
    deep = evaluation(3.0, 0.1234)

    assert not deep.feasible
    assert deep.rejection == ("out-of-sample drawdown 12.34% exceeds the profile's optimizer_max_strategy_drawdown "
                              "10.00%")
    assert deep.as_dict()["rejected"] == deep.rejection and deep.as_dict()["feasible"] is False


def test_an_undefined_metric_scores_zero() -> None:
    assert score_of({"sharpe": None}, "sharpe") == 0.0
    assert score_of({"sharpe": 1.5, "sortino": 2.0}, "sortino") == 2.0


# --- the live score ---------------------------------------------------------------------------------------------
LIVE = LiveData(
    periods=(ActivePeriod("a" * 16, T0, T0 + 10 * D), ActivePeriod("b" * 16, T0 + 10 * D, T0 + 20 * D),
             ActivePeriod("a" * 16, T0 + 20 * D, None)),
    campaigns=tuple(LiveCampaign(T0 + i * D + timedelta(hours=1), r) for i, r in enumerate(
        [0.02, -0.01, 0.03, 0.01, -0.02, 0.04, 0.0, 0.01, 0.02, -0.01,  # days 0-9: a
         0.05, 0.05, -0.05,  # days 10-12: b
         ])) + (LiveCampaign(T0 + 25 * D, 0.03),),  # day 25: a again
    now=T0 + 30 * D)


def test_live_campaigns_are_those_opened_while_that_configuration_was_active_within_the_window() -> None:
    assert len(campaigns_of("a" * 16, LIVE, T0)) == 11
    assert len(campaigns_of("b" * 16, LIVE, T0)) == 3
    assert [c.ret for c in campaigns_of("a" * 16, LIVE, T0 + 8 * D)] == [0.02, -0.01, 0.03]
    assert campaigns_of("c" * 16, LIVE, T0) == []


def test_the_live_score_is_the_annualized_sharpe_ratio_of_the_campaigns_returns() -> None:
    returns = [0.02, -0.01, 0.03, 0.01]
    mean, sd = 0.0125, 0.017078251276599328
    assert sharpe_of_campaigns(returns, 365 * 86400) == pytest.approx(mean / sd * 2)  # 4 campaigns a year
    assert sharpe_of_campaigns([0.01], 86400) is None and sharpe_of_campaigns([0.01, 0.01], 86400) is None

    score = live_score("a" * 16, LIVE, timedelta(days=30))
    assert score.campaigns == 11 and score.score is not None
    active_days = 10 + 10  # days 0-10 and 20-30
    expected = sharpe_of_campaigns([c.ret for c in campaigns_of("a" * 16, LIVE, T0)], active_days * 86400)
    assert score.score == pytest.approx(expected)
    assert live_score("a" * 16, LiveData(), timedelta(days=30)) == LiveScore(None, 0)


def test_the_final_score_blends_in_the_live_score_with_its_weight_when_there_are_enough_campaigns() -> None:
    live = LiveScore(-1.0, 12)

    assert blend(2.0, live, weight=0.25, min_campaigns=10) == (pytest.approx(1.25), 0.25)
    assert blend(2.0, live, weight=0.0, min_campaigns=10) == (2.0, 0.0)  # 0 disables it
    assert blend(2.0, live, weight=0.25, min_campaigns=13) == (2.0, 0.0)  # too little live data: no weight
    assert blend(2.0, LiveScore(None, 40), weight=0.25, min_campaigns=10) == (2.0, 0.0)


# --- the study --------------------------------------------------------------------------------------------------
@dataclass
class Scripted:
    """A problem whose candidates score by their threshold; those above 0.6 draw down too far."""

    settings: OptimizerSettings = field(default_factory=lambda: OptimizerSettings(startup_trials=2))
    seen: list[dict[str, Any]] = field(default_factory=list)

    def evaluate(self, council: dict[str, Any]) -> Evaluation:
        self.seen.append(council)
        t = council["threshold"]
        return evaluation(score=t, drawdown=0.2 if t > 0.6 else 0.05)


def test_rejected_candidates_are_pruned_with_their_reason_and_never_the_best() -> None:
    problem = Scripted()
    study = open_study("unit", problem.settings, None)

    result = run_study(study, problem, CouncilConfig(), trials=12)  # type: ignore[arg-type]

    states = {t.state for t in result.trials}
    assert states == {"COMPLETE", "PRUNED"}
    for t in result.trials:
        rejected = t.params["threshold"] > 0.6
        assert (t.state == "PRUNED") is rejected and (t.rejected is not None) is rejected
        assert t.overrides["threshold"] == t.params["threshold"]
    assert result.best is not None and result.best.state == "COMPLETE"
    assert result.best.score == max(t.score for t in result.trials if t.state == "COMPLETE")
    assert result.per_minute > 0


def test_the_same_candles_and_seed_give_the_same_trials() -> None:
    candles = stream(300)
    settings = OptimizerSettings(train_bars=100, test_bars=100, startup_trials=2, seed=7)
    problem = Problem(candles, plan_folds(candles, settings), settings)

    runs = [run_study(open_study(f"det-{i}", settings, None), problem, CouncilConfig(), trials=2) for i in range(2)]

    assert [(t.params, t.state, t.score) for t in runs[0].trials] == [(t.params, t.state, t.score)
                                                                      for t in runs[1].trials]
    assert runs[0].trials[0].evaluation["oos"]["bars"] == 200  # two test windows of 100 bars, out of sample
    other = run_study(open_study("det-other", settings.model_copy(update={"seed": 8}), None), problem,
                      CouncilConfig(), trials=1)
    assert other.trials[0].params != runs[0].trials[0].params


def test_too_few_candles_for_one_fold_say_so() -> None:
    with pytest.raises(ValueError, match="shorter than one fold"):
        plan_folds(stream(50), OptimizerSettings(train_bars=40, test_bars=20))


def test_the_storage_takes_the_projects_url_with_a_synchronous_driver() -> None:
    assert storage_url("postgresql+asyncpg://u:p@h:5432/q") == "postgresql+psycopg://u:p@h:5432/q"
    assert storage_url("postgresql://u@h/q") == "postgresql+psycopg://u@h/q"


def test_the_runner_config_of_no_overrides_is_the_services_settings_for_that_profile() -> None:
    assert runner_config({}, RiskProfile.MEDIUM).config_hash == RunnerConfig.from_env(
        council={"QUORUM_RISK_PROFILE": "MEDIUM"}, risk={"QUORUM_RISK_PROFILE": "MEDIUM"}).config_hash


def test_the_command_line_prints_every_trial_and_the_best_and_a_dry_run_records_nothing() -> None:
    import argparse
    import io

    from quorum.backtest import optimize_cli

    from tests.support import data_file

    parser = argparse.ArgumentParser()
    optimize_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["optimize", "--dry-run", "--data", str(data_file("ohlcv", "binance_BTCUSDT_1h.csv")),
                              "--to", "2021-04-17T11:00", "--trials", "2", "--train-bars", "100", "--test-bars", "100"])
    out = io.StringIO()

    assert optimize_cli.run(args, out, io.StringIO()) == 0
    printed = out.getvalue()
    assert "active (the services' settings): score" in printed
    assert printed.count("\ntrial ") == 2 and "trials/min" in printed and "best: trial" in printed
    assert "configuration" not in printed.split("best: trial")[1]  # a dry run writes no row
