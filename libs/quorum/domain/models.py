"""Baseline model: a fixed logistic map of price vs its EMA. No training, fully reproducible; it is the
yardstick later XGBoost/torch models must beat, and the shape their outputs take."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MomentumBaseline:
    ema_period: int = 20
    slope: float = 40.0
    name: str = "baseline-momentum"
    version: str = "1"
    horizon: int = 1

    def predict(self, features: dict[str, float | None]) -> float | None:
        """Probability that the next close is higher; None while the inputs are warming up."""
        x = features.get("close_over_ema")
        if x is None:
            return None
        return 1.0 / (1.0 + math.exp(-self.slope * x))
