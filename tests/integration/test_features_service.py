"""The features service over real NATS and PostgreSQL: its streaming values equal the batch computation, and
after a restart it rebuilds its state from the stored candles and continues with identical values."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from quorum.db.engine import create_engine
from quorum.db.tables import features
from quorum.indicators import FeatureSetSpec, compute_features, ohlcv_frame
from quorum.infra.embedded import free_port
from quorum.marketdata.files import read_rows
from sqlalchemy import func, select

from services.features.service import FeaturesService, FeaturesSettings
from services.market_data.service import MarketDataService
from services.market_data.settings import MarketDataSettings
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

FIRST, TOTAL = 120, 200




async def stored_features(url: str) -> list[dict[str, float | None]]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(features.c["values"]).order_by(features.c.ts))).scalars().all()
    await engine.dispose()
    return list(rows)


async def count_features(url: str) -> int:
    engine = create_engine(url)
    async with engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(features))).scalar_one()
    await engine.dispose()
    return int(n)


def replay(limit: int, csv: Any) -> MarketDataService:
    return MarketDataService(MarketDataSettings(http_port=free_port(), replay_file=csv, replay_limit=limit,
                                                replay_settle_consumers=["features-candles"]))


async def test_features_survive_a_restart_and_equal_the_batch_computation(infra: Any, database_url: str) -> None:
    url = database_url
    csv = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    async with running(FeaturesService(FeaturesSettings(http_port=free_port()))):
        async with running(replay(FIRST, csv)):
            await until(f"{FIRST} feature rows", lambda: _is(url, FIRST))
    # A fresh process: no state in memory, only what the database holds.
    async with running(FeaturesService(FeaturesSettings(http_port=free_port()))):
        async with running(replay(TOTAL, csv)):  # resumes after the first FIRST candles
            await until(f"{TOTAL} feature rows", lambda: _is(url, TOTAL))

    streamed = await stored_features(url)
    batch = compute_features(ohlcv_frame(read_rows(csv).head(TOTAL)), FeatureSetSpec()).drop("ts").to_dicts()
    assert len(streamed) == len(batch) == TOTAL
    for i, (got, want) in enumerate(zip(streamed, batch, strict=True)):
        assert got.keys() == want.keys()
        for name, value in want.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert got[name] is None, (i, name)
            else:
                assert got[name] is not None and abs(got[name] - value) <= 1e-9 * max(1.0, abs(value)), (i, name)


async def _is(url: str, n: int) -> bool:
    await asyncio.sleep(0)
    return await count_features(url) == n
