"""Risk limits per operator profile and the risk service's configuration, validated at load time so a
dangerous setting fails at start-up rather than at the first order."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quorum.types import NonNegativeDecimal, PositiveDecimal, RiskProfile

STOP_DISTANCE_CEILING_PCT = Decimal(15)


class LimitMode(StrEnum):
    PERCENT = "PERCENT"  # of equity (of day-start equity for the daily loss)
    ABSOLUTE = "ABSOLUTE"  # in quote currency


class Limit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: LimitMode
    value: PositiveDecimal

    def amount(self, equity: Decimal) -> Decimal:
        return equity * self.value / 100 if self.mode is LimitMode.PERCENT else self.value


def _pct(value: str) -> Limit:
    return Limit(mode=LimitMode.PERCENT, value=Decimal(value))


class ProfileLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_per_trade_pct: Annotated[Decimal, Field(gt=0, le=10)]  # of equity lost if the stop is hit
    max_drawdown_pct: Annotated[Decimal, Field(gt=0, lt=100)]
    max_concurrent_positions: int = Field(ge=1)
    max_total_exposure: Limit
    max_cluster_exposure: Limit
    max_stop_distance_pct: Annotated[Decimal, Field(gt=0)]
    min_confidence: float = Field(ge=0.0, le=1.0)
    daily_loss_limit: Limit
    # The optimizer rejects a candidate configuration whose out-of-sample drawdown is deeper than this (percent
    # of the peak); None: the profile's own max_drawdown_pct.
    optimizer_max_strategy_drawdown: Annotated[Decimal, Field(gt=0, lt=100)] | None = None

    @property
    def strategy_drawdown_limit_pct(self) -> Decimal:
        return self.optimizer_max_strategy_drawdown or self.max_drawdown_pct

    @field_validator("max_stop_distance_pct")
    @classmethod
    def _stop_ceiling(cls, value: Decimal) -> Decimal:
        if value > STOP_DISTANCE_CEILING_PCT:
            raise ValueError(f"max_stop_distance_pct {value} is above the {STOP_DISTANCE_CEILING_PCT}% ceiling: "
                             "a stop that far from the entry does not bound the loss")
        return value


DEFAULT_PROFILES: Mapping[RiskProfile, ProfileLimits] = MappingProxyType({
    RiskProfile.LOW: ProfileLimits(
        risk_per_trade_pct=Decimal("0.5"), max_drawdown_pct=Decimal(10), max_concurrent_positions=3,
        max_total_exposure=_pct("30"), max_cluster_exposure=_pct("20"), max_stop_distance_pct=Decimal(5),
        min_confidence=0.6, daily_loss_limit=_pct("2"), optimizer_max_strategy_drawdown=Decimal(10)),
    RiskProfile.MEDIUM: ProfileLimits(
        risk_per_trade_pct=Decimal(1), max_drawdown_pct=Decimal(15), max_concurrent_positions=5,
        max_total_exposure=_pct("60"), max_cluster_exposure=_pct("35"), max_stop_distance_pct=Decimal(10),
        min_confidence=0.5, daily_loss_limit=_pct("3"), optimizer_max_strategy_drawdown=Decimal(15)),
    RiskProfile.HIGH: ProfileLimits(
        risk_per_trade_pct=Decimal(2), max_drawdown_pct=Decimal(25), max_concurrent_positions=8,
        max_total_exposure=_pct("90"), max_cluster_exposure=_pct("50"), max_stop_distance_pct=Decimal(15),
        min_confidence=0.3, daily_loss_limit=_pct("5"), optimizer_max_strategy_drawdown=Decimal(25)),
})


class DrawdownAction(StrEnum):
    HALT_ONLY = "HALT_ONLY"
    CANCEL_ORDERS_AND_HALT = "CANCEL_ORDERS_AND_HALT"
    MARKET_CLOSE_ALL_AND_HALT = "MARKET_CLOSE_ALL_AND_HALT"


class MissingStop(StrEnum):
    ATR = "ATR"  # derive the stop from the ATR when the decision carries none
    REFUSE = "REFUSE"


class RiskConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: dict[RiskProfile, ProfileLimits] = Field(default_factory=lambda: dict(DEFAULT_PROFILES))
    missing_stop: MissingStop = MissingStop.ATR
    default_stop_atr_mult: PositiveDecimal = Decimal(2)
    clusters: dict[str, str] = Field(default_factory=dict)  # "BTC/USDT" or base "BTC" -> cluster name
    fee_rate: NonNegativeDecimal = Decimal("0.001")  # reserved on top of a buy's notional
    drawdown_action: DrawdownAction = DrawdownAction.HALT_ONLY
    market_close_acknowledged: bool = False
    kill_after_consecutive_losses: int | None = Field(default=4, ge=1)  # None: never engage automatically

    @field_validator("profiles")
    @classmethod
    def _all_profiles(cls, value: dict[RiskProfile, ProfileLimits]) -> dict[RiskProfile, ProfileLimits]:
        missing = [p.value for p in RiskProfile if p not in value]
        if missing:
            raise ValueError(f"profiles must cover LOW, MEDIUM and HIGH; missing {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _market_close_needs_consent(self) -> RiskConfig:
        if self.drawdown_action is DrawdownAction.MARKET_CLOSE_ALL_AND_HALT and not self.market_close_acknowledged:
            raise ValueError("drawdown_action MARKET_CLOSE_ALL_AND_HALT sells every position at market, whatever "
                             "the price; set market_close_acknowledged=true to accept that")
        return self

    def cluster_of(self, symbol: str) -> str:
        """Exact symbol first, then its base asset; an unmapped symbol is a cluster of its own."""
        return self.clusters.get(symbol) or self.clusters.get(symbol.partition("/")[0]) or symbol
