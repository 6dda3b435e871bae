"""A configuration's hash covers every setting that changes a decision, a strategy's own parameters included."""

from __future__ import annotations

from quorum.backtest.config import RunnerConfig
from quorum.council.strategies import RsiReversion


def test_configurations_differing_only_in_a_strategy_parameter_have_different_hashes() -> None:
    loose = RunnerConfig.from_env(council={"solo_strategy": "rsi", "strategies": [RsiReversion(oversold=30)]})
    tight = RunnerConfig.from_env(council={"solo_strategy": "rsi", "strategies": [RsiReversion(oversold=20)]})

    assert loose.config_hash != tight.config_hash
    assert tight.described["council"]["strategies"][0]["oversold"] == 20


def test_the_same_settings_give_the_same_hash() -> None:
    assert RunnerConfig.from_env().config_hash == RunnerConfig.from_env().config_hash
