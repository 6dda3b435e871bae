"""The paper venue: ``quorum.matching.venue`` (a ``MatchingEngine`` per (exchange, symbol), the venue's orders and
fills) driven by candles, order-book snapshots and the OMS's commands, its whole state persisted after every
event.

Each message is one transaction under a per-symbol advisory lock: load the symbol's slice of the book and the
stored market data a catch-up needs (``store.py``), decide (``quorum.matching.venue.decide``), save the engine,
record what the venue did (``paper_orders``, ``paper_fills``: the venue's own records, which the OMS reads to
reconcile) and emit it through the outbox. A restart therefore resumes exactly where the last committed event
left the engine — resting orders, armed stops, consumed liquidity and the latency RNG.

What still depends on processing order: a cancel or a balance check that arrives after the engine moved past its
time acts on the engine as it is (lock-step replay, ``QUORUM_MARKET_DATA_REPLAY_PACING=settled``, removes that
case).
"""

from __future__ import annotations

from quorum.matching.settings import VenueConfig
from quorum.matching.venue import decide, market_needed
from quorum.runtime.handling import Context, Handler
from quorum.runtime.outcomes import emit_outcome
from quorum.runtime.service import Service

from .store import PostgresVenueStore


class MatchingSettings(VenueConfig):
    http_port: int = 8107


class MatchingService(Service):
    NAME = "matching"
    settings: MatchingSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.params = self.settings.venue_params()
        self.engine_config = self.params.engine
        self.store = PostgresVenueStore(self.params)

    def handlers(self) -> dict[str, Handler]:
        return {"matching-orders": self.on_message, "matching-candles": self.on_message,
                "matching-books": self.on_message}

    async def on_message(self, ctx: Context) -> None:
        """Load -> decide -> save + record + emit (``quorum.matching.venue``)."""
        before = await self.store.load(ctx.conn, ctx.message)
        market = await self.store.market(ctx.conn, market_needed(before, ctx.message))
        outcome = decide(before, ctx.message, self.params, ctx.clock.now(), market)
        await self.store.save(ctx.conn, before, outcome, ctx.clock.now())
        await emit_outcome(ctx, outcome, chain_key=self.settings.chain_key)
