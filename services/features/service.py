"""Keeps streaming indicator state per (exchange, symbol, timeframe). State is only ever a fold over the
stored candles: it is rebuilt from the ``candles`` table on first sight of a series (after a restart) or when
a candle arrives out of order, so the values are the same whatever the delivery history."""

from __future__ import annotations

import copy
from datetime import datetime

from quorum.db.tables import candles, features
from quorum.events.market_data import CandleClosed
from quorum.indicators import FeatureEngine
from quorum.indicators.decide import FeaturesConfig, features_of
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

SeriesKey = tuple[str, str, str]


class FeaturesSettings(FeaturesConfig):
    http_port: int = 8102


class FeaturesService(Service):
    NAME = "features"
    settings: FeaturesSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.spec = self.settings.feature_set
        self.version = self.spec.version  # a hash of the spec: computed once
        self._state: dict[SeriesKey, tuple[datetime, FeatureEngine]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {"features-candles": self.on_candle}

    async def _stored(self, ctx: Context, candle: CandleClosed) -> bool:
        return (await ctx.conn.execute(select(features.c.ts).where(
            features.c.exchange == candle.exchange, features.c.symbol == candle.symbol,
            features.c.timeframe == candle.timeframe, features.c.feature_set == self.version,
            features.c.ts == candle.ts))).first() is not None

    async def _rebuild(self, ctx: Context, key: SeriesKey, before: datetime) -> FeatureEngine:
        state = FeatureEngine(self.spec)
        rows = await ctx.conn.stream(
            select(candles.c.ts, candles.c.open, candles.c.high, candles.c.low, candles.c.close, candles.c.volume)
            .where(candles.c.exchange == key[0], candles.c.symbol == key[1], candles.c.timeframe == key[2],
                   candles.c.ts < before)
            .order_by(candles.c.ts)
        )
        async for row in rows:
            state.update(row)  # a stored candle row reads like a candle: ts, open, high, low, close, volume
        return state

    async def on_candle(self, ctx: Context) -> None:
        candle: CandleClosed = ctx.message.payload
        key = (candle.exchange, candle.symbol, candle.timeframe)
        if await self._stored(ctx, candle):
            return  # the same candle under another event id: its features were computed and announced once
        known = self._state.get(key)
        if known is not None and known[0] < candle.ts:
            state = copy.deepcopy(known[1])  # mutate a copy; adopt it only once the transaction commits
        else:
            state = await self._rebuild(ctx, key, candle.ts)
        out = ctx.emit(features_of(state, candle, self.version))
        values = out.payload.values
        await ctx.conn.execute(
            insert(features).values(
                exchange=candle.exchange, symbol=candle.symbol, timeframe=candle.timeframe, ts=candle.ts,
                feature_set=self.version, close=candle.close, values=values, event_id=out.event_id,
            ).on_conflict_do_nothing()
        )
        ctx.after_commit.append(lambda: self._state.__setitem__(key, (candle.ts, state)))
