"""The first feature set (``fs1``): RSI and EMA of the close, and the close's distance from that EMA. The
features service still runs it on closes alone; ``FeatureSetSpec`` / ``FeatureEngine`` supersede it."""

from __future__ import annotations

from dataclasses import dataclass

from quorum.indicators.streaming import EMA, RSI


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
