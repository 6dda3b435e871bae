"""Council family: each voter's signal and the council's decision, explainable voter by voter."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from quorum.events.base import Frozen, Payload, SeriesPoint
from quorum.types import Action, CouncilMode, Intent, PositiveDecimal, RiskProfile


class Vote(Frozen):
    """One voter's signal as the council counted it. ``eligible`` false: the risk profile filtered it out
    (``filtered_reason``), or the strategy does not vote in the current regime (``REGIME_EXCLUDED``)."""

    strategy: str
    producer: str = Field(description="producer kind: technical, model, sentiment, onchain")
    risk_tag: str
    action: Action
    confidence: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0)
    eligible: bool = True
    filtered_reason: str | None = None
    stop_loss: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None
    reason_codes: tuple[str, ...] = ()
    metadata: dict[str, float | str | None] = Field(default_factory=dict)


class DecisionMade(SeriesPoint):
    """The council's decision for one candle. HOLD decisions are published too: they explain inaction.

    ``intent`` and ``fraction`` tell risk how to size: an ENTRY is a full-size entry, a REENTRY tops up
    ``fraction`` of a full entry, and TAKE_PROFIT / DERISK / EXIT sell ``fraction`` of the position.
    """

    FAMILY = "council"
    PRODUCERS = ("council",)
    ROUTING = ("exchange", "symbol")
    SCHEMA_VERSION = 2

    mode: CouncilMode
    action: Action
    intent: Intent = Intent.NONE
    fraction: Decimal = Field(default=Decimal(0), ge=0, le=1)
    confidence: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0)
    agreement: dict[Action, float] = Field(default_factory=dict, description="weighted agreement per direction")
    votes: tuple[Vote, ...]
    reason_codes: tuple[str, ...] = ()
    risk_profile: RiskProfile = RiskProfile.MEDIUM
    model_versions: tuple[str, ...] = ()
    feature_set: str
    price: PositiveDecimal = Field(description="reference price: the close of the decision candle")
    stop_loss: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None
    atr: PositiveDecimal | None = Field(default=None, description="ATR at the decision, for risk's default stop")
    regime: str | None = Field(default=None, max_length=32,
                               description="the market regime the council decided in (quorum.learning.regime); "
                                           "None while its features warm up")


class StrategyDisabled(Payload):
    """A strategy raised or returned garbage for this symbol: it no longer votes there until re-enabled."""

    FAMILY = "council"
    PRODUCERS = ("council",)
    ROUTING = ("exchange", "symbol")

    exchange: str
    symbol: str
    strategy: str
    error: str
