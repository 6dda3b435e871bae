"""Settings: one class per service, each with its own env prefix; infrastructure URLs are shared names.

Secrets are ``SecretStr`` and a service refuses to start outside development with a default secret.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from quorum.types import RiskProfile, TradingMode

DEV_DATABASE_URL = "postgresql+asyncpg://quorum:quorum@127.0.0.1:5432/quorum"
DEV_CHAIN_KEY = "dev-chain-key-change-me"
DEV_APP_DB_PASSWORD = "quorum-app-dev-password"
DEV_SECRETS = frozenset({"quorum", "dev-token-change-me", "changeme", "admin", "password", DEV_CHAIN_KEY,
                         DEV_APP_DB_PASSWORD})


class DefaultSecretError(ValueError):
    pass


def chain_key_field() -> Any:
    """The key of the audit trail's and the journal's HMAC chains. It lives outside the database, so whoever
    owns the database can edit a row but cannot forge its hash."""
    return Field(default=SecretStr(DEV_CHAIN_KEY), min_length=16, validation_alias=AliasChoices("QUORUM_CHAIN_KEY"))


class ServiceSettings(BaseSettings):
    """Common to every service. Subclasses set ``env_prefix`` (e.g. ``QUORUM_RISK_``) and a port."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_", extra="ignore", frozen=True)
    SERVICE: ClassVar[str] = "service"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except (ValidationError, SettingsError) as exc:
            raise ConfigurationError(explain(type(self), exc)) from None

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
    chain_key: SecretStr = chain_key_field()
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("QUORUM_LOG_LEVEL"))
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8100, ge=0, le=65535)
    heartbeat_s: float = Field(default=5.0, gt=0)
    batch_transactions: bool = Field(
        default=True, description="apply each fetched batch of a consumer in one transaction (a savepoint per "
                                  "message); off: one transaction per message")
    consume_batch: int = Field(default=64, ge=1, le=1000, description="messages fetched (and applied in one "
                               "transaction) at once per consumer; above 64, PostgreSQL's subtransaction cache "
                               "overflows and every backend's snapshots get slower")

    def secrets_in_use(self) -> dict[str, str]:
        """Secret values to check against the known defaults; subclasses add theirs."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url.get_secret_value())
        return {"DATABASE_URL password": url.password or "", "QUORUM_CHAIN_KEY": self.chain_key.get_secret_value()}

    @model_validator(mode="after")
    def _safe(self) -> ServiceSettings:
        if self.trading_mode is TradingMode.LIVE:
            raise ValueError(
                "QUORUM_TRADING_MODE=LIVE is refused: live trading is not enabled in this build "
                "(it needs the gateway's audited multi-step authorization)"
            )
        refuse_default_secrets(self.environment, self.secrets_in_use())
        return self


def refuse_default_secrets(environment: str, secrets: dict[str, str]) -> None:
    if environment == "production":
        weak = [name for name, value in secrets.items() if value in DEV_SECRETS]
        if weak:
            raise DefaultSecretError(f"refusing to start in production with default secrets: {weak}")


class StackSecrets(BaseSettings):
    """Secrets the steps outside any service need: migrations (they create the app login role and key the
    chains) and ``quorum audit|ledger verify``. Refused at their defaults in production, like every secret."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias=AliasChoices("QUORUM_ENVIRONMENT")
    )
    chain_key: SecretStr = chain_key_field()
    app_db_password: SecretStr = Field(
        default=SecretStr(DEV_APP_DB_PASSWORD), min_length=12, validation_alias=AliasChoices("QUORUM_APP_DB_PASSWORD"),
        description="password of the login role the services connect as (created by the migrations)",
    )

    @model_validator(mode="after")
    def _safe(self) -> StackSecrets:
        refuse_default_secrets(self.environment, {"QUORUM_CHAIN_KEY": self.chain_key.get_secret_value(),
                                                  "QUORUM_APP_DB_PASSWORD": self.app_db_password.get_secret_value()})
        return self


class ConfigurationError(ValueError):
    """A setting is wrong; the message names the environment variable to fix, not just the field."""


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a field is read from: its alias, or the class's prefix + the field upper-cased."""
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    if info is None:
        return field  # an alias already
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def explain(cls: type[BaseSettings], exc: ValidationError | SettingsError) -> str:
    lines: list[str] = []
    if isinstance(exc, SettingsError):  # the value is not even JSON
        found = re.search(r'field "([^"]+)"', str(exc))
        name = env_name(cls, found.group(1)) if found else "?"
        lines.append(f"{name}: not valid JSON ({exc.__cause__ or exc})")
        return "\n".join(lines)
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if not loc:  # a rule across fields: its message names what it is about
            lines.append(err["msg"])
            continue
        info = cls.model_fields.get(loc[0])
        where = env_name(cls, loc[0]) + (f" ({'.'.join(loc)})" if len(loc) > 1 else "")
        secret = info is not None and info.annotation is SecretStr
        shown = "" if secret or "input" not in err else f" [got {str(err['input'])[:80]!r}]"
        lines.append(f"{where}: {err['msg']}{shown}")
    return "\n".join(lines)
