"""The gateway's configuration (``QUORUM_GATEWAY_*``), apart from the service so routes and dependencies can
name it without importing the service."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict
from quorum.cli import default_data_dir
from quorum.risk.profiles import RiskConfig
from quorum.runtime.settings import ServiceSettings

DEV_TOKEN = "dev-token-change-me"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_GATEWAY_", extra="ignore", frozen=True)

    http_port: int = 8000
    grafana_url: str = Field(default="http://localhost:3000", description="the Grafana /status links point at "
                             "(compose: port 3000; a native stack: wherever its Grafana runs)")
    bus_metrics_s: float = Field(default=5.0, gt=0, le=300, description="seconds between readings of consumer lag "
                                 "and stream depths from JetStream (the quorum_consumer_* / quorum_stream_* gauges)")
    api_token: SecretStr = Field(default=SecretStr(DEV_TOKEN), min_length=12)
    control_timeout_s: float = Field(default=10.0, gt=0, le=120)
    confirmation_ttl_s: float = Field(default=120.0, gt=0, le=3600, description="how long a confirmation token lives")
    risk_config: RiskConfig = Field(default_factory=RiskConfig, validation_alias=AliasChoices("QUORUM_RISK_CONFIG"),
                                    description="risk's configuration (read, to show the active limits)")
    health_stale_s: float = Field(default=20.0, gt=0)
    rate_limit_per_s: float = Field(default=20.0, gt=0, description="sustained requests per second per token")
    rate_limit_burst: float = Field(default=60.0, ge=1, description="requests a token may send at once")
    auth_failures_per_s: float = Field(default=0.2, gt=0, description="failed authentications per second a "
                                                                      "client address may make, sustained")
    auth_failure_burst: float = Field(default=10.0, ge=1, description="failed authentications a client may make "
                                                                      "at once before it gets 429")
    cors_origins: tuple[str, ...] = Field(default=(), description="allowed browser origins; none: CORS off")
    console_idle_timeout_s: float = Field(default=900.0, gt=0, le=86_400,
                                          description="a console session ends after this long without an "
                                                      "operator's request (its live stream does not count)")
    console_max_sessions: int = Field(default=1000, ge=1, le=100_000,
                                      description="console sessions kept at once (the least recently active "
                                                  "goes first)")
    pin_scrypt_n: int = Field(default=2**15, ge=2**10, description="scrypt cost for the master PIN")
    exchange_base_urls: dict[str, str] = Field(default_factory=dict,
                                               description="REST base URL per exchange (mirrors, local fakes)")

    data_dir: Path = Field(default_factory=default_data_dir, description="the shared market data (default: "
                           "$QUORUM_DATA_DIR); a backtest's data file is one of its ohlcv/ files")
    backtest_report_dir: Path = Field(default=Path(".quorum/backtests"),
                                      description="where backtest reports are written, one folder per backtest")
    backtest_workers: int = Field(default=1, ge=1, le=64, description="backtests run at once (worker processes)")

    def secrets_in_use(self) -> dict[str, str]:
        return {**super().secrets_in_use(), "QUORUM_GATEWAY_API_TOKEN": self.api_token.get_secret_value()}
