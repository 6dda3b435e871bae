"""``quorum replay`` decides each candle with the configuration its recorded decision was made with: an operator's
approval in the middle of a session switches the replay's council where it switched the services'."""

from __future__ import annotations

import uuid

from quorum.backtest.config import RunnerConfig
from quorum.backtest.replay import Configurations, as_recorded, differences, from_run
from quorum.backtest.runner import Runner
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
