"""Validation gates: each criterion reported with its figure and threshold, a report that passes and ones that fail,
thresholds from the environment, and gates over a real walk-forward per asset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.gates import Criterion, GateSettings, evaluate, gate, gate_each_asset
from quorum.backtest.walkforward import bars_to_feed, folds, span, walk_forward

from tests.unit.test_runner import SOLO_RSI, stream

GOOD = {"round_trips": 640, "fills": 1900, "sharpe": 2.4, "max_drawdown": 0.09}


def figures(report: object) -> dict[str, tuple[float | None, float, bool]]:
    return {c.criterion.name: (c.figure, c.criterion.threshold, c.passed) for c in report.criteria}  # type: ignore


def test_a_configuration_that_meets_every_default_criterion_passes() -> None:
    report = evaluate(GOOD, GateSettings().criteria(), asset="BTC/USDT", config_hash="abc")

    assert report.passed
    assert figures(report) == {"trades": (640, 500, True), "sharpe": (2.4, 2.0, True),
                               "max_drawdown": (0.09, 0.15, True)}


@pytest.mark.parametrize(("changed", "failing"), [
    ({"round_trips": 499}, "trades"),
    ({"sharpe": 1.99}, "sharpe"),
    ({"sharpe": None}, "sharpe"),  # a flat curve has no Sharpe ratio: not a pass
    ({"max_drawdown": 0.1501}, "max_drawdown"),
])
def test_one_criterion_missed_fails_the_report_and_names_it(changed: dict[str, object], failing: str) -> None:
    report = evaluate({**GOOD, **changed}, GateSettings().criteria(), asset="BTC/USDT", config_hash="abc")

    assert not report.passed
    assert [c.criterion.name for c in report.criteria if not c.passed] == [failing]
    assert report.as_dict()["criteria"][[c.criterion.name for c in report.criteria].index(failing)]["passed"] is False


def test_thresholds_and_what_counts_as_a_trade_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_GATES_MIN_TRADES", "2000")
    monkeypatch.setenv("QUORUM_GATES_TRADES_METRIC", "fills")
    monkeypatch.setenv("QUORUM_GATES_MIN_SHARPE", "3")
    monkeypatch.setenv("QUORUM_GATES_MAX_DRAWDOWN", "0.05")

    report = evaluate(GOOD, GateSettings().criteria(), asset="BTC/USDT", config_hash="abc")

    assert figures(report) == {"trades": (1900, 2000, False), "sharpe": (2.4, 3.0, False),
                               "max_drawdown": (0.09, 0.05, False)}
    assert [c.criterion.metric for c in report.criteria] == ["fills", "sharpe", "max_drawdown"]


def test_a_report_row_carries_what_the_gate_reports_table_stores() -> None:
    report = evaluate(GOOD, [Criterion("sharpe", "sharpe", ">=", 1.0)], asset="ETH/USDT", config_hash="abc",
                      walk_forward={"folds": []})

    assert report.row("id-1") == {
        "asset": "ETH/USDT", "config_hash": "abc", "passed": True, "backtest_id": "id-1", "walk_forward": {"folds": []},
        "criteria": [{"name": "sharpe", "metric": "sharpe", "op": ">=", "threshold": 1.0, "figure": 2.4,
                      "passed": True}]}


def test_gates_over_a_walk_forward_judge_its_out_of_sample_metrics_per_asset() -> None:
    config = RunnerConfig.from_env(**SOLO_RSI)
    candles = stream(600)
    start, end = span(candles)
    plan = list(folds(start, end, train=timedelta(hours=200), test=timedelta(hours=100),
                      embargo=timedelta(hours=5)))
    lenient = [Criterion("trades", "fills", ">=", 1), Criterion("max_drawdown", "max_drawdown", "<=", 0.5)]

    walk = walk_forward(lambda _: config, candles, plan)
    strict = gate(walk, GateSettings().criteria(), asset="BTC/USDT", config_hash=config.config_hash)
    seen: list[tuple[int, int]] = []
    reports = gate_each_asset(lambda _: config, candles, plan, lenient, config_hash=config.config_hash,
                              progress=lambda done, total: seen.append((done, total)))

    assert not strict.passed and figures(strict)["trades"][0] == walk.metrics.round_trips < 500
    assert strict.walk_forward["oos"]["metrics"]["sharpe"] == walk.metrics.sharpe
    assert len(strict.walk_forward["folds"]) == len(plan)
    assert list(reports) == ["BTC/USDT"] and reports["BTC/USDT"].passed
    assert figures(reports["BTC/USDT"])["trades"][0] == walk.metrics.fills > 0
    assert seen[-1] == (bars_to_feed(candles, plan), bars_to_feed(candles, plan))
