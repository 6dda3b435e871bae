"""``quorum replay`` decides each candle with the configuration its recorded decision was made with: an operator's
approval in the middle of a session switches the replay's council where it switched the services'."""

from __future__ import annotations

import uuid

import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.replay import Configurations, as_recorded, differences, from_run
from quorum.backtest.runner import Runner
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade

from tests.unit.test_runner import stream

APPROVED = uuid.uuid4()


def test_the_replay_switches_the_council_at_the_first_decision_recorded_with_the_approved_configuration() -> None:
    candles = stream(120)
    later = {(c.exchange, c.symbol, c.timeframe, c.ts): APPROVED for c in candles[80:]}
    configs = Configurations(later, {APPROVED: {"mode": "COUNCIL", "threshold": 0.35}})
    base = RunnerConfig.from_env(council={"mode": "COUNCIL"})
    runner = Runner(base)

    recorder = runner.run(as_recorded(runner, candles, configs))

    thresholds = [e.payload.threshold for e in recorder.of(DecisionMade)]
    decided_at = [e.payload.ts for e in recorder.of(DecisionMade)]
    switch = decided_at.index(candles[80].ts)
    assert set(thresholds[:switch]) == {base.council.default_control.threshold} != {0.35}
    assert set(thresholds[switch:]) == {0.35}


def test_a_session_without_approvals_replays_with_the_settings_alone() -> None:
    candles = stream(60)
    plain = Runner(RunnerConfig.from_env())
    expected = from_run(plain.run(candles), plain)
    runner = Runner(RunnerConfig.from_env())

    replayed = from_run(runner.run(as_recorded(runner, candles, Configurations())), runner)

    assert differences(expected, replayed) == []


class _Constant:
    """A stand-in for a registered model: always the same opinion."""

    name, version, horizon, run_id = "constant", "3", 1, "run-3"

    def predict_features(self, f: object) -> tuple[float | None, float]:
        return 0.001, 0.9


def test_the_replay_predicts_each_candle_with_the_model_recorded_for_it() -> None:
    candles = stream(60)
    keys = [(c.exchange, c.symbol, c.timeframe, c.ts) for c in candles]
    models = {k: ("baseline-momentum@1" if i < 40 else "constant@3") for i, k in enumerate(keys)}
    configs = Configurations(models=models, predictors={"constant@3": _Constant()})
    runner = Runner(RunnerConfig.from_env())

    recorder = runner.run(as_recorded(runner, candles, configs))

    made = [e.payload for e in recorder.of(PredictionMade)]
    assert [p.model_version for p in made] == ["baseline-momentum@1"] * 40 + ["constant@3"] * 20
    assert {(p.p_up, p.expected_return, p.run_id) for p in made[40:]} == {(0.9, 0.001, "run-3")}
    assert configs.trained_models() == {"constant@3"}


def test_a_recorded_model_missing_from_the_registry_is_named() -> None:
    configs = Configurations(models={("binance", "BTC/USDT", "1h", 0): "gone@7"})

    with pytest.raises(LookupError, match="gone@7"):
        configs.predictor_for("gone@7")


def test_candles_a_running_stack_has_not_decided_yet_are_left_out_of_the_comparison() -> None:
    from quorum.backtest.replay import _decided

    candles = stream(10)
    found = [{"exchange": c.exchange, "symbol": c.symbol, "timeframe": c.timeframe, "ts": c.ts} for c in candles[:7]]

    assert _decided(candles, found) == candles[:7]
    assert _decided(candles, []) == []


def test_the_replay_applies_a_recorded_change_of_risk_profile_before_the_first_candle_decided_with_it() -> None:
    candles = stream(60)
    keys = [(c.exchange, c.symbol, c.timeframe, c.ts) for c in candles]
    profiles = {k: ("MEDIUM" if i < 25 else "LOW") for i, k in enumerate(keys)}
    runner = Runner(RunnerConfig.from_env())

    recorder = runner.run(as_recorded(runner, candles, Configurations(profiles=profiles)))

    seen = [e.payload.risk_profile.value for e in recorder.of(DecisionMade)]
    assert seen == ["MEDIUM"] * 25 + ["LOW"] * 35
    changed = [e for e in recorder.envelopes if e.event_type == "RiskProfileChanged"]
    assert len(changed) == 1 and changed[0].payload.actor == "SYSTEM:replay"


def test_the_replay_applies_a_recorded_change_of_a_symbols_council_mode_before_the_first_candle_decided_with_it(
        ) -> None:
    from quorum.backtest.replay import Control
    from quorum.types import CouncilMode

    candles = stream(60)
    keys = [(c.exchange, c.symbol, c.timeframe, c.ts) for c in candles]
    controls = {k: Control(CouncilMode.SOLO, "trend") if i < 30 else Control(CouncilMode.SOLO, "rsi")
                for i, k in enumerate(keys)}
    runner = Runner(RunnerConfig.from_env())

    recorder = runner.run(as_recorded(runner, candles, Configurations(controls=controls)))

    solo = [next(c for c in e.payload.reason_codes if c.startswith("SOLO:")) for e in recorder.of(DecisionMade)]
    assert solo == ["SOLO:trend"] * 30 + ["SOLO:rsi"] * 30
    assert Control.of("SOLO", 0.5, ["SOLO:rsi", "FLAT"]) == Control(CouncilMode.SOLO, "rsi")
    assert Control.of("COUNCIL", 0.35, ["CONSENSUS"]) == Control(CouncilMode.COUNCIL, None, 0.35)
