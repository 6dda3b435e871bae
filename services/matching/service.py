"""The paper venue: ``quorum.matching.MatchingEngine`` per (exchange, symbol), driven by candles, order-book
snapshots and the OMS's commands, its whole state persisted in ``matching_state`` after every event.

Each message is one transaction under a per-symbol advisory lock: load the engine, apply the event, save the
engine, record what the venue did (``paper_orders``, ``paper_fills``: the venue's own records, which the OMS
reads to reconcile) and emit it through the outbox. A restart therefore resumes exactly where the last
committed event left the engine — resting orders, armed stops, consumed liquidity and the latency RNG.

Clock. The venue's time is market time, and an order's time is its own: the market time of what caused it
(the decision's candle close, the fill that armed a protective leg), carried as the command's event time. It
arrives ``latency`` later and meets the book in force then; a resting order sees only market data after its
arrival. How far this service's candle consumer has got never matters:

* behind (the order is newer than the engine's last market event): the engine first catches up on the stored
  market data up to the order's time (market data stores candles and snapshots before publishing them), and
  the consumer later skips what was applied that way;
* ahead (the engine already applied market data newer than the order): the order is replayed in a fresh engine
  over the stored market data from its own time up to the engine's, then joins the engine (``adopt``).

Candle-driven books change only once per candle, so the order is matched at once against the book in force;
with order-book snapshots it waits for the next snapshot, as it would on the exchange. The legs of an OCO group
become live together, once the last has arrived, so no leg meets market data alone. What still depends on
processing order: a cancel or a balance check that arrives after the engine moved past its time acts on the
engine as it is (lock-step replay, ``QUORUM_MARKET_DATA_REPLAY_PACING=settled``, removes that case).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import candles, matching_state, order_book_snapshots, paper_fills, paper_orders
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed, OrderBookSnapshotted
from quorum.events.orders import CancelOrder, OrderAccepted, OrderCanceled, OrderExpired, OrderRejected, SubmitOrder
from quorum.matching import (
    EngineConfig,
    FeeAsset,
    Fill,
    LatencyKind,
    LatencyModel,
    MatchingEngine,
    Order,
    Output,
    StatusChange,
    SyntheticBookModel,
    VenueFees,
)
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import OrderStatus, Side, split_symbol, timeframe_seconds
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert


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


class MatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_MATCHING_", extra="ignore", frozen=True)

    http_port: int = 8107
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
            candle_fill_fraction=self.candle_fill_fraction, lot_step=self.lot_step,
            remember_final=500)  # the state is saved per event: keep the duplicate-id memory small


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class MatchingService(Service):
    NAME = "matching"
    settings: MatchingSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.engine_config = self.settings.engine_config()

    def handlers(self) -> dict[str, Handler]:
        return {"matching-orders": self.on_command, "matching-candles": self.on_candle,
                "matching-books": self.on_book}

    # --- engine state -------------------------------------------------------------------------------------
    async def _engine(self, ctx: Context, exchange: str, symbol: str) -> MatchingEngine:
        await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                               {"k": f"matching:{exchange}:{symbol}"})
        row = (await ctx.conn.execute(select(matching_state.c.state).where(
            matching_state.c.exchange == exchange, matching_state.c.symbol == symbol))).first()
        if row is not None:
            return MatchingEngine.from_dict(row.state, self.engine_config)
        seed = self.settings.seed + int.from_bytes(f"{exchange}:{symbol}".encode()[:8].ljust(8, b"\0"), "big")
        return MatchingEngine(symbol, self.engine_config, seed % 2**63)

    async def _save(self, ctx: Context, exchange: str, engine: MatchingEngine) -> None:
        values = {"state": engine.to_dict(), "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(matching_state).values(exchange=exchange, symbol=engine.symbol, **values)
                               .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))

    async def _publish(self, ctx: Context, exchange: str, outputs: list[Output]) -> None:
        """Record and announce what the venue did, in the order it happened."""
        commands: dict[str, SubmitOrder] = {}
        for out in outputs:
            coid = out.client_order_id
            if coid not in commands:
                row = (await ctx.conn.execute(select(paper_orders.c.command).where(
                    paper_orders.c.client_order_id == coid))).first()
                if row is None:
                    continue  # not an order this venue holds (a cancel for an unknown id): nothing to tell
                commands[coid] = Envelope[SubmitOrder].model_validate(row.command).payload
            cmd = commands[coid]
            if isinstance(out, Fill):
                fill = OrderFilled(
                    fill_id=out.fill_id, venue=cmd.venue, mode=cmd.mode, client_order_id=coid, exchange=exchange,
                    symbol=cmd.symbol, side=out.side, quantity=out.quantity, price=out.price, fee=out.fee,
                    fee_currency=out.fee_currency, liquidity=out.liquidity, ts=_dt(out.ts), is_final=out.is_final)
                await ctx.conn.execute(insert(paper_fills).values(
                    fill_id=out.fill_id, client_order_id=coid, fill=fill.model_dump(mode="json"), ts=fill.ts,
                ).on_conflict_do_nothing())
                ctx.emit(fill, key=out.fill_id, event_time=fill.ts)
            elif isinstance(out, StatusChange):
                await ctx.conn.execute(update(paper_orders).where(paper_orders.c.client_order_id == coid)
                                       .values(status=out.status.value))
                self._announce(ctx, cmd, out)

    @staticmethod
    def _announce(ctx: Context, cmd: SubmitOrder, out: StatusChange) -> None:
        common = {"venue": cmd.venue, "client_order_id": cmd.client_order_id, "symbol": cmd.symbol}
        ts = _dt(out.ts)
        event: Any = {
            OrderStatus.ACCEPTED: lambda: OrderAccepted(**common, ts=ts),
            OrderStatus.CANCELED: lambda: OrderCanceled(**common, reason_code=out.reason or "CANCELED",
                                                        filled_quantity=out.filled_quantity, ts=ts),
            OrderStatus.EXPIRED: lambda: OrderExpired(**common, reason_code=out.reason or "EXPIRED",
                                                      filled_quantity=out.filled_quantity, ts=ts),
            OrderStatus.REJECTED: lambda: OrderRejected(**common, reason_code=out.reason or "REJECTED"),
        }.get(out.status)
        if event is not None:  # PARTIALLY_FILLED / FILLED travel as fills
            ctx.emit(event(), key=f"{cmd.client_order_id}:{out.status.value}", event_time=ts)

    # --- handlers -----------------------------------------------------------------------------------------
    async def on_command(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        at = _ms(ctx.message.event_time)  # the command's own market time
        if isinstance(cmd, CancelOrder):
            row = (await ctx.conn.execute(select(paper_orders.c.exchange).where(
                paper_orders.c.client_order_id == cmd.client_order_id))).first()
            if row is None:
                return  # never reached this venue: nothing to cancel
            engine = await self._engine(ctx, row.exchange, cmd.symbol)
            outputs = await self._catch_up(ctx, row.exchange, engine, at)
            outputs += engine.cancel(at, cmd.client_order_id)
            await self._save(ctx, row.exchange, engine)
            await self._publish(ctx, row.exchange, outputs)
            return
        assert isinstance(cmd, SubmitOrder)
        engine = await self._engine(ctx, cmd.exchange, cmd.symbol)
        stored = (await ctx.conn.execute(insert(paper_orders).values(
            client_order_id=cmd.client_order_id, exchange=cmd.exchange, symbol=cmd.symbol, status="SUBMITTED",
            command=ctx.message.model_dump(mode="json"), reference_ts=cmd.reference_ts,
        ).on_conflict_do_nothing().returning(paper_orders.c.client_order_id))).first()
        if stored is None:
            return  # the venue has this order already
        ahead = engine.market_ts > at
        if not ahead:  # market data up to the order's time comes first, and is recorded before the balance check
            await self._publish(ctx, cmd.exchange, await self._catch_up(ctx, cmd.exchange, engine, at))
        short = await self._oversold(ctx, cmd) if cmd.side is Side.SELL else None
        if short is not None:
            await ctx.conn.execute(update(paper_orders).where(paper_orders.c.client_order_id == cmd.client_order_id)
                                   .values(status=OrderStatus.REJECTED.value))
            ctx.emit(OrderRejected(venue=cmd.venue, client_order_id=cmd.client_order_id, symbol=cmd.symbol,
                                   reason_code="INSUFFICIENT_BALANCE", detail=short))
            outputs = engine.abandon_group(at, cmd.oco_group)
        elif ahead:  # the engine is past the order's time: replay the order over its own market, then adopt it
            order = self._order(cmd)
            replay = engine.spawn()
            engine.hand_over_group(order.oco_group, replay)
            outputs = await self._catch_up(ctx, cmd.exchange, replay, at)
            outputs += self._place(replay, at, order)
            outputs += await self._catch_up(ctx, cmd.exchange, replay, engine.market_ts)
            engine.adopt(replay)
        else:
            outputs = self._place(engine, at, self._order(cmd))
        await self._save(ctx, cmd.exchange, engine)
        await self._publish(ctx, cmd.exchange, outputs)

    @staticmethod
    def _order(cmd: SubmitOrder) -> Order:
        return Order(cmd.client_order_id, cmd.side, cmd.quantity, cmd.order_type, cmd.limit_price, cmd.stop_price,
                     cmd.time_in_force, cmd.oco_group, cmd.oco_size)

    def _place(self, engine: MatchingEngine, at: int, order: Order) -> list[Output]:
        outputs = engine.submit(at, order)
        if engine.book is None or engine.book.synthetic:  # nothing changes before the next candle: arrive now
            outputs += engine.advance(at + self.engine_config.latency.high_ms + 1)
        return outputs

    async def _catch_up(self, ctx: Context, exchange: str, engine: MatchingEngine, until: int) -> list[Output]:
        """Apply the stored market data (candles by their close, snapshots) newer than the engine's and known at
        ``until``. With nothing live, only the state in force at ``until`` matters: the latest of each."""
        if until <= engine.market_ts:
            return []
        since = _dt(engine.market_ts) if engine.market_ts and engine.has_live_orders else None
        end = _dt(until)
        day = timedelta(days=1)  # candles are at most a day long: their close is within a day of their open
        cq = select(candles).where(candles.c.exchange == exchange, candles.c.symbol == engine.symbol,
                                   candles.c.ts <= end)
        bq = select(order_book_snapshots).where(order_book_snapshots.c.exchange == exchange,
                                                order_book_snapshots.c.symbol == engine.symbol,
                                                order_book_snapshots.c.ts <= end)
        if since is None:
            cq, bq = cq.order_by(candles.c.ts.desc()).limit(8), bq.order_by(order_book_snapshots.c.ts.desc()).limit(1)
        else:
            cq, bq = cq.where(candles.c.ts > since - day), bq.where(order_book_snapshots.c.ts > since)
        events: list[tuple[int, int, Any]] = []
        for c in (await ctx.conn.execute(cq)).all():
            close = _ms(c.ts) + timeframe_seconds(c.timeframe) * 1000
            if engine.market_ts < close <= until:
                events.append((close, -timeframe_seconds(c.timeframe), c))
        if since is None and events:
            events = [max(events, key=lambda e: (e[0], e[1]))]
        books = [(_ms(b.ts), 1, b) for b in (await ctx.conn.execute(bq)).all() if _ms(b.ts) > engine.market_ts]
        outputs: list[Output] = []
        for ts, _, row in sorted(events + books, key=lambda e: (e[0], e[1])):
            if hasattr(row, "bids"):
                outputs += engine.on_book(ts, [(Decimal(p), Decimal(q)) for p, q in row.bids],
                                          [(Decimal(p), Decimal(q)) for p, q in row.asks])
            else:
                outputs += engine.on_candle(ts, row.open, row.high, row.low, row.close, row.volume)
        return outputs

    async def _oversold(self, ctx: Context, cmd: SubmitOrder) -> str | None:
        """Spot has no shorting: like the exchange, refuse a sell beyond the free balance — what the venue's own
        fills hold, less what open sells already lock (an OCO group locks once, as on Binance)."""
        base, _ = split_symbol(cmd.symbol)
        mine = (paper_orders.c.exchange == cmd.exchange) & (paper_orders.c.symbol == cmd.symbol)
        held, filled = Decimal(0), dict[str, Decimal]()
        for coid, fill in (await ctx.conn.execute(select(paper_fills.c.client_order_id, paper_fills.c.fill).join(
                paper_orders, paper_orders.c.client_order_id == paper_fills.c.client_order_id).where(mine))).all():
            qty, fee = Decimal(fill["quantity"]), Decimal(fill["fee"]) if fill["fee_currency"] == base else Decimal(0)
            held += qty - fee if fill["side"] == Side.BUY.value else -qty
            filled[coid] = filled.get(coid, Decimal(0)) + qty
        locked: dict[str, Decimal] = {}
        for row in (await ctx.conn.execute(select(paper_orders.c.client_order_id, paper_orders.c.command).where(
                mine, paper_orders.c.status.in_(("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED")),
                paper_orders.c.client_order_id != cmd.client_order_id))).all():
            other = row.command["payload"]
            if other["side"] != Side.SELL.value or (cmd.oco_group and other.get("oco_group") == cmd.oco_group):
                continue  # buys lock quote, not base; the legs of one OCO share one lock
            group = other.get("oco_group") or row.client_order_id
            left = Decimal(other["quantity"]) - filled.get(row.client_order_id, Decimal(0))
            locked[group] = max(locked.get(group, Decimal(0)), left)
        free = held - sum(locked.values(), Decimal(0))
        return None if cmd.quantity <= free else f"sell {cmd.quantity} > free {free} (held {held})"

    async def on_candle(self, ctx: Context) -> None:
        c: CandleClosed = ctx.message.payload
        engine = await self._engine(ctx, c.exchange, c.symbol)
        close = _ms(c.ts + timedelta(seconds=timeframe_seconds(c.timeframe)))
        if close <= engine.market_ts:
            return  # applied already, by an order that caught the engine up to its own time
        outputs = engine.on_candle(close, c.open, c.high, c.low, c.close, c.volume)
        await self._save(ctx, c.exchange, engine)
        await self._publish(ctx, c.exchange, outputs)

    async def on_book(self, ctx: Context) -> None:
        b: OrderBookSnapshotted = ctx.message.payload
        engine = await self._engine(ctx, b.exchange, b.symbol)
        if _ms(b.ts) <= engine.market_ts:
            return  # applied already (see on_candle)
        outputs = engine.on_book(_ms(b.ts), [(lv.price, lv.quantity) for lv in b.bids],
                                 [(lv.price, lv.quantity) for lv in b.asks])
        await self._save(ctx, b.exchange, engine)
        await self._publish(ctx, b.exchange, outputs)

