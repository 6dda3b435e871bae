"""Scripted strategies for tests: voters whose signals a test decides, plugged into a real council."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from quorum.council.base import Signal, StrategyBase, StrategyInput
from quorum.types import Action


class Fixed(StrategyBase):
    """Says what it is told to."""

    direction: Action = Action.HOLD
    confidence: float = 0.0

    def evaluate(self, inp: StrategyInput) -> Signal:
        return Signal(self.name, self.direction, self.confidence if self.direction is not Action.HOLD else 0.0,
                      ("SCRIPTED",), stop_loss=inp.close * Decimal("0.95") if self.direction is Action.BUY else None)


class Raising(StrategyBase):
    """Fails the way a buggy strategy does: an exception, or something that is not a signal."""

    failure: Literal["raise", "garbage"] = "raise"

    def evaluate(self, inp: StrategyInput) -> Signal:
        if self.failure == "raise":
            raise ZeroDivisionError("division by zero")
        return "BUY"  # type: ignore[return-value]


class FlipFlop(StrategyBase):
    """Buys when flat, sells when holding: proves the position context reaches the strategies."""

    def evaluate(self, inp: StrategyInput) -> Signal:
        if inp.position.is_open:
            return Signal(self.name, Action.SELL, 0.9, ("HOLDING_SO_SELL",))
        return Signal(self.name, Action.BUY, 0.9, ("FLAT_SO_BUY",))
