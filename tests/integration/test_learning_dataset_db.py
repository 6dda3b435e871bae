"""A training dataset built from the stored candles holds, for every candle, the very feature values the features
service stored for it: training and serving compute features with one code path."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import pytest
from quorum.db.engine import create_engine
from quorum.db.tables import features
from quorum.infra.embedded import free_port
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_database
from quorum.times import to_ms
from sqlalchemy import select

from services.features.service import FeaturesService, FeaturesSettings
from tests.integration.test_features_service import _is, replay
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

CANDLES = 700  # past the 480-bar EMA's warm-up and its 60-bar slope


async def test_the_dataset_from_stored_candles_equals_the_features_the_service_stored(infra: Any,
                                                                                      database_url: str) -> None:
    csv = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    async with running(FeaturesService(FeaturesSettings(http_port=free_port()))):
        async with running(replay(CANDLES, csv)):
            await until(f"{CANDLES} feature rows", lambda: _is(database_url, CANDLES), timeout=300)
    spec = DatasetSpec(symbols=("BTC/USDT",), scale_free=False)
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        frames = await frames_from_database(conn, spec)
        stored = {to_ms(r.ts.astimezone(UTC)): r.values for r in (await conn.execute(
            select(features.c.ts, features.c["values"]))).all()}
    await engine.dispose()

    ds = build_dataset(frames, spec)

    assert frames["BTC/USDT"].height == CANDLES and ds.frame.height > 100
    for row in ds.frame.iter_rows(named=True):
        served = stored[row["ts"]]
        for name in spec.feature_set.feature_names:
            want, got = served[name], row[name]
            assert want is not None and got is not None, (row["ts"], name)
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (row["ts"], name, got, want)
