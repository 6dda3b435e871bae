"""The council's configuration, read from ``QUORUM_COUNCIL_*``: the service and the runner use this one class."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from quorum.council.base import RiskTag, StrategyBase
from quorum.council.campaign import CampaignParams
from quorum.council.decide import CouncilParams
from quorum.council.engine import DEFAULT_PROFILE_FILTERS, Council, ProfileFilter, SymbolControl
from quorum.council.strategies import default_strategies, parse_strategies
from quorum.learning.regime import RegimeRule
from quorum.runtime.settings import ServiceSettings
from quorum.types import CouncilMode, RiskProfile


class CouncilConfig(ServiceSettings):
    """What the council decides with (read by the council service and by the runner from the same variables)."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_COUNCIL_", extra="ignore", frozen=True)

    mode: CouncilMode = Field(default=CouncilMode.SOLO, description="default for symbols without a control")
    threshold: float = Field(default=0.4, gt=0.0, le=1.0, description="default consensus threshold")
    solo_strategy: str = Field(default="trend", description="the strategy that decides in Solo mode by default")
    strategies: tuple[StrategyBase, ...] = Field(
        default_factory=default_strategies,
        description="JSON list of strategy specs ({type, name, risk_tag, weight, enabled, ...parameters})",
    )
    profile_filters: dict[RiskProfile, dict[str, Any]] = Field(
        default_factory=dict, description="per profile: {allowed_tags: [...], min_confidence: x}; overrides")
    campaign: CampaignParams = Field(default_factory=CampaignParams)
    regime_rule: RegimeRule = Field(default_factory=RegimeRule,
                                    description="thresholds of the market regime a strategy's `regimes` restrict it to")
    adaptive_weights: bool = Field(default=False, description="scale weights by karma hit rate")
    karma_min_samples: int = Field(default=20, ge=1)

    @field_validator("strategies", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return parse_strategies(value) if isinstance(value, str | list) else value

    def filters(self) -> dict[RiskProfile, ProfileFilter]:
        out = dict(DEFAULT_PROFILE_FILTERS)
        for profile, raw in self.profile_filters.items():
            base = out[profile]
            out[profile] = ProfileFilter(
                frozenset(RiskTag(t) for t in raw.get("allowed_tags", base.allowed_tags)),
                float(raw.get("min_confidence", base.min_confidence)))
        return out


    def params(self) -> CouncilParams:
        council = Council(self.strategies, self.filters(), self.campaign, self.regime_rule)
        if self.solo_strategy not in council.names:
            raise ValueError(f"QUORUM_COUNCIL_SOLO_STRATEGY={self.solo_strategy!r} is not a configured strategy")
        return CouncilParams(council, SymbolControl(self.mode, self.threshold, self.solo_strategy), self.risk_profile)
