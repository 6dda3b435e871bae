"""What inference runs: a ``Predictor`` (the fixed baseline below, or a trained model from the registry,
``quorum.learning``) turning one feature vector into a prediction. The baseline is a fixed logistic map of price
vs its EMA: no training, fully reproducible, and the registered yardstick trained models must beat."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from quorum.events.features import FeaturesComputed
from quorum.events.predictions import PredictionMade


class Predictor(Protocol):
    """A model as inference and the runner use it."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def horizon(self) -> int: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def window(self) -> int:
        """Feature rows of the series a prediction reads: this candle's and ``window - 1`` before it."""
        ...

    def predict_features(self, f: FeaturesComputed, earlier: Sequence[Mapping[str, float | None]] = ()
                         ) -> tuple[float | None, float | None] | tuple[float | None, float | None, float] | None:
        """(expected log return over the horizon or None, probability the close rises) for one candle's
        features, ``earlier`` the series' feature rows before it (oldest first, up to ``window - 1``); a position
        policy adds its target position as a third value (and predicts neither); None while they warm up."""
        ...


@dataclass(frozen=True)
class MomentumBaseline:
    ema_period: int = 20
    slope: float = 40.0
    name: str = "baseline-momentum"
    version: str = "1"
    horizon: int = 1
    run_id: str | None = None
    window: int = 1

    def predict(self, features: Mapping[str, float | None]) -> float | None:
        """Probability that the next close is higher; None while the inputs are warming up."""
        x = features.get("close_over_ema")
        if x is None:
            return None
        return 1.0 / (1.0 + math.exp(-self.slope * x))

    def predict_features(self, f: FeaturesComputed, earlier: Sequence[Mapping[str, float | None]] = ()
                         ) -> tuple[float | None, float] | None:
        p = self.predict(f.values)
        return None if p is None else (None, p)


MAX_WINDOW = 2048
"""The most feature rows of a series one prediction may read (the runner keeps that many per series)."""

# name -> version -> model: the built-in models (trained ones live in the MLflow registry).
MODELS: dict[str, dict[str, MomentumBaseline]] = {"baseline-momentum": {"1": MomentumBaseline()}}
DEFAULT_MODEL = ("baseline-momentum", "1")


def model_tag(name: str, version: str) -> str:
    """The version string predictions carry: ``name@version``."""
    return f"{name}@{version}"


def builtin(name: str, version: str) -> MomentumBaseline:
    return MODELS[name][version]


def prediction_of(model: Predictor, f: FeaturesComputed,
                  earlier: Sequence[Mapping[str, float | None]] = ()) -> PredictionMade:
    """The inference service's decision: the model's prediction for one feature vector, ``earlier`` the series'
    feature rows before it when the model reads a window (the service and the runner both call this)."""
    out = model.predict_features(f, earlier) if earlier else model.predict_features(f)
    expected, p_up, target = (None, None, None) if out is None else (*out, None)[:3]
    return PredictionMade(exchange=f.exchange, symbol=f.symbol, timeframe=f.timeframe, ts=f.ts,
                          model_name=model.name, model_version=model_tag(model.name, model.version),
                          feature_set=f.feature_set, horizon=model.horizon, p_up=p_up, expected_return=expected,
                          run_id=model.run_id, position_target=target)
