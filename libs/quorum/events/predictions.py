"""Prediction family: model outputs with the model and feature-set versions that produced them."""

from __future__ import annotations

from pydantic import Field

from quorum.events.base import SeriesPoint


class PredictionMade(SeriesPoint):
    FAMILY = "predictions"
    PRODUCERS = ("inference",)
    ROUTING = ("exchange", "symbol", "timeframe")

    model_name: str
    model_version: str
    feature_set: str
    horizon: int = Field(ge=1, description="candles ahead the prediction is about")
    p_up: float | None = Field(ge=0.0, le=1.0, description="probability the close rises; None in warm-up")
