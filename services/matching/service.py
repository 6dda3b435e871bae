"""Foundation matching: a market order fills at the open of the first stored candle after the candle its
decision was made on, plus the taker fee.

Two consumers meet here (orders and candles) with no ordering between them, so the outcome must not depend
on which arrives first: both take a per-symbol advisory lock, and market data commits a candle to the
database before publishing it. An order that finds its next candle stored fills at once; otherwise it rests
(persisted in ``paper_orders``) until that candle's event arrives. Either way: the same fill, exactly once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import candles, paper_orders
from quorum.domain.matching import FeeSchedule, fill_market_at_open
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderRejected, SubmitOrder
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import OrderType, split_symbol
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert

OPEN, FILLED = "OPEN", "FILLED"


class MatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_MATCHING_", extra="ignore", frozen=True)

    http_port: int = 8107
    venue: str = "paper"
    maker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)
    taker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)


class MatchingService(Service):
    NAME = "matching"
    settings: MatchingSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fees = FeeSchedule(maker=self.settings.maker_fee, taker=self.settings.taker_fee)

    def handlers(self) -> dict[str, Handler]:
        return {"matching-orders": self.on_submit, "matching-candles": self.on_candle}

    @staticmethod
    async def _lock(ctx: Context, exchange: str, symbol: str) -> None:
        await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                               {"k": f"matching:{exchange}:{symbol}"})

    async def on_submit(self, ctx: Context) -> None:
        cmd: SubmitOrder = ctx.message.payload
        if cmd.order_type is not OrderType.MARKET:
            ctx.emit(OrderRejected(venue=cmd.venue, client_order_id=cmd.client_order_id, symbol=cmd.symbol,
                                   reason_code="UNSUPPORTED_ORDER_TYPE", detail=f"{cmd.order_type} not supported yet"))
            return
        await self._lock(ctx, cmd.exchange, cmd.symbol)
        stored = (await ctx.conn.execute(insert(paper_orders).values(
            client_order_id=cmd.client_order_id, exchange=cmd.exchange, symbol=cmd.symbol, status=OPEN,
            command=ctx.message.model_dump(mode="json"), reference_ts=cmd.reference_ts,
        ).on_conflict_do_nothing().returning(paper_orders.c.client_order_id))).first()
        if stored is None:
            return  # the venue has this order already
        nxt = (await ctx.conn.execute(
            select(candles.c.ts, candles.c.open)
            .where(candles.c.exchange == cmd.exchange, candles.c.symbol == cmd.symbol,
                   candles.c.ts > cmd.reference_ts)
            .order_by(candles.c.ts).limit(1)
        )).first()
        if nxt is not None:
            await self._fill(ctx, ctx.message, nxt.open, nxt.ts)

    async def on_candle(self, ctx: Context) -> None:
        c: CandleClosed = ctx.message.payload
        await self._lock(ctx, c.exchange, c.symbol)
        resting = (await ctx.conn.execute(
            select(paper_orders.c.command)
            .where(paper_orders.c.exchange == c.exchange, paper_orders.c.symbol == c.symbol,
                   paper_orders.c.status == OPEN, paper_orders.c.reference_ts < c.ts)
            .order_by(paper_orders.c.created_at, paper_orders.c.client_order_id)
        )).all()
        for row in resting:
            await self._fill(ctx, Envelope[SubmitOrder].model_validate(row.command), c.open, c.ts)

    async def _fill(self, ctx: Context, order_env: Envelope[Any], price: Decimal, ts: Any) -> None:
        cmd: SubmitOrder = order_env.payload
        _, quote = split_symbol(cmd.symbol)
        ex = fill_market_at_open(cmd.side, cmd.quantity, price, quote, self.fees)
        await ctx.conn.execute(update(paper_orders).where(paper_orders.c.client_order_id == cmd.client_order_id)
                               .values(status=FILLED))
        ctx.emit(OrderFilled(
            fill_id=f"{cmd.client_order_id}-1", venue=cmd.venue, mode=cmd.mode, client_order_id=cmd.client_order_id,
            exchange=cmd.exchange, symbol=cmd.symbol, side=ex.side, quantity=ex.quantity, price=ex.price,
            fee=ex.fee, fee_currency=ex.fee_currency, liquidity=ex.liquidity, ts=ts,
        ), key=cmd.client_order_id, event_time=ts)
