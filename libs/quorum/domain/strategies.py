"""Strategies turn features (and predictions) into signals. Pure functions of their inputs."""

from __future__ import annotations

from dataclasses import dataclass

from quorum.types import Action


@dataclass(frozen=True)
class Signal:
    producer: str
    action: Action
    confidence: float
    reason_codes: tuple[str, ...]


@dataclass(frozen=True)
class RsiStrategy:
    """Buy when RSI is oversold, sell (close the long) when overbought; confidence grows with the distance."""

    period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0
    name: str = "rsi"

    def evaluate(self, features: dict[str, float | None]) -> Signal:
        rsi = features.get(f"rsi_{self.period}")
        if rsi is None:
            return Signal(self.name, Action.HOLD, 0.0, ("WARMUP",))
        if rsi < self.oversold:
            return Signal(self.name, Action.BUY, min(1.0, (self.oversold - rsi) / self.oversold + 0.5),
                          ("RSI_OVERSOLD",))
        if rsi > self.overbought:
            return Signal(self.name, Action.SELL, min(1.0, (rsi - self.overbought) / (100 - self.overbought) + 0.5),
                          ("RSI_OVERBOUGHT",))
        return Signal(self.name, Action.HOLD, 0.0, ("RSI_NEUTRAL",))
