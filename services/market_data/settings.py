"""The market-data service's settings (``QUORUM_MARKET_DATA_*``): the replay, the live feeds, backfills.

Their own module so that the live pipeline can read them without importing the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from quorum.marketdata.files import SeriesId, infer_series
from quorum.marketdata.universe import get_universe
from quorum.runtime.settings import ServiceSettings


class MarketDataSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_MARKET_DATA_", extra="ignore", frozen=True)

    http_port: int = 8101
    replay_file: Path | None = Field(default=None, description="CSV/Parquet OHLCV file to replay at start-up")
    replay_speed: float = Field(default=0.0, ge=0.0, description="0 = as fast as possible, N = N x real time")
    replay_limit: int | None = Field(default=None, ge=1, description="stop after this many candles")
    replay_batch: int = Field(default=500, ge=1, le=10_000)
    replay_pacing: Literal["settled", "free"] = Field(
        default="settled", description="settled: publish the next candle once the pipeline handled the last "
        "(reproducible decisions and fills, across crashes); free: as fast as the bus takes them")
    replay_settle_consumers: list[str] | None = Field(
        default=None, description="durables a settled replay waits for (default: every declared one)")
    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    source: Literal["replay", "live", "none"] | None = Field(
        default=None, description="default: replay when a replay file is set, else none")
    live_exchange: str = Field(default="binance", pattern=r"^[a-z0-9_]+$")
    live_secondary: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$",
                                       description="fallback source for the same symbols")
    universe: str = "v1"
    live_symbols: tuple[str, ...] = Field(default=(), description="overrides the universe when given")
    live_timeframes: tuple[str, ...] = ("1m",)
    book_depth: int = Field(default=20, ge=0, le=1000, description="top-N levels per snapshot; 0 = off")
    book_interval_s: float = Field(default=1.0, gt=0)
    poll_every_s: float = Field(default=5.0, gt=0, description="REST polling period where there is no socket")
    gap_repair_interval_s: float = Field(default=300.0, ge=0, description="0 = off")
    gap_lookback_h: float = Field(default=48.0, gt=0)
    exchange_urls: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="JSON: per exchange, ccxt URL overrides (mirrors, local fakes)")
    backfill_base_url: str | None = Field(default=None, description="REST base URL override for backfills")

    @field_validator("replay_file")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"replay file {v} does not exist")
        return v

    @model_validator(mode="after")
    def _source(self) -> MarketDataSettings:
        if self.source is None:
            object.__setattr__(self, "source", "replay" if self.replay_file else "none")
        if self.source == "replay" and self.replay_file is None:
            raise ValueError("source=replay needs QUORUM_MARKET_DATA_REPLAY_FILE")
        get_universe(self.universe)  # unknown versions fail at start-up, not at first use
        return self

    def series(self) -> SeriesId:
        assert self.replay_file is not None
        inferred = infer_series(self.replay_file)
        exchange = self.exchange or (inferred and inferred.exchange)
        symbol = self.symbol or (inferred and inferred.symbol)
        timeframe = self.timeframe or (inferred and inferred.timeframe)
        if not (exchange and symbol and timeframe):
            raise ValueError(
                f"cannot infer exchange/symbol/timeframe from {self.replay_file.name}; set "
                "QUORUM_MARKET_DATA_EXCHANGE, _SYMBOL and _TIMEFRAME"
            )
        return SeriesId(exchange, symbol, timeframe)
