"""The market-data service as a whole, in-process over real NATS and PostgreSQL and real ccxt against local
fake exchanges: a backfill started through the gateway, and the live path (closed candles, order books)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quorum.clock import TestClock
from quorum.db.engine import create_engine
from quorum.db.tables import audit_log, candles, order_book_snapshots
from quorum.events import decode
from quorum.events.market_data import CandleClosed
from quorum.infra.embedded import free_port
from quorum.runtime.service import Service
from sqlalchemy import func, select

from services.gateway.service import GatewayService, GatewaySettings
from services.market_data.service import MarketDataService
from services.market_data.settings import MarketDataSettings
from tests.fakes.binance_rest import FakeBinance as FakeBinanceRest
from tests.fakes.binance_ws import FakeBinance as FakeBinanceLive
from tests.fakes.binance_ws import read_book, read_klines
from tests.integration.test_bus import stream_messages
from tests.support import DATA_DIR, data_file

pytestmark = pytest.mark.integration

TOKEN = "integration-token-0123456789"




@contextlib.asynccontextmanager
async def running(*services: Service) -> AsyncIterator[None]:
    for svc in services:
        await svc.start()
    try:
        yield
    finally:
        for svc in reversed(services):
            await svc.stop()


async def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def scalar(svc: Service, query: Any) -> Any:
    assert svc.engine is not None
    async with svc.engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()


async def test_a_backfill_started_through_the_gateway_lands_in_the_candles_table(infra: Any) -> None:
    data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    with FakeBinanceRest(DATA_DIR / "ohlcv", symbols=["BTC/USDT"]) as venue:
        md = MarketDataService(MarketDataSettings(http_port=free_port(), backfill_base_url=venue.url))
        gw = GatewayService(GatewaySettings(http_port=free_port(), api_token=TOKEN))
        async with running(md, gw):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.settings.http_port}", timeout=30,
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                bad = await api.post("/controls/backfill", json={"symbols": ["btc-usdt"], "since": "2021-04-05"})
                assert bad.status_code == 422
                r = await api.post("/controls/backfill", json={
                    "symbols": ["BTC/USDT"], "timeframes": ["1h"], "since": "2021-04-05T00:00:00Z",
                    "until": "2021-04-10T00:00:00Z", "reason": "integration"})
                assert r.status_code == 200, r.text
                assert r.json()["status"] == "CONFIRMED" and r.json()["confirmation"] == "BackfillStarted"
            expected = 5 * 24 + 1  # open times from since to until, inclusive
            await until("the backfill to finish", lambda: _count_is(md, expected))
            audited = await scalar(md, select(func.count()).select_from(audit_log)
                                   .where(audit_log.c.action == "backfill"))
            assert audited == 2  # REQUESTED and CONFIRMED
    assert venue.requests["/api/v3/klines"] >= 1


async def _count_is(svc: Service, n: int) -> bool:
    return await scalar(svc, select(func.count()).select_from(candles)) == n


async def test_live_mode_stores_and_publishes_closed_candles_and_book_snapshots(infra: Any) -> None:
    js = infra
    klines = read_klines(data_file("ohlcv", "binance_BTCUSDT_1m.csv"), count=5)
    book = read_book(data_file("orderbook", "binance_BTCUSDT_book_top20_20240808.csv"), count=40)
    async with FakeBinanceLive() as venue:
        venue.load_klines("BTCUSDT", "1m", klines, updates_per_candle=2)
        venue.load_book("BTCUSDT", book)
        clock = TestClock(datetime.fromtimestamp(book[0].ts_ms / 1000, UTC))  # the book was recorded first
        settings = MarketDataSettings(
            http_port=free_port(), source="live", live_symbols=("BTC/USDT",), live_timeframes=("1m",),
            exchange_urls={"binance": venue.ccxt_urls()}, book_depth=5, book_interval_s=0.5,
            gap_repair_interval_s=0, poll_every_s=0.2,
        )
        md = MarketDataService(settings, clock=clock)
        async with running(md):
            await venue.wait_subscribed("btcusdt@kline_1m")
            for _ in book[1:]:
                clock.set(at(venue.advance_book("BTCUSDT")))
                await asyncio.sleep(0.01)
            await until("book snapshots stored", lambda: _has_books(md))
            for _ in range(2 * len(klines)):
                clock.set(at(venue.advance_klines("BTCUSDT", "1m")))
                await asyncio.sleep(0.02)
            await until("four closed candles stored", lambda: _count_is(md, len(klines) - 1))

        stored = await _stored_closes(md)
    published = [decode(m.data).payload for m in await stream_messages(js, "MD", "quorum.md.candle_closed.>")]
    assert [c.close for c in published if isinstance(c, CandleClosed)] == [Decimal(k.close) for k in klines[:-1]]
    assert stored == [Decimal(k.close) for k in klines[:-1]]


def at(ms: int | None) -> datetime:
    assert ms is not None, "the fake venue's tape ran out"
    return datetime.fromtimestamp(ms / 1000, UTC)


async def _has_books(svc: Service) -> bool:
    return await scalar(svc, select(func.count()).select_from(order_book_snapshots)) >= 2


async def _stored_closes(svc: MarketDataService) -> list[Decimal]:
    engine = create_engine(svc.settings.database_url.get_secret_value())
    async with engine.connect() as conn:
        rows = (await conn.execute(select(candles.c.close).order_by(candles.c.ts))).scalars().all()
    await engine.dispose()
    return list(rows)

