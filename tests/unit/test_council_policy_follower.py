"""The council's policy follower: long from a position policy's target, flat below its exit level, nothing between
or without a target; opt-in (not in the default council)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError
from quorum.council.base import FeatureRow, PredictionView, StrategyInput
from quorum.council.strategies import PolicyFollower, default_strategies, parse_strategies
from quorum.types import Action

TS = datetime(2023, 1, 1, tzinfo=UTC)


def _input(*views: PredictionView) -> StrategyInput:
    return StrategyInput("binance", "BTC/USDT", "1h", (FeatureRow(TS, Decimal("100"), {"atr_14": 2.0}),), views)


def _target(t: float | None) -> PredictionView:
    return PredictionView("quorum-policy", "quorum-policy@1", 1, None, t)


@pytest.mark.parametrize(("target", "action", "reason"), [
    (0.9, Action.BUY, "POLICY_LONG"), (0.6, Action.BUY, "POLICY_LONG"), (0.45, Action.HOLD, "POLICY_BETWEEN"),
    (0.3, Action.SELL, "POLICY_FLAT"), (0.0, Action.SELL, "POLICY_FLAT")])
def test_the_follower_votes_the_policys_target(target: float, action: Action, reason: str) -> None:
    vote = PolicyFollower(name="policy").evaluate(_input(_target(target)))

    assert (vote.direction, vote.reason_codes) == (action, (reason,))
    assert vote.metadata["position_target"] == target


def test_without_a_target_the_follower_holds_and_a_return_prediction_is_not_a_target() -> None:
    predictor = PredictionView("quorum-global", "quorum-global@1", 1, 0.9)

    vote = PolicyFollower(name="policy").evaluate(_input(predictor))

    assert (vote.direction, vote.reason_codes) == (Action.HOLD, ("NO_POSITION_TARGET",))


def test_the_follower_is_opt_in_and_configured_like_any_strategy() -> None:
    assert "policy" not in {s.type for s in default_strategies()}
    [parsed] = parse_strategies('[{"type": "policy", "name": "follow", "enter_at": 0.7, "exit_at": 0.2}]')
    assert isinstance(parsed, PolicyFollower) and (parsed.enter_at, parsed.exit_at) == (0.7, 0.2)
    with pytest.raises(ValidationError, match="exit_at 0.6 must be below enter_at 0.5"):
        PolicyFollower(name="policy", enter_at=0.5, exit_at=0.6)


def test_a_long_vote_carries_the_councils_protective_levels() -> None:
    vote = PolicyFollower(name="policy").evaluate(_input(_target(0.8)))

    assert vote.stop_loss is not None and vote.stop_loss < Decimal("100")
