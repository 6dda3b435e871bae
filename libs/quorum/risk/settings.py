"""Risk's configuration, read from ``QUORUM_RISK_*``: the risk service and the runner use this one class."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from quorum.risk.decide import RiskParams
from quorum.risk.profiles import RiskConfig
from quorum.risk.sizing import MarketRules
from quorum.runtime.settings import ServiceSettings


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_step: Decimal = Field(default=Decimal("0.00001"), gt=0)
    min_notional: Decimal = Field(default=Decimal("10"), ge=0)


class RiskSettingsBase(ServiceSettings):
    """What risk decides with (read by the risk service and by the runner from the same variables)."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_RISK_", extra="ignore", frozen=True)

    config: RiskConfig = Field(default_factory=RiskConfig, description="JSON RiskConfig: profiles, actions, ...")
    market_rules: dict[str, Rules] = Field(default_factory=dict, description="per symbol lot step / min notional")
    default_rules: Rules = Field(default_factory=Rules)

    def params(self) -> RiskParams:
        def rules(r: Rules) -> MarketRules:
            return MarketRules(lot_step=r.lot_step, min_notional=r.min_notional)

        return RiskParams(config=self.config, rules={k: rules(v) for k, v in self.market_rules.items()},
                          default_rules=rules(self.default_rules), default_profile=self.risk_profile,
                          trading_mode=self.trading_mode)
