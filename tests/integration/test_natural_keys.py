"""One candle, one decision, whatever the event id (issue 12, item 5): a candle re-published under a new event id
(same exchange, symbol, timeframe, open time) gives one features row, one prediction, one decision and one
announcement of each, through the real features, inference and council services over NATS and PostgreSQL; each
service holds to the natural key on its own; and the database refuses a second decision for a candle."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from quorum.db.engine import create_engine
from quorum.db.tables import decisions, features, predictions
from quorum.devstack import migrate
from quorum.events.base import Payload
from quorum.events.features import FeaturesComputed
from quorum.events.market_data import CandleClosed
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade
from quorum.infra.embedded import free_port
from quorum.runtime.settle import awaited_consumers, is_settled
from quorum.subjects import subject

from services.council.service import CouncilService, CouncilSettings
from services.features.service import FeaturesService, FeaturesSettings
from services.inference.service import InferenceService, InferenceSettings
from tests.integration.test_council_service import count, prediction, seed
from tests.integration.test_market_data_service import running, until
from tests.integration.test_trading_services import T0, candle
from tests.integration.test_venue_market_time import send, store
from tests.support import run_sql

pytestmark = pytest.mark.integration

D = Decimal
PIPELINE = ("features-candles", "inference-features", "council-predictions")


async def settled(js: Any, url: str, *durables: str) -> None:
    engine = create_engine(url)
    try:
        async def done() -> bool:
            return (await is_settled(js, engine, awaited_consumers(only=durables)))[0]

        await until(f"{', '.join(durables)} settled", done)
    finally:
        await engine.dispose()


async def announced(js: Any, stream: str, cls: type[Payload]) -> int:
    """How many messages of this type the bus holds."""
    info = await js.stream_info(stream, subjects_filter=subject(cls))
    return sum((info.state.subjects or {}).values())


# --- the pipeline ------------------------------------------------------------------------------------------------

async def test_a_candle_republished_under_a_new_event_id_is_computed_predicted_and_decided_once(
        infra: Any, database_url: str) -> None:
    url = database_url
    bars = [candle(i, str(100 + i)) for i in range(3)]
    await store(url, *bars)
    services = (FeaturesService(FeaturesSettings(http_port=free_port())),
                InferenceService(InferenceSettings(http_port=free_port())),
                CouncilService(CouncilSettings(http_port=free_port())))
    async with running(*services):
        for b in bars:  # each candle, then at once its twin: a second event id for the same natural key
            await send(infra, b, key=f"original:{b.ts.isoformat()}")
            await send(infra, b, key=f"republished:{b.ts.isoformat()}")
        await until("three decisions", lambda: _is(url, decisions, 3))
        await settled(infra, url, *PIPELINE)
        # Once more, long after the first: the same candles under a third id each.
        for b in bars:
            await send(infra, b, key=f"again:{b.ts.isoformat()}")
        await settled(infra, url, *PIPELINE)

    assert await announced(infra, "MD", CandleClosed) == 9  # nine distinct events really went out
    assert [await count(url, t) for t in (features, predictions, decisions)] == [3, 3, 3]
    assert await announced(infra, "FEATURES", FeaturesComputed) == 3
    assert await announced(infra, "PREDICTIONS", PredictionMade) == 3
    assert await announced(infra, "COUNCIL", DecisionMade) == 3


async def test_inference_predicts_a_candle_once_whatever_the_features_event_id(infra: Any, database_url: str) -> None:
    url = database_url
    f = FeaturesComputed(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, feature_set="fs-test",
                         close=D(100), values={"close_over_ema": 0.01})
    async with running(InferenceService(InferenceSettings(http_port=free_port()))):
        await send(infra, f, key="features-1")
        await send(infra, f, key="features-2")
        await settled(infra, url, "inference-features")

    assert await count(url, predictions) == 1
    assert await announced(infra, "FEATURES", FeaturesComputed) == 2
    assert await announced(infra, "PREDICTIONS", PredictionMade) == 1


async def test_the_council_decides_a_candle_once_whatever_the_prediction_event_id(
        infra: Any, database_url: str) -> None:
    url = database_url
    history = await seed(url, 30)
    last = prediction(history[-1])
    async with running(CouncilService(CouncilSettings(http_port=free_port()))):
        await send(infra, last, key="prediction-1")
        await send(infra, last, key="prediction-2")
        await settled(infra, url, "council-predictions")

    assert await count(url, decisions) == 1
    assert await announced(infra, "PREDICTIONS", PredictionMade) == 2
    assert await announced(infra, "COUNCIL", DecisionMade) == 1


async def _is(url: str, table: Any, n: int) -> bool:
    return await count(url, table) == n


# --- the constraint ------------------------------------------------------------------------------------------------

INSERT_DECISION = (
    "INSERT INTO decisions (decision_id, exchange, symbol, timeframe, ts, mode, action, confidence, threshold,"
    " reason_codes, model_versions, feature_set, price)"
    " VALUES ($1, 'binance', 'BTC/USDT', '1h', $2, 'COUNCIL', 'HOLD', 0.5, 0.4, '[]', '{}', 'fs-test', 100)")


def test_the_database_refuses_a_second_decision_for_the_same_candle(database_url: str) -> None:
    run_sql(database_url, INSERT_DECISION, uuid.uuid4(), T0)
    run_sql(database_url, INSERT_DECISION, uuid.uuid4(), T0 + timedelta(hours=1))  # the next candle is fine

    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        run_sql(database_url, INSERT_DECISION, uuid.uuid4(), T0)

    assert refused.value.constraint_name == "uq_decisions_candle"
    assert len(run_sql(database_url, "SELECT 1 FROM decisions")) == 2


def test_the_migration_stops_on_a_database_that_already_holds_two_decisions_for_one_candle(
        empty_database_url: str) -> None:
    url = empty_database_url
    migrate(url, "0006")
    run_sql(url, INSERT_DECISION, uuid.uuid4(), T0)
    run_sql(url, INSERT_DECISION, uuid.uuid4(), T0)

    with pytest.raises(Exception, match="uq_decisions_candle|could not create unique index"):
        migrate(url)

    assert run_sql(url, "SELECT version_num FROM alembic_version") == [{"version_num": "0006"}]
