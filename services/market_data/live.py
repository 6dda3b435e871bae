"""The live path: closed candles (with failover between two exchanges), corrections, order-book snapshots and
periodic gap repair, for the universe resolved against what the exchange lists.

Every event is written and queued in one transaction (database first, then the outbox publishes it), the same
guarantee the replay gives: a consumer that sees a candle on the bus can find it in ``candles``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from prometheus_client import Counter, Gauge
from quorum import telemetry
from quorum.clock import Clock
from quorum.db.tables import candle_corrections, candles, order_book_snapshots
from quorum.events.market_data import CandleClosed, CandleCorrected, DataSourceSwitched, OrderBookSnapshotted
from quorum.marketdata.books import OrderBookSampler
from quorum.marketdata.candle_feed import CandleFeed
from quorum.marketdata.exchanges import make_exchange
from quorum.marketdata.failover import FailoverCandleFeed
from quorum.marketdata.gaps import repair_gaps
from quorum.marketdata.keys import book_key, candle_key, correction_key
from quorum.marketdata.universe import get_universe, resolve
from quorum.marketdata.validation import PRICES
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context
from quorum.times import candle_close
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .settings import MarketDataSettings

log = logging.getLogger("quorum.market_data.live")
LIVE = Counter("quorum_md_live_events_total", "Live market-data events by kind", ["kind", "exchange"])
GAPS = Counter("quorum_md_gaps_total", "Gaps found and repaired", ["outcome"])
for _outcome in ("found", "repaired", "unrepairable"):
    GAPS.labels(_outcome)  # 0 from the start
LAG = Gauge("quorum_md_lag_seconds", "Time from a candle's close to its storage", ["exchange", "symbol", "timeframe"])
REJECTED = Gauge("quorum_md_live_rejected", "Bad live records rejected so far", ["exchange", "symbol", "timeframe"])


class LiveHost(Protocol):
    """What the live pipeline needs of the service running it (the service hands itself over as one): its
    name, clock, database, stop signal and outbox transactions. Nothing else, so this module never imports
    the service."""

    NAME: ClassVar[str]
    settings: MarketDataSettings
    clock: Clock
    engine: AsyncEngine | None
    stopping: asyncio.Event

    async def transact(self, work: Callable[[Context], Awaitable[Any]]) -> Any: ...


def _book_side(levels: tuple[Any, ...]) -> list[list[str]]:
    return [[str(lv.price), str(lv.quantity)] for lv in levels]


class LivePipeline:
    """Owns the exchanges and feeds of one service instance; ``run`` returns when the service stops."""

    def __init__(self, service: LiveHost) -> None:
        self.svc = service
        self.s = service.settings
        self.exchanges: dict[str, Any] = {}

    def _exchange(self, exchange_id: str, *, pro: bool = True) -> Any:
        key = f"{exchange_id}:{'pro' if pro else 'rest'}"
        if key not in self.exchanges:
            self.exchanges[key] = make_exchange(exchange_id, urls=self.s.exchange_urls.get(exchange_id), pro=pro)
        return self.exchanges[key]

    async def symbols(self) -> list[str]:
        """Configured symbols, or the universe resolved against the primary's markets (unlisted: reported)."""
        if self.s.live_symbols:
            return list(self.s.live_symbols)
        exchange = self._exchange(self.s.live_exchange)
        markets = await exchange.load_markets()
        resolution = resolve(get_universe(self.s.universe), self.s.live_exchange, markets)
        if resolution.unlisted:
            log.warning("universe %s: %s does not list %s", resolution.universe, resolution.exchange,
                        ", ".join(resolution.unlisted))
        return list(resolution.listed)

    async def run(self) -> None:
        try:
            symbols = await self.symbols()
            jobs = [self._candles(sym, tf) for sym in symbols for tf in self.s.live_timeframes]
            if self.s.book_depth > 0:
                jobs += [self._books(sym) for sym in symbols]
            if self.s.gap_repair_interval_s > 0:
                jobs.append(self._repair_loop(symbols))
            log.info("live: %d symbols x %s on %s (secondary %s)", len(symbols), list(self.s.live_timeframes),
                     self.s.live_exchange, self.s.live_secondary or "none")
            tasks = [asyncio.ensure_future(j) for j in jobs]
            await self.svc.stopping.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for exchange in self.exchanges.values():
                try:
                    await exchange.close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort at shutdown
                    log.debug("closing %s: %s", exchange.id, exc)

    # --- candles --------------------------------------------------------------------------------------------
    async def _last_stored(self, exchange_id: str, symbol: str, timeframe: str) -> Any:
        assert self.svc.engine is not None
        async with self.svc.engine.connect() as conn:
            q = select(func.max(candles.c.ts)).where(candles.c.exchange == exchange_id, candles.c.symbol == symbol,
                                                     candles.c.timeframe == timeframe)
            return (await conn.execute(q)).scalar_one()

    async def _candles(self, symbol: str, timeframe: str) -> None:
        s = self.s
        after = await self._last_stored(s.live_exchange, symbol, timeframe)

        def feed(exchange_id: str) -> CandleFeed:
            return CandleFeed(self._exchange(exchange_id), symbol, timeframe, clock=self.svc.clock,
                              exchange_name=s.live_exchange, source=exchange_id, after=after,
                              poll_every_s=s.poll_every_s)

        feeds = [feed(s.live_exchange)] + ([feed(s.live_secondary)] if s.live_secondary else [])
        events = (FailoverCandleFeed(feeds[0], feeds[1], clock=self.svc.clock).events()
                  if len(feeds) == 2 else feeds[0].events())
        rejected = REJECTED.labels(s.live_exchange, symbol, timeframe)
        telemetry.SOURCE_ACTIVE.labels(symbol, s.live_exchange).set(1)
        reported: Tally[str] = Tally()
        async for event in events:
            await self.svc.transact(lambda ctx, e=event: self._apply(ctx, e))
            rejected.set(sum(f.rejections.total for f in feeds))
            now = sum((f.rejections.counts for f in feeds), Tally())
            for reason, n in (now - reported).items():
                telemetry.ROWS_REJECTED.labels(reason).inc(n)
            reported = now

    async def _apply(self, ctx: Context, event: CandleClosed | CandleCorrected | DataSourceSwitched) -> None:
        exchange = self.s.live_exchange
        if isinstance(event, CandleClosed):
            closed_at = candle_close(event.ts, event.timeframe)
            env = ctx.emit(event, key=candle_key(event), event_time=closed_at)
            await ctx.conn.execute(insert(candles).values(
                **event.model_dump(include={"exchange", "symbol", "timeframe", "ts", *PRICES}),
                event_id=env.event_id).on_conflict_do_nothing())
            LIVE.labels("candle", exchange).inc()
            lag = ctx.clock.now() - closed_at
            LAG.labels(exchange, event.symbol, event.timeframe).set(lag.total_seconds())
        elif isinstance(event, CandleCorrected):
            env = ctx.emit(event, key=correction_key(event), event_time=candle_close(event.ts, event.timeframe))
            new = event.model_dump(include=set(PRICES))
            await ctx.conn.execute(update(candles).where(
                candles.c.exchange == event.exchange, candles.c.symbol == event.symbol,
                candles.c.timeframe == event.timeframe, candles.c.ts == event.ts).values(**new))
            await ctx.conn.execute(insert(candle_corrections).values(
                exchange=event.exchange, symbol=event.symbol, timeframe=event.timeframe, ts=event.ts,
                previous=event.previous.model_dump(mode="json", include=set(PRICES)),
                corrected={k: str(v) for k, v in new.items()}, event_id=env.event_id,
            ).on_conflict_do_nothing())
            LIVE.labels("correction", exchange).inc()
        else:
            env = ctx.emit(event, key=f"{event.symbol}|{event.to_source}|{ctx.clock.now().isoformat()}")
            await record_audit(ctx, actor=f"SYSTEM:{self.svc.NAME}", action="data_source_switch", mode="SYSTEM",
                               risk_profile=self.s.risk_profile, status="APPLIED",
                               details=event.model_dump(mode="json"), key=env.event_id, chain_key=self.s.chain_key)
            LIVE.labels("source_switch", exchange).inc()
            log.warning("%s: data source %s -> %s (%s)", event.symbol, event.from_source, event.to_source,
                        event.reason)

    # --- order books ----------------------------------------------------------------------------------------
    async def _books(self, symbol: str) -> None:
        sampler = OrderBookSampler(self._exchange(self.s.live_exchange), symbol, clock=self.svc.clock,
                                   depth=self.s.book_depth, min_interval=timedelta(seconds=self.s.book_interval_s),
                                   exchange_name=self.s.live_exchange, poll_every_s=self.s.poll_every_s)
        async for snap in sampler.snapshots():
            await self.svc.transact(lambda ctx, b=snap: self._store_book(ctx, b))

    async def _store_book(self, ctx: Context, book: OrderBookSnapshotted) -> None:
        env = ctx.emit(book, key=book_key(book), event_time=book.ts)
        await ctx.conn.execute(insert(order_book_snapshots).values(
            exchange=book.exchange, symbol=book.symbol, ts=book.ts, depth=book.depth, bids=_book_side(book.bids),
            asks=_book_side(book.asks), event_id=env.event_id).on_conflict_do_nothing())
        LIVE.labels("book", book.exchange).inc()

    # --- gap repair -----------------------------------------------------------------------------------------
    async def _repair_loop(self, symbols: list[str]) -> None:
        """Compare expected with stored open times over the look-back window and re-fetch the holes (stored,
        not re-published: downstream state is rebuilt from the database)."""
        assert self.svc.engine is not None
        series = [(sym, tf) for sym in symbols for tf in self.s.live_timeframes]
        while not self.svc.stopping.is_set():
            try:
                await asyncio.wait_for(self.svc.stopping.wait(), timeout=self.s.gap_repair_interval_s)
                return
            except TimeoutError:
                pass
            start = self.svc.clock.now() - timedelta(hours=self.s.gap_lookback_h)
            try:
                report = await repair_gaps(self._exchange(self.s.live_exchange, pro=False), self.svc.engine,
                                           exchange_id=self.s.live_exchange, series=series, start=start, end=None,
                                           clock=self.svc.clock)
            except Exception as exc:  # noqa: BLE001 - a failed repair round is retried next interval
                log.warning("gap repair failed: %s", exc)
                continue
            for sr in report.series:
                GAPS.labels("found").inc(len(sr.gaps))
                GAPS.labels("repaired").inc(len(sr.repaired))
                GAPS.labels("unrepairable").inc(len(sr.unrepairable))
