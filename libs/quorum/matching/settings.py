"""The paper venue's configuration, read from ``QUORUM_MATCHING_*``: the matching service and the runner use
this one class."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from quorum.matching import EngineConfig, FeeAsset, LatencyKind, LatencyModel, SyntheticBookModel, VenueFees
from quorum.matching.venue import REMEMBER_FINAL, VenueParams
from quorum.runtime.settings import ServiceSettings


class Latency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LatencyKind = LatencyKind.UNIFORM
    low_ms: int = Field(default=50, ge=0)
    high_ms: int = Field(default=200, ge=0)
    mean_ms: float = Field(default=100.0, ge=0)
    sd_ms: float = Field(default=40.0, ge=0)


class Book(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    spread_bps: Decimal = Field(default=Decimal("2"), ge=0)
    levels: int = Field(default=10, ge=1, le=1000)
    level_step_bps: Decimal = Field(default=Decimal("1"), gt=0)
    level_volume_fraction: Decimal = Field(default=Decimal("0.005"), gt=0, le=1)


class VenueConfig(ServiceSettings):
    """The paper venue's model (read by the matching service and by the runner from the same variables)."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_MATCHING_", extra="ignore", frozen=True)

    venue: str = "paper"
    maker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)
    taker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)
    fee_asset: FeeAsset = Field(default=FeeAsset.QUOTE, description="quote, or the asset received (as Binance)")
    latency: Latency = Field(default_factory=Latency)
    synthetic_book: Book = Field(default_factory=Book, description="the book assumed from a candle")
    candle_fill_fraction: Decimal = Field(default=Decimal("0.1"), gt=0, le=1)
    lot_step: Decimal | None = Field(default=None, gt=0)
    seed: int = Field(default=0, description="latency RNG seed (per symbol: seed + a hash of the symbol)")

    def engine_config(self) -> EngineConfig:
        lat, book = self.latency, self.synthetic_book
        return EngineConfig(
            fees=VenueFees(self.maker_fee, self.taker_fee, self.fee_asset),
            latency=LatencyModel(lat.kind, lat.low_ms, lat.high_ms, lat.mean_ms, lat.sd_ms),
            synthetic_book=SyntheticBookModel(book.spread_bps, book.levels, book.level_step_bps,
                                              book.level_volume_fraction),
            candle_fill_fraction=self.candle_fill_fraction, lot_step=self.lot_step, remember_final=REMEMBER_FINAL)

    def params(self) -> VenueParams:
        return self.venue_params()

    def venue_params(self) -> VenueParams:
        return VenueParams(self.engine_config(), self.seed)
