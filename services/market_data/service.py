"""Replays an OHLCV file as closed candles: each batch is written to ``candles`` and committed *before* it
is published, so any consumer that sees a candle on the bus can also find it (and its predecessors) in the
database. Event ids derive from (exchange, symbol, timeframe, open time): a replay is deterministic, and
re-running it publishes nothing new (server de-duplication, then consumers' inboxes)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import candles as candles_t
from quorum.db.tables import replay_checkpoints
from quorum.events.base import Envelope, new_envelope
from quorum.events.market_data import CandleClosed
from quorum.marketdata.files import Rejections, SeriesId, candles, infer_series, read_rows
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import timeframe_seconds
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

log = logging.getLogger("quorum.market_data")
ROWS = Counter("quorum_md_rows_total", "Replay rows by outcome", ["outcome"])


class MarketDataSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_MARKET_DATA_", extra="ignore", frozen=True)

    http_port: int = 8101
    replay_file: Path | None = Field(default=None, description="CSV/Parquet OHLCV file to replay at start-up")
    replay_speed: float = Field(default=0.0, ge=0.0, description="0 = as fast as possible, N = N x real time")
    replay_limit: int | None = Field(default=None, ge=1, description="stop after this many candles")
    replay_batch: int = Field(default=500, ge=1, le=10_000)
    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None

    @field_validator("replay_file")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"replay file {v} does not exist")
        return v

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


class MarketDataService(Service):
    NAME = "market_data"
    settings: MarketDataSettings
    _rejected_reported = 0

    def tasks(self) -> list[Any]:
        return [self.replay] if self.settings.replay_file else []

    async def replay(self) -> None:
        s = self.settings
        assert s.replay_file is not None and self.engine is not None and self.publisher is not None
        series = s.series()
        key = f"{series.exchange}:{series.symbol}:{series.timeframe}:{s.replay_file.name}"
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(replay_checkpoints).where(replay_checkpoints.c.source_key == key))).first()
        after = row.last_ts if row else None
        published = row.rows_published if row else 0
        rejections = Rejections()
        df = read_rows(s.replay_file)
        stream = candles(df, series, now=self.clock.now(), rejections=rejections, after=after)
        log.info("replaying %s as %s from %s", s.replay_file, series, after or "the start")
        step = timeframe_seconds(series.timeframe)
        batch: list[CandleClosed] = []
        paced_from: tuple[float, datetime] | None = None
        loop = asyncio.get_running_loop()
        for candle in stream:
            if self.stopping.is_set() or (s.replay_limit is not None and published >= s.replay_limit):
                break
            if s.replay_speed > 0:  # pace by market time: one candle per (timeframe / speed) seconds
                if paced_from is None:
                    paced_from = (loop.time(), candle.ts)
                due = paced_from[0] + (candle.ts - paced_from[1]).total_seconds() / s.replay_speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            batch.append(candle)
            published += 1
            if len(batch) >= (1 if s.replay_speed > 0 else s.replay_batch):
                await self._flush(key, batch, published, rejections, step)
                batch = []
        if batch:
            await self._flush(key, batch, published, rejections, step)
        log.info("replay finished: %d published in total, %d rejected %s", published, rejections.total,
                 dict(rejections.counts))

    async def _flush(self, key: str, batch: list[CandleClosed], published: int, rejections: Rejections,
                     step: int) -> None:
        assert self.engine is not None and self.publisher is not None
        envelopes: list[Envelope[CandleClosed]] = [
            new_envelope(c, clock=self.clock, source=self.NAME, event_time=c.ts + timedelta(seconds=step),
                         key=f"{c.exchange}|{c.symbol}|{c.timeframe}|{c.ts.isoformat()}")
            for c in batch
        ]
        rows = [
            {**e.payload.model_dump(include={"exchange", "symbol", "timeframe", "ts", "open", "high", "low",
                                             "close", "volume"}), "event_id": e.event_id}
            for e in envelopes
        ]
        async with self.engine.begin() as conn:  # 1. store (idempotent) and commit ...
            await conn.execute(insert(candles_t).on_conflict_do_nothing(), rows)
        # 2. ... then publish; the server drops ids it has seen, so a crash-and-resume double-send is harmless
        await asyncio.gather(*(self.publisher.publish(e) for e in envelopes))
        async with self.engine.begin() as conn:  # 3. remember how far we got
            values = {"source_key": key, "last_ts": batch[-1].ts, "rows_published": published,
                      "rows_rejected": rejections.total}
            stmt = insert(replay_checkpoints).values(values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["source_key"], set_=values))
        ROWS.labels("published").inc(len(batch))
        ROWS.labels("rejected").inc(rejections.total - self._rejected_reported)
        self._rejected_reported = rejections.total
