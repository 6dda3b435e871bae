"""What a strategy sees and what it says. Strategies are pure: no I/O, no clock, no randomness; the same
input always yields the same signal, which is what makes a council decision reproducible and explainable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from math import isfinite
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from quorum.learning.regime import Regime
from quorum.types import Action


class RiskTag(StrEnum):
    """How much risk a strategy's signals carry; the active risk profile decides which tags may vote."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ProducerKind(StrEnum):
    """Where a vote comes from. Sentiment and on-chain producers vote like the others when present."""

    TECHNICAL = "technical"
    MODEL = "model"
    SENTIMENT = "sentiment"
    ONCHAIN = "onchain"


@dataclass(frozen=True)
class FeatureRow:
    """One closed candle's feature vector. ``values`` holds None for an indicator still warming up."""

    ts: datetime
    close: Decimal
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class PredictionView:
    model_name: str
    model_version: str
    horizon: int
    p_up: float | None
    position_target: float | None = None  # a position policy's (0 flat .. 1 long), not a prediction of returns
    expected_return: float | None = None  # the expected log return over the horizon (None: direction only)


@dataclass(frozen=True)
class PositionView:
    """The long position a strategy may take into account (spot is long-only: quantity >= 0)."""

    quantity: Decimal = Decimal(0)
    average_cost: Decimal = Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.quantity > 0


@dataclass(frozen=True)
class StrategyInput:
    """Feature history for one series (oldest first; the last row is the candle being decided) plus the
    latest predictions and the position context."""

    exchange: str
    symbol: str
    timeframe: str
    history: tuple[FeatureRow, ...]
    predictions: tuple[PredictionView, ...] = ()
    position: PositionView = field(default_factory=PositionView)

    def __post_init__(self) -> None:
        if not self.history:
            raise ValueError("a strategy input needs at least the current feature row")

    @property
    def current(self) -> FeatureRow:
        return self.history[-1]

    @property
    def ts(self) -> datetime:
        return self.current.ts

    @property
    def close(self) -> Decimal:
        return self.current.close

    def value(self, name: str, back: int = 0) -> float | None:
        """Feature ``name`` ``back`` candles ago (0 = now); None when unknown, warming up, or not finite."""
        history = self.history
        if back < 0 or back >= len(history):
            return None
        v = history[-1 - back].values.get(name)
        return v if v is not None and isfinite(v) else None

    def closes(self, n: int) -> tuple[Decimal, ...]:
        """The last ``n`` closes (fewer when the history is shorter), oldest first."""
        return tuple([r.close for r in self.history[-n:]])

    def prediction(self, model_name: str | None = None) -> PredictionView | None:
        """The prediction of ``model_name`` (any model when None) that is out of warm-up, if there is one."""
        for p in self.predictions:
            if p.p_up is not None and (model_name is None or p.model_name == model_name):
                return p
        return None

    def target(self, model_name: str | None = None) -> PredictionView | None:
        """The position policy's output (of ``model_name``, any when None) that is out of warm-up, if any."""
        for p in self.predictions:
            if p.position_target is not None and (model_name is None or p.model_name == model_name):
                return p
        return None


@dataclass(frozen=True)
class Signal:
    """A strategy's opinion on one candle. SELL means sell-to-close (spot long-only)."""

    strategy: str
    direction: Action
    confidence: float
    reason_codes: tuple[str, ...] = ()
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    metadata: Mapping[str, float | str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.direction, Action):
            raise TypeError(f"direction must be an Action, got {self.direction!r}")
        if not (isinstance(self.confidence, (int, float)) and 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence!r}")
        if self.direction is Action.HOLD and self.confidence != 0.0:
            raise ValueError("a HOLD signal carries confidence 0")


def hold(strategy: str, *reasons: str, **metadata: float | str | None) -> Signal:
    return Signal(strategy, Action.HOLD, 0.0, tuple(reasons), metadata=metadata)


class StrategyBase(BaseModel):
    """Common configuration of every strategy; concrete strategies add their parameters as fields.

    Configured from JSON (a discriminated union on ``type``), immutable, and unknown keys are refused so a
    typo in a parameter name fails at start-up rather than silently using a default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    KIND: ClassVar[ProducerKind] = ProducerKind.TECHNICAL

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$",
                      description="instance name: the voter's name in decisions and the karma scorecard")
    risk_tag: RiskTag = RiskTag.MEDIUM
    weight: float = Field(default=1.0, ge=0.0, le=100.0, description="vote weight in Council mode")
    enabled: bool = True
    regimes: tuple[Regime, ...] | None = Field(
        default=None, min_length=1,
        description="the market regimes this strategy votes in (quorum.learning.regime); None: every regime. In "
                    "another known regime it abstains (REGIME_EXCLUDED) and is not counted in the quorum")

    @property
    def kind(self) -> ProducerKind:
        return self.KIND

    def votes_in(self, regime: Regime | None) -> bool:
        """Whether it votes in ``regime``; an unknown regime (warming up) restricts nobody."""
        return regime is None or self.regimes is None or regime in self.regimes

    @property
    def lookback(self) -> int:
        """Feature rows of history this strategy needs, the current one included."""
        return 1

    def evaluate(self, inp: StrategyInput) -> Signal:  # pragma: no cover - abstract
        raise NotImplementedError
