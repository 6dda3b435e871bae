"""Streaming indicators with TA-Lib semantics (same seeding, same warm-up length).

Each indicator is a small state machine: ``update(x)`` consumes one closed value and returns the indicator
at that step, or ``None`` while warming up. Nothing here can see the future: a value depends only on the
inputs given so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EMA:
    """Exponential moving average seeded with the SMA of the first ``period`` values (TA-Lib's default)."""

    period: int
    _seed: list[float] = field(default_factory=list)
    value: float | None = None

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError("period must be >= 1")
        self._k = 2.0 / (self.period + 1)

    def update(self, x: float) -> float | None:
        if self.value is None:
            self._seed.append(x)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
                self._seed.clear()
            return self.value
        self.value = (x - self.value) * self._k + self.value
        return self.value


@dataclass
class RSI:
    """Wilder's RSI: averages seeded with the simple mean of the first ``period`` changes."""

    period: int = 14
    _prev: float | None = None
    _gains: float = 0.0
    _losses: float = 0.0
    _count: int = 0
    _avg_gain: float | None = None
    _avg_loss: float | None = None

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError("period must be >= 1")

    def update(self, x: float) -> float | None:
        if self._prev is None:
            self._prev = x
            return None
        change = x - self._prev
        self._prev = x
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if self._avg_gain is None or self._avg_loss is None:
            self._gains += gain
            self._losses += loss
            self._count += 1
            if self._count < self.period:
                return None
            self._avg_gain, self._avg_loss = self._gains / self.period, self._losses / self.period
        else:
            n = self.period
            self._avg_gain = (self._avg_gain * (n - 1) + gain) / n
            self._avg_loss = (self._avg_loss * (n - 1) + loss) / n
        total = self._avg_gain + self._avg_loss
        return 0.0 if total == 0 else 100.0 * self._avg_gain / total


@dataclass(frozen=True)
class FeatureSpec:
    """The foundation feature set. Its ``version`` names exactly what was computed."""

    rsi_period: int = 14
    ema_period: int = 20

    @property
    def version(self) -> str:
        return f"fs1-rsi{self.rsi_period}-ema{self.ema_period}"


class FeatureState:
    """Per-(symbol, timeframe) streaming state for a ``FeatureSpec``."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._rsi = RSI(spec.rsi_period)
        self._ema = EMA(spec.ema_period)
        self.count = 0

    def update(self, close: float) -> dict[str, float | None]:
        self.count += 1
        ema = self._ema.update(close)
        return {
            f"rsi_{self.spec.rsi_period}": self._rsi.update(close),
            f"ema_{self.spec.ema_period}": ema,
            "close_over_ema": None if ema is None else close / ema - 1.0,
        }
