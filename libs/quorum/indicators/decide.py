"""The features service's decision: fold a closed candle into its series' streaming state and announce the
features at that candle. The service and the runner both call this, so their features are the same values."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from quorum.events.features import FeaturesComputed
from quorum.events.market_data import CandleClosed
from quorum.indicators.engine import FeatureEngine
from quorum.indicators.spec import FeatureSetSpec
from quorum.runtime.settings import ServiceSettings


class FeaturesConfig(ServiceSettings):
    """What the features service computes (``QUORUM_FEATURES_FEATURE_SET``), for the service and the runner."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_FEATURES_", extra="ignore", frozen=True)

    feature_set: FeatureSetSpec = FeatureSetSpec()


def features_of(engine: FeatureEngine, candle: CandleClosed, feature_set: str) -> FeaturesComputed:
    """``engine`` is the series' state before ``candle`` and is advanced by it (the caller owns it: the service
    advances a copy it adopts only after the commit). ``feature_set``: the spec's version."""
    return FeaturesComputed(exchange=candle.exchange, symbol=candle.symbol, timeframe=candle.timeframe, ts=candle.ts,
                            feature_set=feature_set, close=candle.close, values=engine.update(candle))
