"""Settings: one class per service, each with its own env prefix; infrastructure URLs are shared names.

Secrets are ``SecretStr`` and a service refuses to start outside development with a default secret.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from quorum.types import RiskProfile, TradingMode

DEV_DATABASE_URL = "postgresql+asyncpg://quorum:quorum@127.0.0.1:5432/quorum"
DEV_SECRETS = frozenset({"quorum", "dev-token-change-me", "changeme", "admin", "password"})


class DefaultSecretError(ValueError):
    pass


class ServiceSettings(BaseSettings):
    """Common to every service. Subclasses set ``env_prefix`` (e.g. ``QUORUM_RISK_``) and a port."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_", extra="ignore", frozen=True)
    SERVICE: ClassVar[str] = "service"

    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias=AliasChoices("QUORUM_ENVIRONMENT")
    )
    trading_mode: TradingMode = Field(
        default=TradingMode.PAPER, validation_alias=AliasChoices("QUORUM_TRADING_MODE")
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL"))
    database_url: SecretStr = Field(
        default=SecretStr(DEV_DATABASE_URL), validation_alias=AliasChoices("DATABASE_URL")
    )
    paper_starting_cash: Decimal = Field(
        default=Decimal("10000"), gt=0, validation_alias=AliasChoices("QUORUM_PAPER_STARTING_CASH"),
        description="opening paper balance in the quote currency (risk and ledger must agree, hence shared)",
    )
    quote_currency: str = Field(
        default="USDT", pattern=r"^[A-Z0-9]{2,10}$", validation_alias=AliasChoices("QUORUM_QUOTE_CURRENCY")
    )
    risk_profile: RiskProfile = Field(
        default=RiskProfile.MEDIUM, validation_alias=AliasChoices("QUORUM_RISK_PROFILE"),
        description="active risk profile, recorded with every audited action",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("QUORUM_LOG_LEVEL"))
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8100, ge=0, le=65535)
    heartbeat_s: float = Field(default=5.0, gt=0)

    def secrets_in_use(self) -> dict[str, str]:
        """Secret values to check against the known defaults; subclasses add theirs."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url.get_secret_value())
        return {"DATABASE_URL password": url.password or ""}

    @model_validator(mode="after")
    def _safe(self) -> ServiceSettings:
        if self.trading_mode is TradingMode.LIVE:
            raise ValueError(
                "QUORUM_TRADING_MODE=LIVE is refused: live trading is not enabled in this build "
                "(it needs the gateway's audited multi-step authorization)"
            )
        if self.environment == "production":
            weak = [name for name, value in self.secrets_in_use().items() if value in DEV_SECRETS]
            if weak:
                raise DefaultSecretError(f"refusing to start in production with default secrets: {weak}")
        return self
