"""Signal family: each voter's signal and the council's decision, explainable voter by voter."""

from __future__ import annotations

from pydantic import Field

from quorum.events.base import Frozen, SeriesPoint
from quorum.types import Action, CouncilMode, PositiveDecimal


class Vote(Frozen):
    producer: str
    action: Action
    confidence: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0)
    reason_codes: tuple[str, ...] = ()


class DecisionMade(SeriesPoint):
    """The council's decision for one candle. HOLD decisions are published too: they explain inaction."""

    FAMILY = "council"
    ROUTING = ("exchange", "symbol")

    mode: CouncilMode
    action: Action
    confidence: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0)
    votes: tuple[Vote, ...]
    reason_codes: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()
    feature_set: str
    price: PositiveDecimal = Field(description="reference price: the close of the decision candle")
