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
    expected_return: float | None = Field(default=None, allow_inf_nan=False,
                                          description="expected log return over the horizon; None in warm-up or "
                                                      "from a model that gives only a direction (the baseline)")
    run_id: str | None = Field(default=None, max_length=64,
                               description="the MLflow run that trained the model; None for a built-in model")
    position_target: float | None = Field(default=None, ge=0.0, le=1.0,
                                          description="a position policy's target, 0 flat to 1 fully long (spot, "
                                                      "no leverage); None from a model that predicts returns")
