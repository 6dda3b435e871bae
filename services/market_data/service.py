"""Market data: a file replay or live exchange feeds (``source``), plus REST backfills on command.

The replay writes each batch to ``candles`` and commits it *before* publishing it, so any consumer that sees a
candle on the bus can also find it (and its predecessors) in the database. Event ids derive from (exchange,
symbol, timeframe, open time): a replay is deterministic, and re-running it publishes nothing new (server
de-duplication, then consumers' inboxes)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from quorum import telemetry
from quorum.db.tables import candles as candles_t
from quorum.db.tables import replay_checkpoints
from quorum.events.base import Envelope, new_envelope
from quorum.events.control import BackfillStarted, StartBackfill
from quorum.events.market_data import CandleClosed
from quorum.marketdata.backfill import backfill, format_progress
from quorum.marketdata.backfill_cli import make_exchange
from quorum.marketdata.files import Rejections, candles, read_rows
from quorum.marketdata.keys import candle_key
from quorum.marketdata.validation import PRICES
from quorum.runtime.handling import Context, Handler, wait_out_outages
from quorum.runtime.service import Service
from quorum.runtime.settle import DECISION_HEADS, awaited_consumers, hold, settle_candle
from quorum.times import candle_close
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from .live import LivePipeline
from .settings import MarketDataSettings

log = logging.getLogger("quorum.market_data")
ROWS = Counter("quorum_md_rows_total", "Replay rows by outcome", ["outcome"])


class MarketDataService(Service):
    NAME = "market_data"
    settings: MarketDataSettings
    _rejected_reported = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backfills: set[asyncio.Task[Any]] = set()
        self._rejected_by_reason: dict[str, int] = {}

    def tasks(self) -> list[Any]:
        if self.settings.source == "replay":
            return [self.replay]
        if self.settings.source == "live":
            return [LivePipeline(self).run]
        return []

    def handlers(self) -> dict[str, Handler]:
        return {"market-data-control": self.on_control}

    def health_details(self) -> dict[str, Any]:
        s = self.settings
        return {"source": s.source, "exchange": s.live_exchange if s.source == "live" else s.exchange,
                "secondary": s.live_secondary if s.source == "live" else None}

    async def on_control(self, ctx: Context) -> None:
        """Acknowledge a backfill command, then run it after the commit (it can take hours)."""
        cmd: StartBackfill = ctx.message.payload
        series = [(sym, tf) for sym in cmd.symbols for tf in cmd.timeframes]
        ctx.emit(BackfillStarted(actor=cmd.actor, reason=cmd.reason, series=len(series)))
        ctx.after_commit.append(lambda: self._start_backfill(cmd, series))

    def _start_backfill(self, cmd: StartBackfill, series: list[tuple[str, str]]) -> None:
        task = asyncio.ensure_future(self._backfill(cmd, series))
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill(self, cmd: StartBackfill, series: list[tuple[str, str]]) -> None:
        assert self.engine is not None
        exchange = make_exchange(cmd.exchange, base_url=self.settings.backfill_base_url)
        try:
            report = await backfill(exchange, self.engine, exchange_id=cmd.exchange, series=series, since=cmd.since,
                                    until=cmd.until, clock=self.clock,
                                    progress=lambda p: log.info("backfill %s", format_progress(p)))
            log.info("backfill done: %d fetched, %d inserted, rejected %s", report.fetched, report.inserted,
                     dict(report.rejected))
        except Exception:
            log.exception("backfill of %s failed; a new request resumes from its checkpoints", series)
        finally:
            await exchange.close()

    async def on_stop(self) -> None:
        for task in list(self._backfills):
            task.cancel()  # committed pages stay; the checkpoint says where to resume
        await asyncio.gather(*self._backfills, return_exceptions=True)

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
        batch: list[CandleClosed] = []
        paced_from: tuple[float, datetime] | None = None
        loop = asyncio.get_running_loop()
        settled = s.replay_pacing == "settled"
        awaited = awaited_consumers(exclude_services=[self.NAME], only=s.replay_settle_consumers) if settled else []
        heads = [c for c in awaited if c.durable in DECISION_HEADS]
        if settled and not await settle_candle(self.js, self.engine, awaited, stopping=self.stopping):
            return  # (a replay that died mid-candle left that candle half done: finish it first)
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
            if len(batch) >= (1 if s.replay_speed > 0 or settled else s.replay_batch):
                if settled and heads:
                    await hold(self.js, heads)  # the market side of this candle first ...
                await self._flush(key, batch, published, rejections)
                batch = []
                if settled and not await settle_candle(self.js, self.engine, awaited, stopping=self.stopping):
                    break
        if batch:
            await self._flush(key, batch, published, rejections)
        log.info("replay finished: %d published in total, %d rejected %s", published, rejections.total,
                 dict(rejections.counts))

    async def _flush(self, key: str, batch: list[CandleClosed], published: int, rejections: Rejections) -> None:
        """Store, publish and checkpoint ``batch``; a database or bus outage is waited out (every step is
        idempotent: stored candles are natural keys, published ids are de-duplicated)."""
        await wait_out_outages(lambda: self._flush_once(key, batch, published, rejections), stopping=self.stopping,
                               what=f"replay of {len(batch)} candles")

    async def _flush_once(self, key: str, batch: list[CandleClosed], published: int,
                          rejections: Rejections) -> None:
        assert self.engine is not None and self.publisher is not None
        envelopes: list[Envelope[CandleClosed]] = [
            new_envelope(c, clock=self.clock, source=self.NAME, event_time=candle_close(c.ts, c.timeframe),
                         key=candle_key(c))
            for c in batch
        ]
        rows = [
            {**e.payload.model_dump(include={"exchange", "symbol", "timeframe", "ts", *PRICES}), "event_id": e.event_id}
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
        telemetry.observe_committed(self.NAME, envelopes)
        for symbol in {c.symbol for c in batch}:
            telemetry.SOURCE_ACTIVE.labels(symbol, "replay").set(1)
        for reason, n in rejections.counts.items():
            telemetry.ROWS_REJECTED.labels(reason).inc(n - self._rejected_by_reason.get(reason, 0))
            self._rejected_by_reason[reason] = n
