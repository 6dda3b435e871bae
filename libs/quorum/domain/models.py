"""Baseline model: a fixed logistic map of price vs its EMA. No training, fully reproducible; it is the
yardstick later XGBoost/torch models must beat, and the shape their outputs take."""

from __future__ import annotations

import math
from dataclasses import dataclass

from quorum.events.features import FeaturesComputed
from quorum.events.predictions import PredictionMade


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


# name -> version -> model. Trained models register here; the selection is the operator's (``SelectModel``).
MODELS: dict[str, dict[str, MomentumBaseline]] = {"baseline-momentum": {"1": MomentumBaseline()}}
DEFAULT_MODEL = ("baseline-momentum", "1")


def model_tag(name: str, version: str) -> str:
    """The version string predictions carry: ``name@version``."""
    return f"{name}@{version}"


def prediction_of(name: str, version: str, f: FeaturesComputed) -> PredictionMade:
    """The inference service's decision: the selected model's prediction for one feature vector (the service
    and the runner both call this)."""
    model = MODELS[name][version]
    return PredictionMade(exchange=f.exchange, symbol=f.symbol, timeframe=f.timeframe, ts=f.ts, model_name=name,
                          model_version=model_tag(name, version), feature_set=f.feature_set, horizon=model.horizon,
                          p_up=model.predict(f.values))
